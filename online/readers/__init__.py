"""Sequence readers: every benchmark layout we meet becomes one `online.sequence.Sequence`.

One module per benchmark family holds both how to recognise its layout and how to read it, and
registers a `Format` for each layout (registry.py); the functions here ask the registry only:

| module | formats | ground truth |
|---|---|---|
| otb.py | otb, dtb70, uav123 | `groundtruth_rect.txt` + `img/` (the folder above tells the three apart) |
| lasot.py | lasot | `groundtruth.txt` + `full_occlusion.txt` / `out_of_view.txt` + `img/` |
| got10k.py | got10k | `groundtruth.txt` + `absence.label` / `cover.label`, frames in the folder |
| vot.py | vot | `groundtruth.txt` polygons or boxes + `color/`, `img/` or the folder |
| imagenet_vid.py | imagenet-vid | `Annotations/VID/.../*.xml` + `Data/VID/...`, one Sequence per track |
| pack.py | pack | one HDF5 file of many sequences written by `mdnet-data pack` (each keeps its own format) |
| video.py, folder.py | video, image-folder | none: the caller gives the initial box |
| common.py | - | the shared parsing, frame listing, box checks and Sequence building |

`mdnet-data index --help` prints the registered formats with their layouts.

Rules every reader follows (so the pretraining sampler and the tracker need no special cases):
- Boxes stay exactly as the file writes them (`x, y, w, h`, no 1-based shift); a VOT polygon becomes
  its axis-aligned bounding rectangle (the VOT reader also keeps the corners in `seq.polygons`, for
  the VOT protocol's overlap); an ImageNet-VID corner box becomes `xmin, ymin, xmax-xmin,
  ymax-ymin`.
- A frame is marked absent when the benchmark says so, or its box is NaN, has zero or negative
  size, or lies wholly outside the image (size from decoding the first frame once).
- More ground-truth lines than frames is an error; fewer means only the annotated prefix is used
  (`len(seq)` = lines; `frames_on_disk` keeps the real count) and `problems` says so.
- `len(seq.frames) == len(seq)` always: frames beyond the annotation are not exposed.
- Nothing is decoded at load time except the first frame; a corrupt frame raises `DataError`
  naming its file when it is accessed (`check_frames` decodes the first and last one;
  `check_frame_bytes` looks at every frame's last bytes for a truncated file).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from online.sequence import DataError, Sequence

from . import registry
from .common import IMAGE_EXTS, invalid_boxes, list_images, natural_key, read_boxes, read_lines
from .registry import Format, formats

# The import order is the detection order (see registry.py): a layout that is a special case of
# another comes first. LaSOT and GOT-10k add flag files to VOT's groundtruth.txt, so both precede
# VOT; the OTB family and ImageNet-VID share no file with the others. Formats without ground truth
# (video, image-folder) are tried last whatever their place.
# A pack is a file, which no folder format claims, so its place only decides where `mdnet-data
# index --help` lists it.
from . import otb, lasot, got10k, vot, imagenet_vid, pack, video, folder  # noqa: F401  (importing registers them)
from .folder import read_image_folder
from .got10k import read_got10k
from .imagenet_vid import read_imagenet_vid
from .lasot import read_lasot
from .otb import read_dtb70, read_otb, read_uav123
from .pack import read_pack
from .video import VIDEO_EXTS, VideoFrames, read_video
from .vot import read_vot

__all__ = [
    "IMAGE_EXTS", "VIDEO_EXTS", "MAX_DISCOVER_DEPTH", "Format", "SequenceRef", "VideoFrames",
    "check_frame_bytes", "check_frames", "detect_format", "discover", "find_sequences", "formats", "invalid_boxes",
    "list_images", "load", "read_boxes", "read_dtb70", "read_got10k", "read_image_folder",
    "read_imagenet_vid", "read_lasot", "read_otb", "read_pack", "read_sequence", "read_uav123", "read_video",
    "read_vot",
]

# How deep `discover` looks below its root for sequence folders (LaSOT needs 2, a benchmark root
# holding LaSOT needs 3); the limit keeps a wrong root (say, a home folder) from walking forever.
MAX_DISCOVER_DEPTH = 6


# ----------------------------------------------------------------------------------------------
# One sequence

def detect_format(path: str | Path, with_init_box: bool = False) -> str | None:
    """The format of one sequence folder, or None if it is not one.

    With `with_init_box`, also the formats read with a caller's initial box (a video file, any
    folder as a plain image folder) when no format with ground truth matches.
    """
    fmt = registry.detect(Path(path), with_init_box)
    return None if fmt is None else fmt.name


def read_sequence(path: str | Path, init_box=None) -> Sequence:
    """Read one sequence folder of any known format, or a video / image folder with `init_box`.

    `init_box` is used only where there is no ground truth (an image folder or a video file).
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    fmt = registry.detect(p, with_init_box=True)
    if fmt is None and p.is_file() and p.name.startswith("groundtruth"):
        p = p.parent  # pointing at the ground-truth file means its sequence
        fmt = registry.detect(p, with_init_box=True)
    if fmt is None:  # a file no format reads (every folder is at least an image folder)
        raise DataError(f"{p}: not a sequence folder or a video file; known formats:\n{registry.describe()}")
    if not fmt.needs_init_box:
        return fmt.read(p)
    if init_box is None:
        raise DataError(f"{p}: not a sequence folder of a format with ground truth; to read it as "
                        f"{fmt.name}, give an initial box x,y,w,h; known formats:\n{registry.describe()}")
    return fmt.read(p, init_box)


