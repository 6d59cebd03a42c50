"""OpenCV's classical trackers (CSRT, KCF, MIL) and its NanoTrack v2 (`cv2.TrackerNano`, a small
Siamese network) behind the interface online.track_loop drives, so `mdnet-eval run ROOT --tracker
csrt|nano` tracks, times, writes and scores them exactly as it does MDNet: same result and timing
files, same resumable parallel runner, same tables and plots.

    tracker = OpenCVTracker("csrt")
    tracker = OpenCVTracker("nano", nano_dir)  # nano_dir: None -> nanotrack_dir()'s search
    run = track_sequence(tracker, seq)        # online.track_loop

NanoTrack's two ONNX files are third-party weights (HonglinChu/SiamTrackers, Apache-2.0) and never
part of this repository: `nanotrack_dir` finds them (--nano-dir, else $MDNET_NANOTRACK_DIR, else
../shared/baselines/nanotrack beside the repository when present) and says where to get them when
they are missing. Every OpenCV tracker here runs on one thread (cv2.setNumThreads(1)) in its worker
process, NanoTrack's DNN included; a False from NanoTrack's `update` is handled as for the others.

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

import hashlib
import os
from pathlib import Path

import numpy as np

# name -> the factories to try, newest API first (OpenCV 4.5.1+ moved the old ones to cv2.legacy).
OPENCV_TRACKERS = {
    "csrt": ("TrackerCSRT_create", "TrackerCSRT.create", "legacy.TrackerCSRT_create"),
    "kcf": ("TrackerKCF_create", "TrackerKCF.create", "legacy.TrackerKCF_create"),
    "mil": ("TrackerMIL_create", "TrackerMIL.create", "legacy.TrackerMIL_create"),
    "nano": ("TrackerNano_create", "TrackerNano.create"),  # OpenCV 4.7+; needs NANO_FILES
}
CONTRIB_HINT = ("OpenCV's CSRT and KCF trackers are in the contrib build: pip install "
                "'opencv-contrib-python-headless<4.12' (make install does; uninstall opencv-python-headless first)")

# NanoTrack v2's two ONNX files (the names OpenCV's TrackerNano documentation uses).
NANO_FILES = {"backbone": "nanotrack_backbone_sim.onnx", "neckhead": "nanotrack_head_sim.onnx"}
NANO_ENV = "MDNET_NANOTRACK_DIR"
NANO_DEV_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "baselines" / "nanotrack"
NANO_SOURCE = ("get them from https://github.com/HonglinChu/SiamTrackers, folder "
               "NanoTrack/models/nanotrackv2 (Apache-2.0), and name their folder with --nano-dir DIR "
               f"or ${NANO_ENV}")


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


def nanotrack_dir(nano_dir=None) -> Path:
    """The folder holding NANO_FILES: `nano_dir` (--nano-dir), else $MDNET_NANOTRACK_DIR, else
    ../shared/baselines/nanotrack beside the repository (this project's development copy) when it
    exists. BaselineError naming the missing path and where the files come from otherwise."""
    if nano_dir is None:
        nano_dir = os.environ.get(NANO_ENV) or None
        origin = f"${NANO_ENV}"
    else:
        origin = "--nano-dir"
    if nano_dir is None:
        if not NANO_DEV_DIR.is_dir():
            raise BaselineError(f"NanoTrack needs {' and '.join(NANO_FILES.values())}: {NANO_SOURCE}")
        nano_dir, origin = NANO_DEV_DIR, "the development copy"
    nano_dir = Path(nano_dir).expanduser().resolve()
    for fname in NANO_FILES.values():
        if not (nano_dir / fname).is_file():
            raise BaselineError(f"NanoTrack model file missing: {nano_dir / fname} (folder from {origin}); "
                                f"{NANO_SOURCE}")
    return nano_dir


def nanotrack_files(nano_dir=None) -> dict:
    """{file name: sha256} of the NanoTrack files found by nanotrack_dir (what run.yaml records)."""
    d = nanotrack_dir(nano_dir)
    return {f: hashlib.sha256((d / f).read_bytes()).hexdigest() for f in NANO_FILES.values()}


def opencv_factory(name: str, nano_dir=None):
    """A constructor taking no argument for OpenCV tracker `name` (nano: with its ONNX files from
    nanotrack_dir(nano_dir)); BaselineError when this OpenCV build lacks it or a file is missing."""
    if name not in OPENCV_TRACKERS:
        raise BaselineError(f"unknown OpenCV tracker {name!r}; known: {', '.join(OPENCV_TRACKERS)}")
    for path in OPENCV_TRACKERS[name]:
        make = _lookup(path)
        if make is not None:
            break
    else:
        import cv2

        if name == "nano":
            raise BaselineError(f"OpenCV {cv2.__version__} has no TrackerNano (OpenCV 4.7 or newer has it): pip install "
                                "'opencv-contrib-python-headless>=4.7,<4.12'")
        raise BaselineError(f"OpenCV {cv2.__version__} has no {name.upper()} tracker. {CONTRIB_HINT}")
    if name != "nano":
        return make
    return _nano_factory(make, nanotrack_dir(nano_dir))


def _nano_factory(make, folder: Path):
    import cv2

    params = cv2.TrackerNano_Params()
    params.backbone = str(folder / NANO_FILES["backbone"])
    params.neckhead = str(folder / NANO_FILES["neckhead"])

    def build():
        try:
            return make(params)
        except cv2.error as e:  # an unreadable ONNX file or a DNN module that cannot run it
            raise BaselineError(f"OpenCV {cv2.__version__} could not load NanoTrack from {folder}: "
                                f"{str(e).strip().splitlines()[-1]}") from e

    return build


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

    def __init__(self, name: str, nano_dir=None):
        import cv2

        cv2.setNumThreads(1)  # one thread per worker process (OpenCV ignores OMP_NUM_THREADS)
        self.name = name
        self._make = opencv_factory(name, nano_dir)
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
