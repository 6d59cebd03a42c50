"""What every format module shares: frame listing, text and box parsing, unusable-box marking, and
the common tail that turns frames + boxes into a `Sequence`.

Nothing here knows a benchmark; the format modules (otb.py, vot.py, ...) decide which files to
hand these helpers.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from online.sequence import DataError, FrameSource, ImageFiles, Sequence

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")


# ----------------------------------------------------------------------------------------------
# Sorting, frame listing, folder checks

def natural_key(name: str):
    # "2.jpg" before "10.jpg": plain image folders are not always zero-padded. Benchmark names
    # are, so for them this is the same as sorting by name. The raw name breaks ties.
    parts = re.split(r"(\d+)", name)
    return [int(p) if i % 2 else p.lower() for i, p in enumerate(parts)], name


def list_images(folder: Path) -> list[Path]:
    """Image files directly in `folder`, naturally sorted (frame order)."""
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    names = [e.name for e in entries
             if not e.name.startswith(".") and e.name.lower().endswith(IMAGE_EXTS) and e.is_file()]
    return [folder / n for n in sorted(names, key=natural_key)]


def frames_in(seq_dir: Path, candidates: tuple[str, ...]) -> tuple[Path, list[Path]]:
    """The first candidate sub-folder ("" = the folder itself) that holds images."""
    for sub in candidates:
        folder = seq_dir / sub if sub else seq_dir
        frames = list_images(folder)
        if frames:
            return folder, frames
    looked = ", ".join(f"{c}/" if c else "the folder itself" for c in candidates)
    raise DataError(f"{seq_dir}: no frame images (looked in {looked} for "
                    f"{'/'.join(e[1:] for e in IMAGE_EXTS)} files)")


def seq_name(path: Path) -> str:
    # abspath, not resolve(): "." and ".." get their real names, a symlink keeps its own name.
    return Path(os.path.abspath(path)).name


def folders_above(path: Path) -> list[str]:
    """Lower-cased names of the folders above `path` (the benchmark root is often one of them)."""
    return [a.lower() for a in Path(os.path.abspath(path)).parent.parts]


def require_dir(path: Path) -> Path:
    if not path.exists():
        raise DataError(f"{path}: sequence folder missing")
    if not path.is_dir():
        raise DataError(f"{path}: not a folder")
    return path


def other_files(seq_dir: Path, pattern: str, used: Path) -> list[str]:
    return sorted(p.name for p in seq_dir.glob(pattern) if p.name != used.name)


# ----------------------------------------------------------------------------------------------
# Text files: ground-truth boxes and integer flags

def read_lines(path: Path) -> list[str]:
    """Lines of a text file, trailing blank lines dropped (many files end with one or two)."""
    if not path.is_file():
        raise DataError(f"{path}: file missing")
    # utf-8-sig: a few annotation files carry a byte-order mark that float() would choke on.
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


# A separator is a comma (with optional spaces around it) or a run of whitespace. "1,,2" stays
# malformed instead of silently collapsing to "1,2".
_SEP = re.compile(r"\s*,\s*|\s+")


def read_boxes(path: str | Path, polygons: bool = False) -> np.ndarray:
    """Parse a ground-truth file: one box per line, `x,y,w,h` separated by commas, tabs or spaces.

    With `polygons`, 8-value lines (VOT's rotated boxes `x1,y1,...,x4,y4`) become the axis-aligned
    bounding rectangle of the polygon. NaN values are kept (the caller marks them absent).
    """
    return _parse_boxes(Path(path), polygons)[0]


def read_regions(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A VOT ground-truth file as (boxes (N, 4), polygons (N, 8)): `read_boxes(polygons=True)`
    plus the corners of every line, the polygon as written or, for a 4-value line, its
    rectangle's corners; a line with a NaN is NaN in both."""
    return _parse_boxes(Path(path), True)


def _parse_boxes(path: Path, polygons: bool) -> tuple[np.ndarray, np.ndarray | None]:
    lines = read_lines(path)
    if not lines:
        raise DataError(f"{path}: no ground-truth lines")
    want = "4 numbers x,y,w,h" + (" or 8 polygon corners x1,y1,...,x4,y4" if polygons else "")
    boxes = np.empty((len(lines), 4), np.float64)
    corners = np.empty((len(lines), 8), np.float64) if polygons else None
    for i, line in enumerate(lines):
        where = f"{path}: line {i + 1}"
        s = line.strip()
        if not s:
            raise DataError(f"{where}: empty line (expected {want})")
        if polygons and s[0] in "mM":
            raise DataError(f"{where}: segmentation-mask annotation (VOT2020+) is not supported")
        try:
            vals = [float(t) for t in _SEP.split(s)]
        except ValueError:
            raise DataError(f"{where}: malformed ground-truth line {line!r}: expected {want}") from None
        if len(vals) == 4:
            boxes[i] = vals
            if polygons:
                x, y, w, h = vals
                corners[i] = (x, y, x + w, y, x + w, y + h, x, y + h)
        elif polygons and len(vals) == 8:
            xs, ys = vals[0::2], vals[1::2]
            # Plain bounding rectangle of the corners; NaN anywhere leaves the whole box NaN.
            if any(np.isnan(vals)):
                boxes[i] = np.nan
            else:
                boxes[i] = (min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))
            corners[i] = vals
        else:
            raise DataError(f"{where}: malformed ground-truth line {line!r}: "
                            f"expected {want}, got {len(vals)} values")
    if polygons:
        corners[~np.isfinite(boxes).all(axis=1)] = np.nan
    return boxes, corners