def check_frames(seq: Sequence) -> tuple[int, int]:
    """Decode the first and last frame (raises DataError naming a bad file); returns (w, h)."""
    first = seq.frames[0]
    last_i = len(seq.frames) - 1
    last = seq.frames[last_i]
    if first.shape != last.shape:
        raise DataError(f"{seq.frames.describe(last_i)}: frame is {last.shape[1]}x{last.shape[0]} but "
                        f"{seq.frames.describe(0)} is {first.shape[1]}x{first.shape[0]}")
    return first.shape[1], first.shape[0]


def check_frame_bytes(seq: Sequence) -> None:
    """The cheap corrupt-frame check of every frame: first and last bytes only, nothing decoded.

    A truncated JPEG (no end-of-image marker) or PNG (no IEND) raises DataError naming the frame's
    file; OpenCV would decode it with grey rows and nobody would notice. Video frames are not
    checked (no per-frame bytes to look at).
    """
    for i in range(len(seq.frames)):
        seq.frames.check(i)


# ----------------------------------------------------------------------------------------------
# Discovery: every sequence under a root

@dataclass(frozen=True)
class SequenceRef:
    """Where a sequence lives and how to read it (found without reading it)."""
    path: Path
    format: str


def find_sequences(root: str | Path, unannotated: list[Path] | None = None) -> list[SequenceRef]:
    """Every sequence under `root`, in a deterministic order, without reading any.

    `root` may be one sequence folder, a benchmark root (folders of sequences, nested to any
    depth up to MAX_DISCOVER_DEPTH, e.g. LaSOT's class folders), a VOT or GOT-10k root whose
    `list.txt` names its sequences (kept in list order), or a root a format knows how to walk
    (ImageNet-VID: the folder holding Annotations/VID and Data/VID), or a file that holds many
    sequences (a pack written by `mdnet-data pack`: one ref, `load` gives them all).

    With `unannotated`, folders of frame images that no format with ground truth claims (a
    sequence whose ground-truth file is missing) are appended to it, so a caller that trains on
    the root can say which it leaves out instead of skipping them silently.
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: no such folder")
    if not root.is_dir():
        fmt = registry.detect(root)
        if fmt is not None and fmt.read_all is not None:
            return [SequenceRef(root, fmt.name)]
        raise DataError(f"{root}: not a folder or a pack")
    refs: list[SequenceRef] = []
    unannotated = unannotated if unannotated is not None else []
    _walk(root, refs, 0, unannotated)
    if not refs:
        no_gt = (f"; frame folders without a ground-truth file: {', '.join(map(str, unannotated[:5]))}"
                 if unannotated else "")
        raise DataError(f"{root}: no sequences found (no folder of a known format, list.txt or "
                        f"dataset root below it, up to {MAX_DISCOVER_DEPTH} levels){no_gt}; known formats:\n"
                        f"{registry.describe(formats(with_init_box=False))}")
    return refs


def _subdirs(folder: Path) -> list[Path]:
    try:
        entries = [e for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(".")]
    except OSError:
        return []
    return [folder / n for n in sorted((e.name for e in entries), key=natural_key)]


# Frame sub-folders of the known layouts: an image folder named so is reported as its parent.
_FRAME_DIRS = ("img", "imgs", "color", "images")


def _walk(folder: Path, refs: list[SequenceRef], depth: int, unannotated: list[Path]) -> None:
    fmt = registry.detect(folder)
    if fmt is not None:
        refs.append(SequenceRef(folder, fmt.name))
        return
    for fmt in formats():
        found = fmt.find_in_root(folder) if fmt.find_in_root is not None else None
        if found is not None:
            refs.extend(SequenceRef(p, fmt.name) for p in found)
            return
    if (folder / "list.txt").is_file():
        _read_list(folder, refs)
        return
    if list_images(folder):
        # Frames but no layout with ground truth: a sequence whose annotation file is missing.
        seq_dir = folder.parent if folder.name.lower() in _FRAME_DIRS else folder
        if seq_dir not in unannotated:
            unannotated.append(seq_dir)
    if depth >= MAX_DISCOVER_DEPTH:
        return
    for sub in _subdirs(folder):
        _walk(sub, refs, depth + 1, unannotated)


def _read_list(folder: Path, refs: list[SequenceRef]) -> None:
    # VOT and GOT-10k roots name their sequences in list.txt; folders not named are not part of
    # the benchmark (VOT roots often hold stray downloads), so the list is the authority.
    list_path = folder / "list.txt"
    for lineno, line in enumerate(read_lines(list_path), 1):
        name = line.strip()
        if not name:
            continue
        sub = folder / name
        if not sub.is_dir():
            raise DataError(f"{list_path}: line {lineno} names {name!r} but {sub} is missing")
        fmt = registry.detect(sub)
        if fmt is None:
            raise DataError(f"{list_path}: line {lineno}: {sub} is not a sequence folder of a known "
                            f"format ({registry.names(with_init_box=False)})")
        refs.append(SequenceRef(sub, fmt.name))


def load(ref: SequenceRef) -> list[Sequence]:
    """Read a found sequence; a folder holding several (an ImageNet-VID video) gives them all."""
    try:
        fmt = registry.get(ref.format)
    except DataError as e:
        raise DataError(f"{ref.path}: {e}") from None
    if fmt.needs_init_box:
        raise DataError(f"{ref.path}: format {fmt.name!r} has no ground truth; "
                        f"use read_sequence(path, init_box)")
    return fmt.read_sequences(ref.path)


def discover(root: str | Path) -> list[Sequence]:
    """Read every sequence under `root` (see `find_sequences` for what a root may be)."""
    return [seq for ref in find_sequences(root) for seq in load(ref)]
