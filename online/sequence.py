"""The one sequence type every reader returns, and the frame sources behind it.

Box convention (named once, converted only at the edges): a box is `[x, y, w, h]` float, `x, y`
the top-left corner in pixel units, exactly as the benchmark's ground-truth file writes it. Results
are written back in the same convention so they compare against the same file without offsets.
Frames are RGB uint8 HxWx3 (grayscale becomes 3-channel), decoded lazily on access.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence as _Seq

import cv2
import numpy as np


class DataError(ValueError):
    """Bad input data; the message names the file (and line or frame)."""


def decode_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 HxWx3; grayscale becomes 3-channel."""
    path = str(path)
    img = cv2.imread(path, cv2.IMREAD_COLOR)  # IMREAD_COLOR also expands grayscale to 3 channels
    if img is None:
        if not Path(path).exists():
            raise DataError(f"{path}: frame file missing")
        raise DataError(f"{path}: unreadable or corrupt image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


class FrameSource:
    """Random access to decoded frames: `len(src)`, `src[i] -> RGB uint8`."""

    def __len__(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def __getitem__(self, i: int) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self, i: int) -> str:
        return f"frame {i}"


class ImageFiles(FrameSource):
    def __init__(self, paths: _Seq[str | Path]):
        self.paths = [str(p) for p in paths]

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return decode_image(self.paths[i])

    def describe(self, i):
        return self.paths[i]


@dataclass
class Sequence:
    """One annotated (or initial-box-only) sequence.

    `boxes[i]` is the ground truth of frame i (float64 x,y,w,h; NaN where unknown); `absent[i]` is
    True where the target must not be used: marked absent/occluded/out of view by the benchmark,
    NaN, zero or negative size, or wholly outside the image. `len(boxes)` may be shorter than the
    number of frames only when `annotated` says so; readers truncate to the annotated prefix.
    """
    name: str
    frames: FrameSource
    boxes: np.ndarray
    absent: np.ndarray
    format: str = "unknown"
    path: str = ""
    problems: list[str] = field(default_factory=list)
    # frames on disk (may exceed len(self) when the ground truth is shorter)
    frames_on_disk: int = -1
    # False for an image folder / video given only an initial box: boxes[1:] are NaN placeholders
    has_groundtruth: bool = True

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.absent = np.asarray(self.absent, dtype=bool).reshape(-1)
        if len(self.absent) != len(self.boxes):
            raise ValueError(f"{self.name}: {len(self.boxes)} boxes but {len(self.absent)} absent flags")
        if self.frames_on_disk < 0:
            self.frames_on_disk = len(self.frames)

    def __len__(self) -> int:
        return len(self.boxes)

    def head(self, n: int) -> "Sequence":
        """The first n frames (all when shorter): runs made with --frames N are scored on these."""
        n = max(1, min(int(n), len(self)))
        return dataclasses.replace(self, boxes=self.boxes[:n], absent=self.absent[:n])

    def frame(self, i: int) -> np.ndarray:
        if not 0 <= i < len(self):
            raise IndexError(f"{self.name}: frame {i} out of range (0..{len(self) - 1})")
        return self.frames[i]

    @property
    def annotated(self) -> int:
        """Frames with a usable target box."""
        return int((~self.absent).sum())

    @property
    def init_box(self) -> np.ndarray:
        return self.boxes[0]