def read_ints(path: Path) -> np.ndarray:
    """Integer labels separated by commas, whitespace or newlines (GOT-10k / LaSOT flag files)."""
    values = []
    for lineno, line in enumerate(read_lines(path), 1):
        for tok in _SEP.split(line.strip()):
            if not tok:
                continue
            try:
                values.append(int(float(tok)))
            except ValueError:
                raise DataError(f"{path}: line {lineno}: expected integer labels, got {tok!r}") from None
    return np.asarray(values, np.int64)


def read_flags(path: Path, n: int) -> np.ndarray:
    """One integer label per ground-truth line; a different count is an error."""
    vals = read_ints(path)
    if len(vals) != n:
        raise DataError(f"{path}: {len(vals)} values but the ground truth has {n} lines")
    return vals


# ----------------------------------------------------------------------------------------------
# Validity: which boxes can be used

def invalid_boxes(boxes: np.ndarray, image_size: tuple[int, int]) -> dict[str, np.ndarray]:
    """Masks of unusable boxes by reason: not finite, zero/negative size, wholly outside."""
    w_img, h_img = image_size
    x, y, w, h = (boxes[:, k] for k in range(4))
    finite = np.isfinite(boxes).all(axis=1)
    with np.errstate(invalid="ignore"):
        empty = finite & ((w <= 0) | (h <= 0))
        outside = finite & ~empty & ((x >= w_img) | (y >= h_img) | (x + w <= 0) | (y + h <= 0))
    return {"NaN or infinite": ~finite, "zero or negative size": empty,
            "wholly outside the image": outside}


def mark_invalid(boxes, absent, image_size, source: str, problems: list[str]) -> np.ndarray:
    """`absent` with every unusable box added; each reason found becomes one line in `problems`."""
    absent = absent.copy()
    for reason, mask in invalid_boxes(boxes, image_size).items():
        n = int(mask.sum())
        if n:
            first = int(np.flatnonzero(mask)[0])
            problems.append(f"{source}: {n} box(es) {reason} (first at frame {first + 1}): marked absent")
            absent |= mask
    return absent


def check_init_box(box, image_size, where: str) -> np.ndarray:
    box = np.asarray(box, np.float64).reshape(-1)
    if box.shape != (4,):
        raise DataError(f"{where}: initial box must be 4 numbers x,y,w,h, got {list(box)}")
    for reason, mask in invalid_boxes(box[None], image_size).items():
        if mask[0]:
            raise DataError(f"{where}: initial box {list(box)} is {reason} "
                            f"(image {image_size[0]}x{image_size[1]})")
    return box


def image_size(frames: FrameSource) -> tuple[int, int]:
    img = frames[0]
    return img.shape[1], img.shape[0]


# ----------------------------------------------------------------------------------------------
# The common tail of every reader

def annotated(name: str, fmt: str, seq_dir: Path, frame_dir: Path, frame_paths: list[Path],
              boxes: np.ndarray, gt_path: Path, problems: list[str],
              flags: np.ndarray | None = None, polygons: np.ndarray | None = None) -> Sequence:
    """Match ground truth to frames, mark unusable boxes, build the Sequence (`polygons`: the
    VOT reader's ground-truth corners, one row per box)."""
    n_frames, n_lines = len(frame_paths), len(boxes)
    if n_lines > n_frames:
        raise DataError(f"{gt_path}: {n_lines} ground-truth lines but only {n_frames} frames in {frame_dir}")
    if n_lines == 1 and n_frames > 1:
        # Only the first frame annotated: a GOT-10k test sequence, or any benchmark's test split.
        problems.append(f"{gt_path.name} has a box for the first frame only: initial box, no ground truth")
        return init_only(name, fmt, seq_dir, ImageFiles(frame_paths), boxes[0], problems)
    if n_lines < n_frames:
        problems.append(f"{gt_path.name} has {n_lines} lines for {n_frames} frames: "
                        f"using the annotated first {n_lines} frames")
    frames = ImageFiles(frame_paths[:n_lines])
    absent = np.zeros(n_lines, bool) if flags is None else flags.astype(bool)
    size = image_size(frames)
    absent = mark_invalid(boxes, absent, size, gt_path.name, problems)
    return Sequence(name=name, frames=frames, boxes=boxes, absent=absent, format=fmt,
                    path=str(seq_dir), problems=problems, frames_on_disk=n_frames,
                    groundtruth_file=str(gt_path), polygons=polygons, image_size=size)


def init_only(name, fmt, path, frames: FrameSource, init_box, problems) -> Sequence:
    """A sequence without ground truth: the caller's box for frame 0, the rest NaN and absent."""
    n = len(frames)
    init = check_init_box(init_box, image_size(frames), str(path))
    boxes = np.full((n, 4), np.nan)
    boxes[0] = init
    absent = np.ones(n, bool)
    absent[0] = False
    return Sequence(name=name, frames=frames, boxes=boxes, absent=absent, format=fmt, path=str(path),
                    problems=problems, frames_on_disk=n, has_groundtruth=False)
