"""A plain folder of frames (or its `img/`) and the target's box in the first frame: no ground truth.

Frames are sorted naturally ("2.jpg" before "10.jpg"). Any folder qualifies, so this format is
the last resort when a caller gives an initial box and no format with ground truth matches; a
folder without images fails when read, naming where it looked.
"""
from __future__ import annotations

from pathlib import Path

from online.sequence import ImageFiles, Sequence

from .common import IMAGE_EXTS, frames_in, init_only, require_dir, seq_name
from .registry import Format, register


def read_image_folder(path: str | Path, init_box) -> Sequence:
    """A folder of frames (or its `img/`) and the target's box in the first frame."""
    seq_dir = require_dir(Path(path))
    _, frames = frames_in(seq_dir, ("", "img"))
    return init_only(seq_name(seq_dir), "image-folder", seq_dir, ImageFiles(frames), init_box, [])


def _detect(p: Path) -> bool:
    return p.is_dir()


register(Format(
    "image-folder", f"a folder of {'/'.join(e[1:] for e in IMAGE_EXTS)} frames (or its img/) "
                    f"+ the first frame's box",
    _detect, read_image_folder, needs_init_box=True))
