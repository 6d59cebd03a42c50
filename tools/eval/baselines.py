"""OpenCV's classical trackers (CSRT, KCF, MIL) behind the interface online.track_loop drives,
so `mdnet-eval run ROOT --tracker csrt` tracks, times, writes and scores them exactly as it does
MDNet: same result and timing files, same resumable parallel runner, same tables and plots.

    tracker = OpenCVTracker("csrt")
    run = track_sequence(tracker, seq)        # online.track_loop

A lost target: OpenCV's `update` returns (False, box) when the tracker reports a failure (KCF and
CSRT on a low response peak, MIL never). The last box it returned with True is then kept for that
frame and the tracker goes on updating on the next frames (it is not re-initialised: the OTB
one-pass protocol gives no second ground-truth box). Under `--protocol vot` the runner
re-initialises it from the ground truth after an IoU-0 frame, as it does MDNet.

Boxes are passed in the sequence's own convention and rounded to whole pixels (OpenCV's trackers
take an integer `cv::Rect`); frames are converted from the readers' RGB to OpenCV's BGR.
Deterministic: OpenCV's trackers take no seed (`--seed` changes nothing for them).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# name -> the factories to try, newest API first (OpenCV 4.5.1+ moved the old ones to cv2.legacy).
OPENCV_TRACKERS = {
    "csrt": ("TrackerCSRT_create", "TrackerCSRT.create", "legacy.TrackerCSRT_create"),
    "kcf": ("TrackerKCF_create", "TrackerKCF.create", "legacy.TrackerKCF_create"),
    "mil": ("TrackerMIL_create", "TrackerMIL.create", "legacy.TrackerMIL_create"),
}
CONTRIB_HINT = ("OpenCV's CSRT and KCF trackers are in the contrib build: pip install "
                "'opencv-contrib-python-headless<4.12' (make install does; uninstall opencv-python-headless first)")


class BaselineError(RuntimeError):
    """The requested OpenCV tracker cannot be built here."""


def _lookup(path: str):
    import cv2

    obj = cv2
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def opencv_factory(name: str):
    """The constructor of OpenCV tracker `name`; BaselineError when this OpenCV build lacks it."""
    if name not in OPENCV_TRACKERS:
        raise BaselineError(f"unknown OpenCV tracker {name!r}; known: {', '.join(OPENCV_TRACKERS)}")
    for path in OPENCV_TRACKERS[name]:
        make = _lookup(path)
        if make is not None:
            return make
    import cv2

    raise BaselineError(f"OpenCV {cv2.__version__} has no {name.upper()} tracker. {CONTRIB_HINT}")


def opencv_version() -> str:
    import cv2

    return cv2.__version__


@dataclass
class BaselineResult:
    box: np.ndarray  # x, y, w, h
    score: float  # 1.0 when OpenCV reported the target found, else 0.0 (no confidence is exposed)
    success: bool


class _NoTimer:
    """track_loop reads timer parts; a classical tracker has no network phases."""

    net_s = 0.0

    def snapshot(self) -> dict:
        return {"net_s": 0.0}


class OpenCVTracker:
    """One target, tracked by an OpenCV tracker; `initialize` starts a fresh one every time."""

    net_s = 0.0  # no network passes

    def __init__(self, name: str):
        self.name = name
        self._make = opencv_factory(name)
        self._tracker = None
        self._last = np.zeros(4)
        self.timer = _NoTimer()

    @staticmethod
    def _bgr(image: np.ndarray) -> np.ndarray:
        import cv2

        if image.ndim == 2:
            return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        return np.ascontiguousarray(image[:, :, ::-1])

    def initialize(self, image: np.ndarray, boxes) -> None:
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) != 1:
            raise ValueError(f"OpenCV's {self.name.upper()} tracks one target; got {len(boxes)} initial boxes")
        x, y, w, h = boxes[0]
        rect = (int(round(x)), int(round(y)), max(1, int(round(w))), max(1, int(round(h))))
        self._tracker = self._make()
        self._tracker.init(self._bgr(image), rect)
        self._last = boxes[0].copy()

    def track(self, image: np.ndarray) -> list[BaselineResult]:
        if self._tracker is None:
            raise RuntimeError("track() before initialize()")
        ok, rect = self._tracker.update(self._bgr(image))
        if ok:
            self._last = np.asarray(rect, dtype=np.float64)
        return [BaselineResult(box=self._last.copy(), score=1.0 if ok else 0.0, success=bool(ok))]
