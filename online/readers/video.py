"""A video file (anything OpenCV decodes) and the target's box in the first frame: no ground truth."""
from __future__ import annotations

import threading
from pathlib import Path

import cv2
import numpy as np

from online.sequence import DataError, FrameSource, Sequence

from .common import init_only
from .registry import Format, register

VIDEO_EXTS = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv")


class VideoFrames(FrameSource):
    """Frames of a video file, decoded on access by index.

    Access is sequential under the hood: going forward grabs (decodes without colour conversion)
    up to the wanted frame; going back reopens the file. `CAP_PROP_POS_FRAMES` seeking lands on the
    nearest keyframe for many codecs and then silently returns the wrong frame, so it is not used.
    Trackers read frames in order, which costs one decode per frame.
    """

    def __init__(self, path: str | Path):
        self.path = str(path)
        if not Path(self.path).is_file():
            raise DataError(f"{self.path}: video file missing")
        self._lock = threading.Lock()
        self._cap = None
        self._pos = 0  # index of the frame the open capture returns next
        self._last: tuple[int, np.ndarray | None] = (-1, None)
        # Count by decoding: CAP_PROP_FRAME_COUNT comes from the container header and is wrong
        # for variable-frame-rate files and broken indexes. One grab() pass is exact.
        cap = self._open()
        n = 0
        while cap.grab():
            n += 1
        cap.release()
        if n == 0:
            raise DataError(f"{self.path}: no frames could be decoded (not a video, or an unsupported codec)")
        self._n = n

    def _open(self):
        cap = cv2.VideoCapture(self.path)
        if not cap.isOpened():
            raise DataError(f"{self.path}: OpenCV cannot open this video")
        return cap

    def __len__(self):
        return self._n

    def __getitem__(self, i):
        i = int(i)
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"{self.path}: frame {i} out of range (0..{self._n - 1})")
        with self._lock:
            if self._last[0] == i:
                return self._last[1].copy()
            if self._cap is None or i < self._pos:
                if self._cap is not None:
                    self._cap.release()
                self._cap, self._pos = self._open(), 0
            while self._pos < i:
                if not self._cap.grab():
                    raise DataError(f"{self.path}: frame {self._pos} could not be decoded")
                self._pos += 1
            ok, img = self._cap.read()
            if not ok or img is None:
                raise DataError(f"{self.path}: frame {i} could not be decoded")
            self._pos = i + 1
            if img.ndim == 2:
                img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
            else:
                img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            self._last = (i, img)
            return img.copy()

    def describe(self, i):
        return f"{self.path} frame {i}"

    def close(self):
        with self._lock:
            if self._cap is not None:
                self._cap.release()
            self._cap, self._pos, self._last = None, 0, (-1, None)

    # A VideoCapture cannot cross a process boundary; the copy reopens the file when used.
    def __getstate__(self):
        state = self.__dict__.copy()
        state.update(_cap=None, _pos=0, _last=(-1, None), _lock=None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()


def read_video(path: str | Path, init_box) -> Sequence:
    """A video file (anything OpenCV decodes) and the target's box in the first frame."""
    frames = VideoFrames(path)
    return init_only(Path(path).stem, "video", path, frames, init_box, [])


def _detect(p: Path) -> bool:
    return p.suffix.lower() in VIDEO_EXTS and p.is_file()


register(Format(
    "video", f"a video file ({', '.join(VIDEO_EXTS)}) + the first frame's box",
    _detect, read_video, needs_init_box=True))
