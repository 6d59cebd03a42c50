"""GOT-10k: `groundtruth.txt`, `absence.label` (1 = absent) and `cover.label` (0 = fully covered),
frames `00000001.jpg` in the sequence folder itself.

A test-split sequence has the first box only and no labels: it reads as an initial box without
ground truth.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from online.sequence import Sequence

from .common import annotated, frames_in, read_boxes, read_flags, require_dir, seq_name
from .registry import Format, register


def read_got10k(path: str | Path) -> Sequence:
    """GOT-10k: `groundtruth.txt`, `absence.label`, `cover.label`, frames `00000001.jpg` in the folder."""
    seq_dir = require_dir(Path(path))
    gt = seq_dir / "groundtruth.txt"
    boxes = read_boxes(gt)
    frame_dir, frames = frames_in(seq_dir, ("", "img"))
    flags = np.zeros(len(boxes), bool)
    if len(boxes) > 1:  # test sequences (first box only) carry no labels
        if (seq_dir / "absence.label").is_file():
            flags |= read_flags(seq_dir / "absence.label", len(boxes)) == 1
        if (seq_dir / "cover.label").is_file():
            # cover 0 = target fully covered; pytracking's GOT-10k loader also treats it as not visible.
            flags |= read_flags(seq_dir / "cover.label", len(boxes)) == 0
    return annotated(seq_name(seq_dir), "got10k", seq_dir, frame_dir, frames, boxes, gt, [], flags)


def _detect(p: Path) -> bool:
    # The test split has no label files; its folder names (GOT-10k_Test_000001) still say it.
    return (p / "groundtruth.txt").is_file() and (
        any((p / f).is_file() for f in ("absence.label", "cover.label", "meta_info.ini"))
        or p.name.lower().startswith("got-10k_"))


register(Format(
    "got10k", "groundtruth.txt + absence.label / cover.label / meta_info.ini (or a GOT-10k_* "
              "name); frames in the folder",
    _detect, read_got10k))
