"""Sequence readers: every benchmark layout we meet becomes one `online.sequence.Sequence`.

Layouts (file names as the benchmarks ship them):

| format | ground truth | frames |
|---|---|---|
| otb | `groundtruth_rect.txt` (or `.1.txt` for two-target sequences), `x,y,w,h` comma/tab/space | `img/0001.jpg` |
| dtb70, uav123 | same as OTB, fractional values, `NaN` lines where the target is out of view | `img/` |
| vot | `groundtruth.txt`, 8-value polygons or 4-value boxes | `color/`, `img/` or the folder itself |
| got10k | `groundtruth.txt` + `absence.label` (1 = absent) and `cover.label` (0 = fully covered) | the folder itself |
| lasot | `groundtruth.txt` + `full_occlusion.txt` / `out_of_view.txt` (0/1, one comma line) | `img/` |
| imagenet-vid | `Annotations/VID/.../<video>/000000.xml`, one Sequence per track id | `Data/VID/.../<video>/000000.JPEG` |
| image-folder, video | none: the caller gives the initial box | a folder of images / a video file |

Rules every reader follows (so the pretraining sampler and the tracker need no special cases):
- Boxes stay exactly as the file writes them (`x, y, w, h`, no 1-based shift); a VOT polygon becomes
  its axis-aligned bounding rectangle; an ImageNet-VID corner box becomes `xmin, ymin, xmax-xmin,
  ymax-ymin`.
- A frame is marked absent when the benchmark says so, or its box is NaN, has zero or negative
  size, or lies wholly outside the image (size from decoding the first frame once).
- More ground-truth lines than frames is an error; fewer means only the annotated prefix is used
  (`len(seq)` = lines; `frames_on_disk` keeps the real count) and `problems` says so.
- `len(seq.frames) == len(seq)` always: frames beyond the annotation are not exposed.
- Nothing is decoded at load time except the first frame; a corrupt frame raises `DataError`
  naming its file when it is accessed (`check_frames` looks at the first and last one).
"""
from __future__ import annotations

import os
import re
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from online.sequence import DataError, FrameSource, ImageFiles, Sequence

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp")
VIDEO_EXTS = (".avi", ".mp4", ".mov", ".mkv", ".webm", ".mpg", ".mpeg", ".m4v", ".wmv")
# How deep `discover` looks below its root for sequence folders (LaSOT needs 2, a benchmark root
# holding LaSOT needs 3); the limit keeps a wrong root (say, a home folder) from walking forever.
MAX_DISCOVER_DEPTH = 6


# ----------------------------------------------------------------------------------------------
# Small helpers: sorting, frame listing, text parsing

def _natural_key(name: str):
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
    return [folder / n for n in sorted(names, key=_natural_key)]


def _frames_in(seq_dir: Path, candidates: tuple[str, ...]) -> tuple[Path, list[Path]]:
    """The first candidate sub-folder ("" = the folder itself) that holds images."""
    for sub in candidates:
        folder = seq_dir / sub if sub else seq_dir
        frames = list_images(folder)
        if frames:
            return folder, frames
    looked = ", ".join(f"{c}/" if c else "the folder itself" for c in candidates)
    raise DataError(f"{seq_dir}: no frame images (looked in {looked} for "
                    f"{'/'.join(e[1:] for e in IMAGE_EXTS)} files)")


def _name(path: Path) -> str:
    # abspath, not resolve(): "." and ".." get their real names, a symlink keeps its own name.
    return Path(os.path.abspath(path)).name


def _require_dir(path: Path) -> Path:
    if not path.exists():
        raise DataError(f"{path}: sequence folder missing")
    if not path.is_dir():
        raise DataError(f"{path}: not a folder")
    return path


def _read_lines(path: Path) -> list[str]:
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
    path = Path(path)
    lines = _read_lines(path)
    if not lines:
        raise DataError(f"{path}: no ground-truth lines")
    want = "4 numbers x,y,w,h" + (" or 8 polygon corners x1,y1,...,x4,y4" if polygons else "")
    boxes = np.empty((len(lines), 4), np.float64)
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
        elif polygons and len(vals) == 8:
            xs, ys = vals[0::2], vals[1::2]
            # Plain bounding rectangle of the corners; NaN anywhere leaves the whole box NaN.
            if any(np.isnan(vals)):
                boxes[i] = np.nan
            else:
                boxes[i] = (min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys))
        else:
            raise DataError(f"{where}: malformed ground-truth line {line!r}: "
                            f"expected {want}, got {len(vals)} values")
    return boxes


