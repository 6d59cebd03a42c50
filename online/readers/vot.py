"""VOT: `groundtruth.txt` with 8-value polygons (or 4-value boxes); frames in `color/`, `img/` or
the sequence folder itself (VOT2015 layout).

VOT is the plain `groundtruth.txt` layout: LaSOT and GOT-10k ship the same file plus their own
flag files, so they are registered before VOT and a folder that is neither of them is VOT.
A polygon becomes its axis-aligned bounding rectangle (`boxes`, what the tracker starts from and
OPE scores); the corners are kept in `Sequence.polygons` (a 4-value line as its rectangle's), which
the VOT protocol scores, as the VOT toolkit does.
"""
from __future__ import annotations

from pathlib import Path

from online.sequence import DataError, Sequence

from .common import annotated, frames_in, other_files, read_regions, require_dir, seq_name
from .registry import Format, register


def read_vot(path: str | Path) -> Sequence:
    """VOT: `groundtruth.txt` polygons (or boxes); frames in `color/`, `img/` or the folder."""
    seq_dir = require_dir(Path(path))
    gt = seq_dir / "groundtruth.txt"
    if not gt.is_file():
        raise DataError(f"{seq_dir}: no groundtruth.txt")
    problems = []
    others = other_files(seq_dir, "groundtruth*.txt", gt)
    if others:
        problems.append(f"also has {', '.join(others)} (another annotation of the same frames; not read)")
    frame_dir, frames = frames_in(seq_dir, ("color", "img", ""))
    boxes, polygons = read_regions(gt)
    return annotated(seq_name(seq_dir), "vot", seq_dir, frame_dir, frames, boxes, gt, problems,
                     polygons=polygons)


def _detect(p: Path) -> bool:
    return (p / "groundtruth.txt").is_file()


register(Format(
    "vot", "groundtruth.txt (8-value polygons or x,y,w,h) + color/, img/ or frames in the folder",
    _detect, read_vot))
