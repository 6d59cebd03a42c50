"""The tracking loop: one sequence through a tracker, frame by frame, with per-frame results and
timings. `mdnet-track`, `mdnet-bench track`, the tests and the demo all run sequences through it.

    run = track_sequence(MultiTracker(trunk, cfg, seed=0), seq, frames=100)
    run.boxes[:, 0]          # (frames, 4) x, y, w, h of target 0; row 0 is the initial box
    run.first_frame_s, run.fps, run.summary(seq)

Frame decoding is timed apart from tracking (`decode_s`): it depends on storage and file format,
not on the tracker. `on_frame(i, image, run)` is called after every frame (progress bars, video
writers, per-frame printing) and is not timed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from online.metrics import summarize
from online.sequence import Sequence


@dataclass
class SequenceRun:
    sequence: str
    boxes: np.ndarray  # (frames, targets, 4); frame 0 holds the initial boxes
    scores: np.ndarray  # (frames, targets) mean top-k fc6 positive output; NaN on frame 0
    success: np.ndarray  # (frames, targets) score > 0; True on frame 0
    track_s: np.ndarray  # (frames,) seconds inside initialize (frame 0) / track
    decode_s: np.ndarray  # (frames,) seconds reading and decoding the frame
    net_s: float = 0.0  # seconds in network passes (synchronised), all frames
    first_frame_net_s: float = 0.0
    parts_s: dict = field(default_factory=dict)  # tracker timer parts after the first frame (sums)
    done: int = 0  # frames processed so far

    @property
    def first_frame_s(self) -> float:
        return float(self.track_s[0])

    @property
    def fps(self) -> float:
        """Frames per second after the first frame, tracking only (decoding excluded)."""
        t = float(self.track_s[1:self.done].sum())
        return (self.done - 1) / t if self.done > 1 and t > 0 else float("nan")

    def summary(self, seq: Sequence | None = None, target: int = 0) -> dict:
        """Timings, plus mean IoU / success AUC / precision@20 against `seq`'s ground truth."""
        out = {"frames": self.done, "first_frame_s": self.first_frame_s, "fps": self.fps, "net_s": self.net_s}
        if seq is not None and seq.has_groundtruth:
            n = self.done
            out.update(summarize(self.boxes[:n, target], seq.boxes[:n], seq.absent[:n]))
        return out


def track_sequence(tracker, seq: Sequence, inits=None, frames: int | None = None, on_frame=None) -> SequenceRun:
    """Track `seq` (its first `frames` frames) with a fresh `tracker` (online.tracker.MultiTracker).

    `inits` (K, 4): the first-frame boxes; default the ground truth's first box.
    """
    n = len(seq) if frames is None else min(len(seq), int(frames))
    if inits is None:
        if not seq.has_groundtruth or seq.absent[0]:
            raise ValueError(f"{seq.name}: the target is absent or unannotated in the first frame; give --init")
        inits = seq.boxes[:1]
    inits = np.asarray(inits, dtype=np.float64).reshape(-1, 4)
    k = len(inits)
    run = SequenceRun(sequence=seq.name, boxes=np.zeros((n, k, 4)), scores=np.full((n, k), np.nan),
                      success=np.ones((n, k), bool), track_s=np.zeros(n), decode_s=np.zeros(n))
    run.boxes[0] = inits
    parts0: dict = {}
    for i in range(n):
        t0 = time.perf_counter()
        image = seq.frame(i)
        t1 = time.perf_counter()
        if i == 0:
            tracker.initialize(image, inits)
        else:
            results = tracker.track(image)
            run.boxes[i] = [r.box for r in results]
            run.scores[i] = [r.score for r in results]
            run.success[i] = [r.success for r in results]
        t2 = time.perf_counter()
        run.decode_s[i], run.track_s[i] = t1 - t0, t2 - t1
        run.done = i + 1
        if i == 0:
            run.first_frame_net_s = tracker.net_s
            parts0 = tracker.timer.snapshot()
        if on_frame is not None:
            on_frame(i, image, run)
    run.net_s = tracker.net_s
    run.parts_s = {key: v - parts0.get(key, 0.0) for key, v in tracker.timer.snapshot().items() if key != "net_s"}
    return run