def _read_ints(path: Path) -> np.ndarray:
    """Integer labels separated by commas, whitespace or newlines (GOT-10k / LaSOT flag files)."""
    values = []
    for lineno, line in enumerate(_read_lines(path), 1):
        for tok in _SEP.split(line.strip()):
            if not tok:
                continue
            try:
                values.append(int(float(tok)))
            except ValueError:
                raise DataError(f"{path}: line {lineno}: expected integer labels, got {tok!r}") from None
    return np.asarray(values, np.int64)


def _read_flags(path: Path, n: int) -> np.ndarray:
    vals = _read_ints(path)
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


def _mark_invalid(boxes, absent, image_size, source: str, problems: list[str]) -> np.ndarray:
    absent = absent.copy()
    for reason, mask in invalid_boxes(boxes, image_size).items():
        n = int(mask.sum())
        if n:
            first = int(np.flatnonzero(mask)[0])
            problems.append(f"{source}: {n} box(es) {reason} (first at frame {first + 1}): marked absent")
            absent |= mask
    return absent


def _check_init_box(box, image_size, where: str) -> np.ndarray:
    box = np.asarray(box, np.float64).reshape(-1)
    if box.shape != (4,):
        raise DataError(f"{where}: initial box must be 4 numbers x,y,w,h, got {list(box)}")
    for reason, mask in invalid_boxes(box[None], image_size).items():
        if mask[0]:
            raise DataError(f"{where}: initial box {list(box)} is {reason} "
                            f"(image {image_size[0]}x{image_size[1]})")
    return box


def _image_size(frames: FrameSource) -> tuple[int, int]:
    img = frames[0]
    return img.shape[1], img.shape[0]


# ----------------------------------------------------------------------------------------------
# The common tail of every annotated reader

def _annotated(name: str, fmt: str, seq_dir: Path, frame_dir: Path, frame_paths: list[Path],
               boxes: np.ndarray, gt_path: Path, problems: list[str],
               flags: np.ndarray | None = None) -> Sequence:
    """Match ground truth to frames, mark unusable boxes, build the Sequence."""
    n_frames, n_lines = len(frame_paths), len(boxes)
    if n_lines > n_frames:
        raise DataError(f"{gt_path}: {n_lines} ground-truth lines but only {n_frames} frames in {frame_dir}")
    if n_lines == 1 and n_frames > 1:
        # Only the first frame annotated: a GOT-10k test sequence, or any benchmark's test split.
        problems.append(f"{gt_path.name} has a box for the first frame only: initial box, no ground truth")
        return _init_only(name, fmt, seq_dir, ImageFiles(frame_paths), boxes[0], problems)
    if n_lines < n_frames:
        problems.append(f"{gt_path.name} has {n_lines} lines for {n_frames} frames: "
                        f"using the annotated first {n_lines} frames")
    frames = ImageFiles(frame_paths[:n_lines])
    absent = np.zeros(n_lines, bool) if flags is None else flags.astype(bool)
    absent = _mark_invalid(boxes, absent, _image_size(frames), gt_path.name, problems)
    return Sequence(name=name, frames=frames, boxes=boxes, absent=absent, format=fmt,
                    path=str(seq_dir), problems=problems, frames_on_disk=n_frames)


def _init_only(name, fmt, path, frames: FrameSource, init_box, problems) -> Sequence:
    n = len(frames)
    init = _check_init_box(init_box, _image_size(frames), str(path))
    boxes = np.full((n, 4), np.nan)
    boxes[0] = init
    absent = np.ones(n, bool)
    absent[0] = False
    return Sequence(name=name, frames=frames, boxes=boxes, absent=absent, format=fmt, path=str(path),
                    problems=problems, frames_on_disk=n, has_groundtruth=False)


def _other_files(seq_dir: Path, pattern: str, used: Path) -> list[str]:
    return sorted(p.name for p in seq_dir.glob(pattern) if p.name != used.name)


# ----------------------------------------------------------------------------------------------
# Benchmark readers

