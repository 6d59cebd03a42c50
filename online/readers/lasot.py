"""LaSOT: `groundtruth.txt` + `full_occlusion.txt` / `out_of_view.txt` (0/1, one comma-separated
line; 1 = absent), frames in `img/`. Sequences sit in class folders (`cat/cat-2/`).

A copy cut to its first N frames (and N ground-truth lines) often keeps the flag files of the
full video, with more values than lines: the first N values belong to the kept frames, so they are
used and `problems` says so. Fewer values than lines is still an error (which frames would they
describe?).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from online.sequence import DataError, Sequence

from .common import annotated, frames_in, read_boxes, read_ints, require_dir, seq_name
from .registry import Format, register


def _flags(path: Path, n: int, problems: list[str]) -> np.ndarray:
    vals = read_ints(path)
    if len(vals) < n:
        raise DataError(f"{path}: {len(vals)} values but the ground truth has {n} lines")
    if len(vals) > n:
        problems.append(f"{path.name} has {len(vals)} values for {n} ground-truth lines: "
                        f"using the first {n}")
    return vals[:n]


def read_lasot(path: str | Path) -> Sequence:
    """LaSOT: `groundtruth.txt`, `full_occlusion.txt`, `out_of_view.txt`, frames in `img/`."""
    seq_dir = require_dir(Path(path))
    gt = seq_dir / "groundtruth.txt"
    boxes = read_boxes(gt)
    frame_dir, frames = frames_in(seq_dir, ("img",))
    problems: list[str] = []
    flags = np.zeros(len(boxes), bool)
    for name in ("full_occlusion.txt", "out_of_view.txt"):
        if (seq_dir / name).is_file():
            flags |= _flags(seq_dir / name, len(boxes), problems) == 1
    return annotated(seq_name(seq_dir), "lasot", seq_dir, frame_dir, frames, boxes, gt, problems, flags)


def _detect(p: Path) -> bool:
    return (p / "groundtruth.txt").is_file() and (
        (p / "full_occlusion.txt").is_file() or (p / "out_of_view.txt").is_file())


register(Format(
    "lasot", "groundtruth.txt + full_occlusion.txt / out_of_view.txt (0/1) + img/",
    _detect, read_lasot))
