"""The one sequence type every reader returns, and the frame sources behind it.

Box convention (named once, converted only at the edges): a box is `[x, y, w, h]` float, `x, y`
the top-left corner in pixel units, exactly as the benchmark's ground-truth file writes it. Results
are written back in the same convention so they compare against the same file without offsets.
Frames are RGB uint8 HxWx3 (grayscale becomes 3-channel), decoded lazily on access.
"""
from __future__ import annotations

import dataclasses
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence as _Seq

import cv2
import numpy as np


class DataError(ValueError):
    """Bad input data; the message names the file (and line or frame)."""


# ----------------------------------------------------------------------------------------------
# Corrupt-frame checks. OpenCV decodes a JPEG cut short (a copy interrupted, a disk full while
# writing) with a warning only and fills the missing rows with grey: the frame would be tracked
# and trained on silently. A complete JPEG ends with the end-of-image marker FF D9 and a complete
# PNG with its IEND chunk, so the last bytes tell a truncated file without decoding it.

JPEG_SOI = b"\xff\xd8\xff"
JPEG_EOI = b"\xff\xd9"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"  # length 0, type, crc32 of b"IEND"
HEAD_BYTES = 16  # enough for every signature and a BMP's declared file size
TAIL_BYTES = 4096  # the end marker, after any zero padding a writer may append (up to a page)


def image_bytes_problem(head: bytes, tail: bytes, size: int) -> str | None:
    """What is wrong with an encoded image judged by its first and last bytes only, or None.

    `head` and `tail` are the file's first HEAD_BYTES and last TAIL_BYTES (the whole file when
    shorter); `size` its length. Cheap enough to run over every frame of a dataset.
    """
    if size == 0:
        return "unreadable or corrupt image: empty file"
    # Some writers pad files with zero bytes after the end marker (block-aligned copies).
    end = tail.rstrip(b"\x00")
    if head.startswith(JPEG_SOI):
        if not end.endswith(JPEG_EOI):
            return ("corrupt image: truncated JPEG (no end-of-image marker FF D9 at the end; "
                    "a copy cut short?)")
    elif head.startswith(PNG_SIGNATURE):
        if not end.endswith(PNG_IEND):
            return "corrupt image: truncated PNG (no intact IEND chunk at the end; a copy cut short?)"
    elif head.startswith(b"BM") and len(head) >= 6:
        declared = int.from_bytes(head[2:6], "little")  # 0 is allowed by the format: unknown
        if declared > size:
            return f"corrupt image: truncated BMP ({size} bytes, its header says {declared})"
    else:
        return f"unreadable or corrupt image: not a JPEG, PNG or BMP file (starts with {head[:4].hex()})"
    return None


def _png_crc_problem(data: bytes) -> str | None:
    # Walk the chunks: every one carries a crc32 of its type and data. libpng rejects a bad CRC
    # in image data but only warns about other chunks; checking all of them costs one pass of
    # crc32 over bytes already in memory (no decoding).
    pos = len(PNG_SIGNATURE)
    while pos + 12 <= len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        end = pos + 8 + n
        if end + 4 > len(data):
            return f"corrupt image: PNG chunk {kind!r} at byte {pos} runs past the end of the file"
        stored = int.from_bytes(data[end:end + 4], "big")
        if zlib.crc32(data[pos + 4:end]) != stored:
            return f"corrupt image: PNG chunk {kind.decode('latin-1')!r} at byte {pos} fails its CRC"
        if kind == b"IEND":
            return None
        pos = end + 4
    return "corrupt image: PNG without an IEND chunk"


def check_image_bytes(data: bytes, where: str) -> None:
    """Raise DataError naming `where` if the encoded image is truncated or damaged (no decoding)."""
    problem = image_bytes_problem(data[:HEAD_BYTES], data[-TAIL_BYTES:], len(data))
    if problem is None and data.startswith(PNG_SIGNATURE):
        problem = _png_crc_problem(data)
    if problem is not None:
        raise DataError(f"{where}: {problem}")


def decode_image_bytes(data: bytes, where: str) -> np.ndarray:
    """Encoded image bytes -> RGB uint8 HxWx3 (grayscale becomes 3-channel); the one decoder.

    Folder frames (`decode_image`) and packed frames (online/readers/pack.py) both come here, so
    a frame decodes to the same pixels and fails with the same message from either.
    """
    check_image_bytes(data, where)
    # IMREAD_COLOR also expands grayscale to 3 channels.
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"{where}: unreadable or corrupt image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def decode_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB uint8 HxWx3; grayscale becomes 3-channel."""
    path = str(path)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise DataError(f"{path}: frame file missing") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read frame file ({e.strerror or e})") from None
    return decode_image_bytes(data, path)


