"""Atomic file writes: a reader, or a job killed mid-write, sees the old file or the whole new one.

The new content goes to a unique temporary name in the target's own folder (so the final
`os.replace` is a rename on one filesystem, atomic on POSIX), is fsynced, then renamed onto the
target. The temporary name is not created here: the writer creates it (h5py, write_text), so the
file gets the usual umask mode (mkstemp's private 0600 would hide weight files and checkpoints from
other users on shared storage). On any error the temporary file is removed and the error re-raised.
Used by online/weights.py (weight files) and pretrain/checkpoint.py (checkpoints).
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Callable


def atomic_write(path, write: Callable[[str], None]) -> None:
    """Call write(tmp_path) to create the new content, fsync it, then rename it onto `path`."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{os.getpid()}.{uuid.uuid4().hex[:12]}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def atomic_write_text(path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