def read_otb(path: str | Path, format: str = "otb") -> Sequence:
    """OTB layout: `groundtruth_rect.txt` + `img/`. DTB70 and UAV123 as shipped here use it too."""
    seq_dir = _require_dir(Path(path))
    problems: list[str] = []
    gt = seq_dir / "groundtruth_rect.txt"
    if not gt.is_file():
        # Two-target OTB sequences (Jogging, Skating2, Human4) ship .1.txt and .2.txt only.
        numbered = sorted(seq_dir.glob("groundtruth_rect.*.txt"), key=lambda p: _natural_key(p.name))
        if not numbered:
            raise DataError(f"{seq_dir}: no groundtruth_rect.txt")
        gt = numbered[0]
    others = _other_files(seq_dir, "groundtruth_rect*.txt", gt)
    if others:
        problems.append(f"several targets annotated ({', '.join([gt.name] + others)}): using {gt.name}")
    frame_dir, frames = _frames_in(seq_dir, ("img", ""))
    return _annotated(_name(seq_dir), format, seq_dir, frame_dir, frames, read_boxes(gt), gt, problems)


def read_dtb70(path: str | Path) -> Sequence:
    return read_otb(path, format="dtb70")


def read_uav123(path: str | Path) -> Sequence:
    # UAV123 `NaN,NaN,NaN,NaN` lines (target out of view) parse as NaN and are marked absent.
    return read_otb(path, format="uav123")


def read_vot(path: str | Path) -> Sequence:
    """VOT: `groundtruth.txt` polygons (or boxes); frames in `color/`, `img/` or the folder."""
    seq_dir = _require_dir(Path(path))
    gt = seq_dir / "groundtruth.txt"
    if not gt.is_file():
        raise DataError(f"{seq_dir}: no groundtruth.txt")
    problems = []
    others = _other_files(seq_dir, "groundtruth*.txt", gt)
    if others:
        problems.append(f"also has {', '.join(others)} (another annotation of the same frames; not read)")
    frame_dir, frames = _frames_in(seq_dir, ("color", "img", ""))
    return _annotated(_name(seq_dir), "vot", seq_dir, frame_dir, frames,
                      read_boxes(gt, polygons=True), gt, problems)


def read_got10k(path: str | Path) -> Sequence:
    """GOT-10k: `groundtruth.txt`, `absence.label`, `cover.label`, frames `00000001.jpg` in the folder."""
    seq_dir = _require_dir(Path(path))
    gt = seq_dir / "groundtruth.txt"
    boxes = read_boxes(gt)
    frame_dir, frames = _frames_in(seq_dir, ("", "img"))
    flags = np.zeros(len(boxes), bool)
    if len(boxes) > 1:  # test sequences (first box only) carry no labels
        if (seq_dir / "absence.label").is_file():
            flags |= _read_flags(seq_dir / "absence.label", len(boxes)) == 1
        if (seq_dir / "cover.label").is_file():
            # cover 0 = target fully covered; pytracking's GOT-10k loader also treats it as not visible.
            flags |= _read_flags(seq_dir / "cover.label", len(boxes)) == 0
    return _annotated(_name(seq_dir), "got10k", seq_dir, frame_dir, frames, boxes, gt, [], flags)


def read_lasot(path: str | Path) -> Sequence:
    """LaSOT: `groundtruth.txt`, `full_occlusion.txt`, `out_of_view.txt`, frames in `img/`."""
    seq_dir = _require_dir(Path(path))
    gt = seq_dir / "groundtruth.txt"
    boxes = read_boxes(gt)
    frame_dir, frames = _frames_in(seq_dir, ("img",))
    flags = np.zeros(len(boxes), bool)
    for name in ("full_occlusion.txt", "out_of_view.txt"):
        if (seq_dir / name).is_file():
            flags |= _read_flags(seq_dir / name, len(boxes)) == 1
    return _annotated(_name(seq_dir), "lasot", seq_dir, frame_dir, frames, boxes, gt, [], flags)


