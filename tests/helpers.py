"""Small writers of benchmark-layout sequences shared by the tests (readers, bad input, eval, pack,
data tools): `from tests.helpers import write_frames, write_otb_sequence, ...`.

Frames are real image files (OpenCV-encoded, or copies of one real OTB frame), so the readers see
exactly what they see on a benchmark's disk.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np

from tests.conftest import SHARED_DATA

# A real 360x240 OTB frame (Crossing): sequences made of copies of it decode like real data.
REAL_FRAME = SHARED_DATA / "OTB" / "Crossing" / "img" / "0001.jpg"
REAL_BOX = "120,60,40,80"  # a box inside REAL_FRAME


def _shade(k: int) -> int:
    return (k * 17) % 256


def write_frames(folder: Path, n: int, size=(40, 30), names=None, start=1, digits=4, value=_shade) -> list[Path]:
    """`n` uniform frames `size` = (W, H) into `folder`: frame k filled with `value(k)` (a function
    of k, or one number for all; default (k * 17) % 256), named `names[k]` or start+k zero-padded
    to `digits` with .jpg. Returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n):
        img = np.full((size[1], size[0], 3), value(k) if callable(value) else value, np.uint8)
        name = names[k] if names else f"{start + k:0{digits}d}.jpg"
        assert cv2.imwrite(str(folder / name), img), folder / name
        paths.append(folder / name)
    return paths


def groundtruth_text(rows, sep=",") -> str:
    """One line per row: a string as it is, numbers joined by `sep` (`%g`, NaN as NaN)."""
    def line(row):
        if isinstance(row, str):
            return row
        return sep.join("NaN" if np.isnan(v) else f"{v:g}" for v in np.asarray(row, dtype=np.float64))
    return "".join(line(r) + "\n" for r in rows)


def write_otb_sequence(root: Path, name: str, gt, frames: int | None = None, size=(40, 30), value=_shade,
                       gt_file="groundtruth_rect.txt", sep=",") -> Path:
    """An OTB-layout folder root/name: img/0001.jpg ... (`frames` of them, default one per
    ground-truth row; see write_frames) and `gt_file` with the rows of `gt` (groundtruth_text)."""
    d = root / name
    write_frames(d / "img", len(gt) if frames is None else frames, size=size, value=value)
    (d / gt_file).write_text(groundtruth_text(gt, sep))
    return d


def write_real_otb_sequence(root: Path, name: str = "Seq", frames: int = 4, gt_lines: int | None = None,
                            gt: bool = True) -> Path:
    """An OTB-layout folder root/name of `frames` copies of REAL_FRAME and, when `gt`, a ground
    truth of `gt_lines` (default one per frame) REAL_BOX lines."""
    seq = root / name
    (seq / "img").mkdir(parents=True)
    for i in range(frames):
        shutil.copy(REAL_FRAME, seq / "img" / f"{i + 1:04d}.jpg")
    if gt:
        (seq / "groundtruth_rect.txt").write_text(groundtruth_text([REAL_BOX] * (gt_lines or frames)))
    return seq
