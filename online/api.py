"""MDNet behind OpenCV's tracker interface, for applications that already drive cv2 trackers.

    import cv2
    from online.api import create_tracker

    tracker = create_tracker(mode="fast")          # the shipped model; weights="W.h5" or "random:0"
    ok, frame = cap.read()                         # cap = cv2.VideoCapture("video.mp4")
    tracker.init(frame, (x, y, w, h))
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        ok, box = tracker.update(frame)            # box: (x, y, w, h) floats; ok: MDNet's success

Frames are BGR uint8 as cv2 delivers them (grayscale and BGRA are accepted too); the tracker
itself works on RGB (online/sequence.py), so each frame is converted here, at the edge.
`ok` is MDNet's own success flag (the mean fc6 positive score of the top-5 candidates > 0,
`tracker.score`), not "a box was produced": on a failure MDNet still returns its best guess and
widens its search, so `box` is always set, as with OpenCV's CSRT. The box convention is the
project's (online/sequence.py): top-left x, y, width, height in pixels.

Threads: MXNet reads OMP_NUM_THREADS once, when it is first imported; set it (or call
online.threads.set_threads) before importing this module to choose.
"""
from __future__ import annotations

import cv2
import numpy as np

from online.loading import build_tracker

MODES = ("exact", "fast")  # online.tracker_config.MODES; a test keeps them equal


def to_rgb(frame) -> np.ndarray:
    """A cv2 frame (BGR, BGRA or grayscale uint8) as RGB HxWx3; ValueError naming what is wrong,
    first of all the None that `cap.read()` returns at the end of a video."""
    if frame is None:
        raise ValueError("empty frame: got None (did cv2.VideoCapture.read() fail or the video end?)")
    frame = np.asarray(frame)
    if frame.size == 0:
        raise ValueError(f"empty frame: shape {frame.shape}")
    if frame.dtype != np.uint8:
        raise ValueError(f"frame dtype {frame.dtype}: expected uint8 (as cv2 delivers frames)")
    if frame.ndim == 2 or (frame.ndim == 3 and frame.shape[2] == 1):
        return cv2.cvtColor(frame.reshape(frame.shape[:2]), cv2.COLOR_GRAY2RGB)
    if frame.ndim == 3 and frame.shape[2] == 3:
        return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    if frame.ndim == 3 and frame.shape[2] == 4:
        return cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    raise ValueError(f"frame shape {frame.shape}: expected HxW, HxWx3 (BGR) or HxWx4 (BGRA)")


class MDNetCVTracker:
    """`init(frame, box)`, then `ok, box = update(frame)` per frame; one target.

    Built by `create_tracker`; wraps online.tracker.MDNetTracker (the same tracker mdnet-track runs).
    `init` again starts over on a new target (a fresh fc4-fc6, as every initialisation).
    """

    def __init__(self, tracker):
        self.tracker = tracker  # online.tracker.MDNetTracker
        self.score = float("nan")  # the last frame's mean top-5 fc6 score; ok == score > 0
        self._started = False

    def init(self, frame, box) -> None:
        box = np.asarray(box, dtype=np.float64).reshape(-1)
        if box.shape != (4,) or not np.all(np.isfinite(box)):
            raise ValueError(f"box {box.tolist()}: expected four finite numbers x, y, w, h")
        # MultiTracker.initialize refuses an empty box or one outside the image (ValueError).
        self.tracker.initialize(to_rgb(frame), box)
        self.score = float("nan")
        self._started = True

    def update(self, frame) -> tuple:
        if not self._started:
            raise RuntimeError("update() before init(frame, box)")
        result = self.tracker.track(to_rgb(frame))
        self.score = float(result.score)
        return bool(result.success), tuple(float(v) for v in result.box)


def create_tracker(weights=None, mode: str = "exact", seed: int = 0, config=None, overrides=(),
                   widths=None, ctx=None, trunk=None) -> MDNetCVTracker:
    """An OpenCV-style MDNet tracker.

    weights: a weight file (.h5), `random:SEED`, or None for the shipped model (online/shipped.py).
    mode: exact (MDNet: every box cropped) or fast (boxes pooled from one feature map; ~5x the fps).
    seed: the tracker's random stream; the same seed gives the same boxes on the same CPU.
    config / overrides: a tracker config YAML and KEY=VALUE strings, as mdnet-track's --config / --set.
    widths: C1, C2, C3, FC of a random:SEED trunk. ctx: an mxnet context (default CPU).
    trunk: an already loaded trunk (online.loading.load_trunk) to share between trackers.
    Raises ValueError (bad mode, config or weights) before anything is tracked.
    """
    return MDNetCVTracker(build_tracker(weights, mode, seed, config, overrides, widths, ctx, trunk))