def _vid_data_dir(ann_dir: Path) -> Path:
    # Annotations/VID/<split>/.../<video> is mirrored by Data/VID/<split>/.../<video>.
    parts = list(ann_dir.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "Annotations":
            parts[i] = "Data"
            return Path(*parts)
    raise DataError(f"{ann_dir}: not under an Annotations/ folder; give the Data/ folder explicitly")


def _xml_int(node, tag: str, xml_path: Path) -> int:
    found = node.find(tag)
    if found is None or found.text is None:
        raise DataError(f"{xml_path}: missing <{tag}>")
    try:
        return int(float(found.text))
    except ValueError:
        raise DataError(f"{xml_path}: <{tag}> is {found.text!r}, expected a number") from None


def read_imagenet_vid(ann_dir: str | Path, data_dir: str | Path | None = None) -> list[Sequence]:
    """One ImageNet-VID video: one Sequence per track id, named `<video>_<trackid>`.

    A track's Sequence spans the frames from its first to its last appearance (so frame 0 holds
    its initial box); frames in between where the track has no object are absent.
    """
    ann_dir = _require_dir(Path(ann_dir))
    data_dir = _require_dir(Path(data_dir) if data_dir is not None else _vid_data_dir(ann_dir))
    xmls = sorted((p for p in ann_dir.iterdir() if p.suffix.lower() == ".xml"),
                  key=lambda p: _natural_key(p.name))
    if not xmls:
        raise DataError(f"{ann_dir}: no .xml annotation files")
    tracks: dict[int, dict[int, np.ndarray]] = {}
    size = None
    for t, xml_path in enumerate(xmls):
        try:
            root = ET.parse(xml_path).getroot()
        except (ET.ParseError, OSError) as e:
            raise DataError(f"{xml_path}: unreadable annotation ({e})") from None
        if size is None and root.find("size") is not None:
            size = (_xml_int(root, "size/width", xml_path), _xml_int(root, "size/height", xml_path))
        for obj in root.iter("object"):
            tid = _xml_int(obj, "trackid", xml_path)
            x1, y1 = _xml_int(obj, "bndbox/xmin", xml_path), _xml_int(obj, "bndbox/ymin", xml_path)
            x2, y2 = _xml_int(obj, "bndbox/xmax", xml_path), _xml_int(obj, "bndbox/ymax", xml_path)
            # Corner box -> x,y,w,h as pytracking's ImagenetVID loader does (w = xmax - xmin).
            tracks.setdefault(tid, {})[t] = np.array([x1, y1, x2 - x1, y2 - y1], np.float64)
    frame_paths = [data_dir / (p.stem + ".JPEG") for p in xmls]
    if not frame_paths[0].is_file():
        # Some copies lower-case the extension.
        frame_paths = [data_dir / (p.stem + ".jpg") for p in xmls]
    frames_all = ImageFiles(frame_paths)
    if size is None:
        size = _image_size(frames_all)
    sequences = []
    for tid in sorted(tracks):
        boxes_by_t = tracks[tid]
        first, last = min(boxes_by_t), max(boxes_by_t)
        n = last - first + 1
        boxes = np.full((n, 4), np.nan)
        absent = np.ones(n, bool)
        for t, box in boxes_by_t.items():
            boxes[t - first] = box
            absent[t - first] = False
        problems: list[str] = []
        if n < len(xmls):
            problems.append(f"track {tid} appears in frames {first + 1}..{last + 1} of {len(xmls)}: "
                            f"the sequence covers that span")
        if absent.any():
            problems.append(f"track {tid} has no object in {int(absent.sum())} frame(s) of its span: "
                            f"marked absent")
        absent = _mark_invalid(boxes, absent, size, "annotation", problems)
        sequences.append(Sequence(
            name=f"{_name(ann_dir)}_{tid}", frames=ImageFiles(frame_paths[first:last + 1]), boxes=boxes,
            absent=absent, format="imagenet-vid", path=str(ann_dir), problems=problems,
            frames_on_disk=len(xmls)))
    return sequences


# ----------------------------------------------------------------------------------------------
# No ground truth: an image folder or a video with an initial box

def read_image_folder(path: str | Path, init_box) -> Sequence:
    """A folder of frames (or its `img/`) and the target's box in the first frame."""
    seq_dir = _require_dir(Path(path))
    _, frames = _frames_in(seq_dir, ("", "img"))
    return _init_only(_name(seq_dir), "image-folder", seq_dir, ImageFiles(frames), init_box, [])


class VideoFrames(FrameSource):
    """Frames of a video file, decoded on access by index.

    Access is sequential under the hood: going forward grabs (decodes without colour conversion)
    up to the wanted frame; going back reopens the file. `CAP_PROP_POS_FRAMES` seeking lands on the
    nearest keyframe for many codecs and then silently returns the wrong frame, so it is not used.
    Trackers read frames in order, which costs one decode per frame.
    """

    def __init__(self, path: str | Path):
        self.path = str(path)
        if not Path(self.path).is_file():
            raise DataError(f"{self.path}: video file missing")
        self._lock = threading.Lock()
        self._cap = None
        self._pos = 0  # index of the frame the open capture returns next
        self._last: tuple[int, np.ndarray | None] = (-1, None)
        # Count by decoding: CAP_PROP_FRAME_COUNT comes from the container header and is wrong
        # for variable-frame-rate files and broken indexes. One grab() pass is exact.
        cap = self._open()
        n = 0
        while cap.grab():
            n += 1
        cap.release()
        if n == 0:
            raise DataError(f"{self.path}: no frames could be decoded (not a video, or an unsupported codec)")
        self._n = n

    def _open(self):
        cap = cv2.VideoCapture(self.path)
        if not cap.isOpened():
            raise DataError(f"{self.path}: OpenCV cannot open this video")
        return cap

    def __len__(self):
        return self._n

    def __getitem__(self, i):
        i = int(i)
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"{self.path}: frame {i} out of range (0..{self._n - 1})")
        with self._lock:
            if self._last[0] == i:
                return self._last[1].copy()
            if self._cap is None or i < self._pos:
                if self._cap is not None:
                    self._cap.release()
                self._cap, self._pos = self._open(), 0
            while self._pos < i:
                if not self._cap.grab():
                    raise DataError(f"{self.path}: frame {self._pos} could not be decoded")
                self._pos += 1
            ok, img = self._cap.read()
            if not ok or img is None:
                raise DataError(f"{self.path}: frame {i} could not be decoded")
            self._pos = i + 1
            if img.ndim == 2:
                img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
            else:
                img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            self._last = (i, img)
            return img.copy()

    def describe(self, i):
        return f"{self.path} frame {i}"

    def close(self):
        with self._lock:
            if self._cap is not None:
                self._cap.release()
            self._cap, self._pos, self._last = None, 0, (-1, None)

    # A VideoCapture cannot cross a process boundary; the copy reopens the file when used.
    def __getstate__(self):
        state = self.__dict__.copy()
        state.update(_cap=None, _pos=0, _last=(-1, None), _lock=None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()


def read_video(path: str | Path, init_box) -> Sequence:
    """A video file (anything OpenCV decodes) and the target's box in the first frame."""
    frames = VideoFrames(path)
    return _init_only(Path(path).stem, "video", path, frames, init_box, [])


# ----------------------------------------------------------------------------------------------
# Detection and discovery

READERS: dict[str, Callable[[Path], Sequence]] = {
    "otb": read_otb, "dtb70": read_dtb70, "uav123": read_uav123, "vot": read_vot,
    "got10k": read_got10k, "lasot": read_lasot,
}


def detect_format(path: str | Path) -> str | None:
    """The format of one sequence folder, or None if it is not one."""
    p = Path(path)
    if not p.is_dir():
        return None
    if (p / "groundtruth_rect.txt").is_file() or any(p.glob("groundtruth_rect.*.txt")):
        # DTB70 and UAV123 share OTB's files; only the benchmark folder above tells them apart.
        above = [a.lower() for a in Path(os.path.abspath(p)).parent.parts]
        if any("dtb70" in a for a in above):
            return "dtb70"
        if any(a.startswith(("uav123", "uav20l")) for a in above):
            return "uav123"
        return "otb"
    if (p / "groundtruth.txt").is_file():
        if (p / "full_occlusion.txt").is_file() or (p / "out_of_view.txt").is_file():
            return "lasot"
        if any((p / f).is_file() for f in ("absence.label", "cover.label", "meta_info.ini")) \
                or p.name.lower().startswith("got-10k_"):
            return "got10k"
        return "vot"
    if "Annotations" in Path(os.path.abspath(p)).parts and any(p.glob("*.xml")):
        return "imagenet-vid"
    return None


def read_sequence(path: str | Path, init_box=None) -> Sequence:
    """Read one sequence folder of any known format, or a video / image folder with `init_box`.

    `init_box` is used only where there is no ground truth (an image folder or a video file).
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or folder")
    if p.is_file():
        if p.suffix.lower() in VIDEO_EXTS:
            if init_box is None:
                raise DataError(f"{p}: a video has no ground truth; give an initial box x,y,w,h")
            return read_video(p, init_box)
        if p.name.startswith("groundtruth"):
            p = p.parent  # pointing at the ground-truth file means its sequence
        else:
            raise DataError(f"{p}: not a sequence folder or a video file ({', '.join(VIDEO_EXTS)})")
    fmt = detect_format(p)
    if fmt == "imagenet-vid":
        raise DataError(f"{p}: an ImageNet-VID video holds one sequence per track; "
                        f"use read_imagenet_vid() or discover()")
    if fmt is not None:
        return READERS[fmt](p)
    if init_box is not None:
        return read_image_folder(p, init_box)
    raise DataError(f"{p}: not a sequence folder: no groundtruth_rect.txt (OTB/DTB70/UAV123), "
                    f"groundtruth.txt (VOT/GOT-10k/LaSOT) or ImageNet-VID .xml files; "
                    f"for a plain image folder give an initial box")


@dataclass(frozen=True)
class SequenceRef:
    """Where a sequence lives and how to read it (found without reading it)."""
    path: Path
    format: str


def find_sequences(root: str | Path) -> list[SequenceRef]:
    """Every sequence under `root`, in a deterministic order, without reading any.

    `root` may be one sequence folder, a benchmark root (folders of sequences, nested to any
    depth up to MAX_DISCOVER_DEPTH, e.g. LaSOT's class folders), a VOT or GOT-10k root whose
    `list.txt` names its sequences (kept in list order), or an ImageNet-VID root (the folder
    holding Annotations/VID and Data/VID).
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: no such folder")
    if not root.is_dir():
        raise DataError(f"{root}: not a folder")
    refs: list[SequenceRef] = []
    _walk(root, refs, 0)
    if not refs:
        raise DataError(f"{root}: no sequences found (no groundtruth_rect.txt, groundtruth.txt, "
                        f"list.txt or Annotations/VID below it, up to {MAX_DISCOVER_DEPTH} levels)")
    return refs


def _subdirs(folder: Path) -> list[Path]:
    try:
        entries = [e for e in os.scandir(folder) if e.is_dir() and not e.name.startswith(".")]
    except OSError:
        return []
    return [folder / n for n in sorted((e.name for e in entries), key=_natural_key)]


def _walk(folder: Path, refs: list[SequenceRef], depth: int) -> None:
    fmt = detect_format(folder)
    if fmt is not None:
        refs.append(SequenceRef(folder, fmt))
        return
    if (folder / "Annotations" / "VID").is_dir():
        _walk_vid(folder / "Annotations" / "VID", refs)
        return
    if (folder / "list.txt").is_file():
        _read_list(folder, refs)
        return
    if depth >= MAX_DISCOVER_DEPTH:
        return
    for sub in _subdirs(folder):
        _walk(sub, refs, depth + 1)


def _read_list(folder: Path, refs: list[SequenceRef]) -> None:
    # VOT and GOT-10k roots name their sequences in list.txt; folders not named are not part of
    # the benchmark (VOT roots often hold stray downloads), so the list is the authority.
    list_path = folder / "list.txt"
    for lineno, line in enumerate(_read_lines(list_path), 1):
        name = line.strip()
        if not name:
            continue
        sub = folder / name
        if not sub.is_dir():
            raise DataError(f"{list_path}: line {lineno} names {name!r} but {sub} is missing")
        fmt = detect_format(sub)
        if fmt is None:
            raise DataError(f"{list_path}: line {lineno}: {sub} is not a sequence folder "
                            f"(no groundtruth.txt or groundtruth_rect.txt)")
        refs.append(SequenceRef(sub, fmt))


def _walk_vid(ann_root: Path, refs: list[SequenceRef]) -> None:
    # train/ILSVRC2015_VID_train_0000/<video>/ and val/<video>/: any folder holding .xml files.
    for dirpath, dirnames, filenames in os.walk(ann_root):
        dirnames.sort(key=_natural_key)
        if any(f.lower().endswith(".xml") for f in filenames):
            refs.append(SequenceRef(Path(dirpath), "imagenet-vid"))


def load(ref: SequenceRef) -> list[Sequence]:
    """Read a found sequence; an ImageNet-VID video gives one Sequence per track."""
    if ref.format == "imagenet-vid":
        return read_imagenet_vid(ref.path)
    if ref.format not in READERS:
        raise DataError(f"{ref.path}: unknown format {ref.format!r}; known: {', '.join(sorted(READERS))}")
    return [READERS[ref.format](ref.path)]


def discover(root: str | Path) -> list[Sequence]:
    """Read every sequence under `root` (see `find_sequences` for what a root may be)."""
    return [seq for ref in find_sequences(root) for seq in load(ref)]


def check_frames(seq: Sequence) -> tuple[int, int]:
    """Decode the first and last frame (raises DataError naming a bad file); returns (w, h)."""
    first = seq.frames[0]
    last_i = len(seq.frames) - 1
    last = seq.frames[last_i]
    if first.shape != last.shape:
        raise DataError(f"{seq.frames.describe(last_i)}: frame is {last.shape[1]}x{last.shape[0]} but "
                        f"{seq.frames.describe(0)} is {first.shape[1]}x{first.shape[0]}")
    return first.shape[1], first.shape[0]