def check_image_file(path: str | Path) -> None:
    """The cheap corrupt-frame check of one file: reads its first and last bytes only."""
    path = str(path)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(HEAD_BYTES)
            fh.seek(max(0, size - TAIL_BYTES))
            tail = fh.read(TAIL_BYTES)
    except FileNotFoundError:
        raise DataError(f"{path}: frame file missing") from None
    except OSError as e:
        raise DataError(f"{path}: cannot read frame file ({e.strerror or e})") from None
    problem = image_bytes_problem(head, tail, size)
    if problem is not None:
        raise DataError(f"{path}: {problem}")


class FrameSource:
    """Random access to decoded frames: `len(src)`, `src[i] -> RGB uint8`."""

    def __len__(self) -> int:  # pragma: no cover - interface
        raise NotImplementedError

    def __getitem__(self, i: int) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def describe(self, i: int) -> str:
        return f"frame {i}"

    def check(self, i: int) -> None:
        """Cheap corrupt-frame check of frame i without decoding it (DataError naming it).

        A source that cannot check without decoding (a video) checks nothing here.
        """


class ImageFiles(FrameSource):
    def __init__(self, paths: _Seq[str | Path]):
        self.paths = [str(p) for p in paths]

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        return decode_image(self.paths[i])

    def describe(self, i):
        return self.paths[i]

    def check(self, i):
        check_image_file(self.paths[i])


@dataclass
class Sequence:
    """One annotated (or initial-box-only) sequence.

    `boxes[i]` is the ground truth of frame i (float64 x,y,w,h; NaN where unknown); `absent[i]` is
    True where the target must not be used: marked absent/occluded/out of view by the benchmark,
    NaN, zero or negative size, or wholly outside the image. `len(boxes)` may be shorter than the
    number of frames only when `annotated` says so; readers truncate to the annotated prefix.
    """
    name: str
    frames: FrameSource
    boxes: np.ndarray
    absent: np.ndarray
    format: str = "unknown"
    path: str = ""
    problems: list[str] = field(default_factory=list)
    # frames on disk (may exceed len(self) when the ground truth is shorter)
    frames_on_disk: int = -1
    # False for an image folder / video given only an initial box: boxes[1:] are NaN placeholders
    has_groundtruth: bool = True
    # the ground-truth file the boxes came from ("" when unknown): warnings about it name it
    groundtruth_file: str = ""
    # VOT ground truth as polygons (frames, 8): x1,y1,...,x4,y4 per frame (a 4-value line as its
    # rectangle's corners; NaN where unknown); `boxes` are their bounding rectangles. Filled by the
    # VOT reader only: the VOT protocol scores these (online/metrics.py vot_overlap). None elsewhere.
    polygons: np.ndarray | None = None
    # (W, H) of the frames when the reader knows it (it decoded the first frame), else None
    image_size: tuple | None = None

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4)
        self.absent = np.asarray(self.absent, dtype=bool).reshape(-1)
        if len(self.absent) != len(self.boxes):
            raise ValueError(f"{self.name}: {len(self.boxes)} boxes but {len(self.absent)} absent flags")
        if self.polygons is not None:
            polygons = np.asarray(self.polygons, dtype=np.float64).reshape(-1, 8)
            if len(polygons) < len(self.boxes):
                raise ValueError(f"{self.name}: {len(self.boxes)} boxes but {len(polygons)} polygons")
            # A copy cut to fewer frames (dataclasses.replace(seq, boxes=seq.boxes[:n], ...)) keeps
            # the polygons of its frames.
            self.polygons = polygons[:len(self.boxes)]
        if self.frames_on_disk < 0:
            self.frames_on_disk = len(self.frames)

    def __len__(self) -> int:
        return len(self.boxes)

    def head(self, n: int) -> "Sequence":
        """The first n frames (all when shorter): runs made with --frames N are scored on these."""
        n = max(1, min(int(n), len(self)))
        return dataclasses.replace(self, boxes=self.boxes[:n], absent=self.absent[:n],
                                   polygons=None if self.polygons is None else self.polygons[:n])

    def frame(self, i: int) -> np.ndarray:
        if not 0 <= i < len(self):
            raise IndexError(f"{self.name}: frame {i} out of range (0..{len(self) - 1})")
        return self.frames[i]

    @property
    def annotated(self) -> int:
        """Frames with a usable target box."""
        return int((~self.absent).sum())

    @property
    def init_box(self) -> np.ndarray:
        return self.boxes[0]
