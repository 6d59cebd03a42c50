"""The tracking loop: one sequence through a tracker, frame by frame, with per-frame results and
timings. `mdnet-track`, `mdnet-eval run`, `mdnet-bench track`, the tests and the demo all run
sequences through it.

    run = track_sequence(MultiTracker(trunk, cfg, seed=0), seq, frames=100)
    run.boxes[:, 0]          # (frames, 4) x, y, w, h of target 0; row 0 is the initial box
    run.first_frame_s, run.fps, run.summary(seq)
    write result files: result_text(run), time_text(run)

Two protocols:
- "ope" (OTB one-pass, the default): initialise on frame 0 (the ground truth or `inits`), track
  every later frame whatever happens;
- "vot" (VOT supervised / baseline, as pysot's `tools/test.py` and the VOT toolkit run it): one
  target, from the ground truth. When a tracked box has no overlap with the ground truth (overlap
  0: the VOT toolkit's region overlap with the ground-truth polygon, both clipped to the image,
  when the sequence has polygons, else IoU; online/metrics.py `vot_overlap`; frames whose ground
  truth is absent cannot fail) the frame is a failure, the tracker stops, and
  it is re-initialised from the ground truth `skip` = 5 frames later (on the next frame with
  usable ground truth from there); the frames in between are skipped (no box; still decoded and
  passed to `on_frame`, for video writers). Every (re)initialisation is a fresh tracker state:
  `tracker.initialize` rebuilds each target (new fc4-fc6 copies, fc6, optimiser, sample memory,
  search state); only the shared frozen convs and the timer carry over. `run.status` holds the
  per-frame codes that the result file writes (online/metrics.py: 1 init, 2 failure, 0 skipped).

Frame decoding is timed apart from tracking (`decode_s`): it depends on storage and file format,
not on the tracker. `on_frame(i, image, run)` is called after every frame (progress bars, video
writers, per-frame printing) and is not timed.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from online.metrics import (VOT_BURN_IN, VOT_FAILURE, VOT_INIT, VOT_SKIP, VOT_SKIPPED, VOT_TRACKED, summarize,
                            valid_frames, vot_overlap, vot_scores)
from online.sequence import Sequence

PROTOCOLS = ("ope", "vot")


@dataclass
class SequenceRun:
    sequence: str
    boxes: np.ndarray  # (frames, targets, 4); an init frame holds the initial boxes; NaN when skipped
    scores: np.ndarray  # (frames, targets) mean top-k fc6 positive output; NaN on init / skipped frames
    success: np.ndarray  # (frames, targets) score > 0; True on init frames
    track_s: np.ndarray  # (frames,) seconds inside initialize (init frames) / track; 0 when skipped
    decode_s: np.ndarray  # (frames,) seconds reading and decoding the frame
    status: np.ndarray | None = None  # (frames,) VOT_TRACKED / VOT_INIT / VOT_FAILURE / VOT_SKIPPED
    protocol: str = "ope"
    net_s: float = 0.0  # seconds in network passes (synchronised), all frames
    first_frame_net_s: float = 0.0
    parts_s: dict = field(default_factory=dict)  # tracker timer parts after the first init (sums)
    done: int = 0  # frames processed so far
    first_init: int = 0  # the frame of the first initialisation
    image_size: tuple | None = None  # (W, H) of the frames: VOT overlaps are clipped to it

    def __post_init__(self):
        if self.status is None:
            self.status = np.full(len(self.track_s), VOT_TRACKED, np.int8)
            if len(self.status):
                self.status[0] = VOT_INIT

    @property
    def first_frame_s(self) -> float:
        return float(self.track_s[self.first_init])

    @property
    def tracked(self) -> np.ndarray:
        """Frames (of those done) on which `tracker.track` ran: boxes and failures."""
        s = self.status[:self.done]
        return (s == VOT_TRACKED) | (s == VOT_FAILURE)

    @property
    def fps(self) -> float:
        """Frames per second of `tracker.track` (initialisations and decoding excluded)."""
        t = float(self.track_s[:self.done][self.tracked].sum())
        k = int(self.tracked.sum())
        return k / t if k and t > 0 else float("nan")

    def summary(self, seq: Sequence | None = None, target: int = 0, burn_in: int = VOT_BURN_IN) -> dict:
        """Timings, plus against `seq`'s ground truth: OPE: mean IoU / success AUC / precision@20;
        VOT: accuracy / failures / robustness (online/metrics.py)."""
        out = {"frames": self.done, "first_frame_s": self.first_frame_s, "fps": self.fps, "net_s": self.net_s}
        n = self.done
        if self.protocol == "vot":
            out["init_s"] = float(self.track_s[:n][self.status[:n] == VOT_INIT].sum())
            out["tracked_frames"] = int(self.tracked.sum())
            if seq is not None and seq.has_groundtruth:
                polygons = None if seq.polygons is None else seq.polygons[:n]
                s = vot_scores(self.status[:n], self.boxes[:n, target], seq.boxes[:n], seq.absent[:n], burn_in,
                               polygons=polygons, image_size=self.image_size or seq.image_size)
                out.update({k: v for k, v in s.items() if k != "frames"})
        elif seq is not None and seq.has_groundtruth:
            out.update(summarize(self.boxes[:n, target], seq.boxes[:n], seq.absent[:n]))
        return out


def track_sequence(tracker, seq: Sequence, inits=None, frames: int | None = None, on_frame=None,
                   protocol: str = "ope", skip: int = VOT_SKIP) -> SequenceRun:
    """Track `seq` (its first `frames` frames) with a fresh `tracker` (online.tracker.MultiTracker).

    `inits` (K, 4): the first-frame boxes; default the ground truth's first box (OPE only; the VOT
    protocol always starts from the ground truth, one target). `skip`: VOT re-initialisation delay.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    vot = protocol == "vot"
    n = len(seq) if frames is None else min(len(seq), int(frames))
    if vot:
        if inits is not None:
            raise ValueError(f"{seq.name}: the VOT protocol (re)initialises from the ground truth; no initial boxes")
        if not seq.has_groundtruth:
            raise ValueError(f"{seq.name}: the VOT protocol needs ground truth in every frame")
        usable = valid_frames(seq.boxes[:n], seq.absent[:n])
        if not usable.any():
            raise ValueError(f"{seq.name}: no frame with a usable ground-truth box among the first {n}")
        k = 1
    else:
        if inits is None:
            if not seq.has_groundtruth or seq.absent[0]:
                raise ValueError(f"{seq.name}: the target is absent or unannotated in the first frame; give --init")
            inits = seq.boxes[:1]
        inits = np.asarray(inits, dtype=np.float64).reshape(-1, 4)
        k = len(inits)
    run = SequenceRun(sequence=seq.name, boxes=np.full((n, k, 4), np.nan), scores=np.full((n, k), np.nan),
                      success=np.ones((n, k), bool), track_s=np.zeros(n), decode_s=np.zeros(n),
                      status=np.full(n, VOT_SKIPPED if vot else VOT_TRACKED, np.int8), protocol=protocol)
    parts0: dict | None = None
    active = False  # VOT: the tracker holds a target (initialised, no failure since)
    next_init = 0  # VOT: the first frame at which a (re)initialisation may happen
    for i in range(n):
        t0 = time.perf_counter()
        image = seq.frame(i)
        t1 = time.perf_counter()
        if run.image_size is None:
            run.image_size = (int(image.shape[1]), int(image.shape[0]))
        init = (i == 0) if not vot else (not active and i >= next_init and usable[i])
        if init:
            boxes = inits if not vot else seq.boxes[i:i + 1]
            # A fresh state: initialize rebuilds every target (MultiTracker: new _Target objects).
            tracker.initialize(image, boxes)
            run.boxes[i] = boxes
            run.status[i] = VOT_INIT
            active = True
        elif active:
            results = tracker.track(image)
            run.boxes[i] = [r.box for r in results]
            run.scores[i] = [r.score for r in results]
            run.success[i] = [r.success for r in results]
            run.status[i] = VOT_TRACKED
            if vot and usable[i]:
                polygon = None if seq.polygons is None else seq.polygons[i]
                ov = vot_overlap(run.boxes[i, 0], seq.boxes[i], polygon, (image.shape[1], image.shape[0]))
                if not ov > 0.0:
                    run.status[i] = VOT_FAILURE
                    active = False
                    next_init = i + skip
        # else: VOT, skipped (after a failure, or waiting for usable ground truth): no box.
        t2 = time.perf_counter()
        run.decode_s[i], run.track_s[i] = t1 - t0, t2 - t1
        run.done = i + 1
        if init and parts0 is None:
            run.first_init = i
            run.first_frame_net_s = tracker.net_s
            parts0 = tracker.timer.snapshot()
        if on_frame is not None:
            on_frame(i, image, run)
    run.net_s = tracker.net_s
    parts0 = parts0 or {}
    run.parts_s = {key: v - parts0.get(key, 0.0) for key, v in tracker.timer.snapshot().items() if key != "net_s"}
    return run


# ----------------------------------------------------------------------------------------------
# Result files (written by mdnet-track and mdnet-eval run; read by tools/eval/scoring.py)

def result_text(run: SequenceRun, target: int = 0) -> str:
    """One line per frame: `x,y,w,h` (the ground truth's convention; the first line is the
    initial box). VOT runs: VOT's supervised format, `1` on a (re)initialisation frame, `2` on a
    failure frame, `0` on a skipped frame, else the box (pysot and the VOT toolkit read it)."""
    lines = []
    for i in range(run.done):
        s = int(run.status[i])
        if run.protocol == "vot" and s != VOT_TRACKED:
            lines.append(str(s))
        else:
            lines.append(",".join(f"{v:.2f}" for v in run.boxes[i, target]))
    return "".join(line + "\n" for line in lines)


def time_text(run: SequenceRun) -> str:
    """pytracking's `<sequence>_time.txt`: seconds inside initialize / track per frame (0 when
    skipped; decoding excluded). With the result's codes it gives the fps (mdnet-eval)."""
    return "".join(f"{t:.6f}\n" for t in run.track_s[:run.done])
