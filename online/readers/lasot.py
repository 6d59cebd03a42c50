"""LaSOT: `groundtruth.txt` + `full_occlusion.txt` / `out_of_view.txt` (0/1, one comma-separated
line; 1 = absent), frames in `img/`. Sequences sit in class folders (`cat/cat-2/`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from online.sequence import Sequence

from .common import annotated, frames_in, read_boxes, read_flags, require_dir, seq_name
from .registry import Format, register


def read_lasot(path: str | Path) -> Sequence:
    """LaSOT: `groundtruth.txt`, `full_occlusion.txt`, `out_of_view.txt`, frames in `img/`."""
    seq_dir = require_dir(Path(path))
    gt = seq_dir / "groundtruth.txt"
    boxes = read_boxes(gt)
    frame_dir, frames = frames_in(seq_dir, ("img",))
    flags = np.zeros(len(boxes), bool)
    for name in ("full_occlusion.txt", "out_of_view.txt"):
        if (seq_dir / name).is_file():
            flags |= read_flags(seq_dir / name, len(boxes)) == 1
    return annotated(seq_name(seq_dir), "lasot", seq_dir, frame_dir, frames, boxes, gt, [], flags)


def _detect(p: Path) -> bool:
    return (p / "groundtruth.txt").is_file() and (
        (p / "full_occlusion.txt").is_file() or (p / "out_of_view.txt").is_file())


register(Format(
    "lasot", "groundtruth.txt + full_occlusion.txt / out_of_view.txt (0/1) + img/",
    _detect, read_lasot))
