"""The formats the readers know: one `Format` record per layout, registered by its own module.

A format module (otb.py, vot.py, ...) holds both halves of its knowledge, how to recognise a
folder of its layout and how to read it, and calls `register` once per format it defines.
`detect_format`, `read_sequence` and the root walker in `online.readers` ask this registry only.

Detection order is registration order, which is the import order in `online/readers/__init__.py`:
the first format whose `detect` says yes wins, so a layout that is a special case of another
(LaSOT and GOT-10k both ship a `groundtruth.txt` like VOT) must be registered before it. Formats
without ground truth (`needs_init_box`) are tried only after every other, and only when asked.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

from online.sequence import DataError, Sequence


@dataclass(frozen=True)
class Format:
    name: str
    # One line on the files this format reads; shown by `mdnet-data index --help` and in errors.
    layout: str
    # Is this path one sequence of this layout? Cheap: file tests only, nothing is parsed.
    detect: Callable[[Path], bool]
    # Read one sequence: read(path), or read(path, init_box) where `needs_init_box`.
    read: Callable[..., Sequence]
    # A folder that holds several sequences (ImageNet-VID: one per track): read them all.
    # None means the folder is one sequence, [read(path)].
    read_all: Optional[Callable[[Path], list[Sequence]]] = None
    # For a benchmark whose sequence folders are found from a root that `detect` does not
    # recognise (ImageNet-VID's Annotations/VID tree): the sequence folders under `root`, or None
    # when `root` is not such a root. The walker stops below a root that answered.
    find_in_root: Optional[Callable[[Path], Optional[list[Path]]]] = None
    # No ground truth: the caller gives the first frame's box. Never found by discovery.
    needs_init_box: bool = False

    def read_sequences(self, path: Path) -> list[Sequence]:
        return self.read_all(path) if self.read_all is not None else [self.read(path)]


_FORMATS: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    if fmt.name in _FORMATS:
        raise ValueError(f"reader format {fmt.name!r} registered twice")
    _FORMATS[fmt.name] = fmt
    return fmt


def formats(with_init_box: bool = True) -> tuple[Format, ...]:
    """The registered formats in detection order, those needing an initial box last (or left out)."""
    fmts = tuple(_FORMATS.values())
    with_gt = tuple(f for f in fmts if not f.needs_init_box)
    return with_gt + tuple(f for f in fmts if f.needs_init_box) if with_init_box else with_gt


def names(with_init_box: bool = True) -> str:
    """The registered names, comma-separated in sorted order (for error messages)."""
    return ", ".join(sorted(f.name for f in formats(with_init_box)))


def get(name: str) -> Format:
    try:
        return _FORMATS[name]
    except KeyError:
        raise DataError(f"unknown format {name!r}; known formats: {names()}") from None


def detect(path: Path, with_init_box: bool = False) -> Format | None:
    """The first format whose layout `path` has; formats needing an initial box only if asked."""
    for fmt in formats(with_init_box):
        if fmt.detect(path):
            return fmt
    return None


def describe(fmts: Iterable[Format] | None = None, indent: str = "  ") -> str:
    """One line per format (default: all, in detection order), `name  layout`, for help and errors."""
    fmts = formats() if fmts is None else tuple(fmts)
    width = max(len(f) for f in _FORMATS)  # the same column whatever the subset
    return "\n".join(f"{indent}{f.name:<{width}}  {f.layout}" for f in fmts)
