"""OTB and the benchmarks that ship its layout: DTB70 and UAV123.

| format | ground truth | frames |
|---|---|---|
| otb | `groundtruth_rect.txt` (or `.1.txt` for two-target sequences), `x,y,w,h` comma/tab/space | `img/0001.jpg` |
| dtb70, uav123 | same as OTB, fractional values, `NaN` lines where the target is out of view | `img/` |

The three share every file name; only the benchmark folder above a sequence tells them apart
(a folder named like `DTB70` or `UAV123_10fps` / `UAV20L`), so one module holds all three.
"""
from __future__ import annotations

from pathlib import Path

from online.sequence import DataError, Sequence

from .common import annotated, folders_above, frames_in, natural_key, other_files, read_boxes, \
    require_dir, seq_name
from .registry import Format, register


def read_otb(path: str | Path, format: str = "otb") -> Sequence:
    """OTB layout: `groundtruth_rect.txt` + `img/`. DTB70 and UAV123 as shipped here use it too."""
    seq_dir = require_dir(Path(path))
    problems: list[str] = []
    gt = seq_dir / "groundtruth_rect.txt"
    if not gt.is_file():
        # Two-target OTB sequences (Jogging, Skating2, Human4) ship .1.txt and .2.txt only.
        numbered = sorted(seq_dir.glob("groundtruth_rect.*.txt"), key=lambda p: natural_key(p.name))
        if not numbered:
            raise DataError(f"{seq_dir}: no groundtruth_rect.txt")
        gt = numbered[0]
    others = other_files(seq_dir, "groundtruth_rect*.txt", gt)
    if others:
        problems.append(f"several targets annotated ({', '.join([gt.name] + others)}): using {gt.name}")
    frame_dir, frames = frames_in(seq_dir, ("img", ""))
    return annotated(seq_name(seq_dir), format, seq_dir, frame_dir, frames, read_boxes(gt), gt, problems)


def read_dtb70(path: str | Path) -> Sequence:
    return read_otb(path, format="dtb70")


def read_uav123(path: str | Path) -> Sequence:
    # UAV123 `NaN,NaN,NaN,NaN` lines (target out of view) parse as NaN and are marked absent.
    return read_otb(path, format="uav123")


# ----------------------------------------------------------------------------------------------
# Detection: OTB's files, then the benchmark folder above decides which of the three

def _has_otb_groundtruth(p: Path) -> bool:
    return p.is_dir() and ((p / "groundtruth_rect.txt").is_file() or any(p.glob("groundtruth_rect.*.txt")))


def _benchmark(p: Path) -> str:
    above = folders_above(p)
    if any("dtb70" in a for a in above):
        return "dtb70"
    if any(a.startswith(("uav123", "uav20l")) for a in above):
        return "uav123"
    return "otb"


def _detector(name: str):
    # The three detectors exclude each other, so their order in the registry does not matter.
    return lambda p: _has_otb_groundtruth(p) and _benchmark(p) == name


register(Format(
    "otb", "groundtruth_rect.txt (or .1.txt, .2.txt for two targets) x,y,w,h + img/0001.jpg ...",
    _detector("otb"), read_otb))
register(Format(
    "dtb70", "OTB layout below a folder named like DTB70; fractional boxes",
    _detector("dtb70"), read_dtb70))
register(Format(
    "uav123", "OTB layout below a folder named UAV123* or UAV20L*; NaN lines = out of view",
    _detector("uav123"), read_uav123))
