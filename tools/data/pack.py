"""`mdnet-data pack`: every sequence under some roots -> one HDF5 pack (layout: online/readers/pack.py).

The sequences are read with the same readers the pretraining uses, so a pack holds exactly what
the folders give: the reader's boxes and absent flags (after its checks), its names and problems,
and each frame file's bytes unchanged. Frames are not decoded (only each sequence's first frame,
for its size): packing is file copying plus checksums.

The pack is written to a temporary file beside POOL.h5 and renamed onto it at the end
(online/atomic.py): a crash or Ctrl-C leaves no half pack under the final name.
"""
from __future__ import annotations

import json
import os
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from online.atomic import atomic_write
from online.readers import find_sequences, load
from online.readers.pack import INDEX_GROUP, PACK_FORMAT, PACK_VERSION, PackFrames, SequenceDigest, \
    decode_bytes, read_pack_entries
from online.sequence import DataError, ImageFiles, Sequence

# Frame bytes are gathered into buffers of about this size before each HDF5 write.
_WRITE_BUFFER = 16 << 20


@dataclass
class _Item:
    group: str
    root: str
    seq: Sequence
    sizes: np.ndarray      # bytes per frame (0 where missing)
    missing: np.ndarray    # frame file absent when found
    files: list[str]       # frame file names
    source: str            # where the frames come from (a folder, or pack:/seq/group)
    crc: np.ndarray | None = None  # filled by _write_sequence, for /index
    data_offset: int = -1          # file offset of the sequence's bytes (-1: none), for /index


def _root_name(root) -> str:
    return Path(os.path.abspath(root)).name


def _frame_sizes(seq: Sequence, n: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    frames = seq.frames
    if isinstance(frames, ImageFiles):
        sizes, missing = np.zeros(n, np.int64), np.zeros(n, bool)
        for i, p in enumerate(frames.paths[:n]):
            try:
                sizes[i] = os.stat(p).st_size
            except FileNotFoundError:
                # The folder reader fails on this frame when it is read; so will the pack.
                missing[i] = True
        return sizes, missing, [os.path.basename(p) for p in frames.paths[:n]]
    if isinstance(frames, PackFrames):  # repacking: a pack given as a root
        offsets, _, files, missing, _ = frames._load_index()
        return np.diff(offsets)[:n].astype(np.int64), missing[:n].copy(), list(files[:n])
    raise DataError(f"{seq.path}: {seq.name}: frames come from {type(frames).__name__}, not image "
                    f"files; only image-file sequences can be packed")


def _frame_bytes(item: _Item, i: int) -> bytes:
    frames = item.seq.frames
    if item.missing[i]:
        return b""
    if isinstance(frames, PackFrames):
        return frames.raw(i)
    path = frames.paths[i]
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except FileNotFoundError:
        raise DataError(f"{path}: frame file disappeared while packing") from None
    if len(data) != item.sizes[i]:
        raise DataError(f"{path}: frame file changed while packing ({item.sizes[i]} bytes when "
                        f"found, {len(data)} now)")
    return data


def collect(roots: list[str], frames: int = 0) -> list[_Item]:
    """What a pack of `roots` will hold, in order; no frame is read except first frames for sizes.

    A root that yields no sequence is an error naming it (find_sequences); so is a sequence that
    does not load, and two sequences that would get the same name.
    """
    items: list[_Item] = []
    by_group: dict[str, str] = {}
    for root in roots:
        root_name = _root_name(root)
        for ref in find_sequences(root):
            if ref.format == "pack":  # a pack among the roots: keep its sequences' own roots
                entries = read_pack_entries(ref.path)
            else:
                entries = [(root_name, s) for s in load(ref)]
            for seq_root, seq in entries:
                if frames > 0 and len(seq) > frames:
                    cut = len(seq)
                    seq = seq.head(frames)
                    seq.problems = seq.problems + [f"packed with --frames {frames}: the first {frames} of "
                                                   f"{cut} frames"]
                    seq.frames_on_disk = frames
                n = len(seq)
                sizes, missing, files = _frame_sizes(seq, n)
                # Pretraining names a domain name@root when two roots hold the same name: the group
                # does the same, and the stored name and root let it do so again from the pack.
                group = seq.name if seq.name not in by_group else f"{seq.name}@{seq_root}"
                if group in by_group or "/" in group or group in (".", ".."):
                    raise DataError(f"cannot pack {seq.path}: a sequence named {seq.name!r} from a root "
                                    f"named {seq_root!r} is already packed from {by_group.get(group)}; "
                                    f"pack them separately")
                by_group[group] = seq.path
                items.append(_Item(group, seq_root, seq, sizes, missing, files, seq.path))
    return items


def write_pack(out: str | Path, roots: list[str], frames: int = 0,
               log: Callable[[str], None] = print, every_s: float = 2.0) -> dict:
    """Pack every sequence under `roots` into `out` (atomically); returns a summary dict.

    `frames` > 0 keeps only each sequence's first `frames` frames (small packs for smoke runs).
    Progress goes to `log` at most every `every_s` seconds, and once at the end.
    """
    t0 = time.time()
    folder = Path(os.path.abspath(out)).parent
    if not folder.is_dir():  # before any work, not after reading every sequence
        raise DataError(f"{out}: cannot write there, the folder {folder} does not exist")
    items = collect(roots, frames)
    total_bytes = int(sum(int(it.sizes.sum()) for it in items))
    total_frames = int(sum(len(it.seq) for it in items))
    n_missing = int(sum(int(it.missing.sum()) for it in items))
    log(f"packing {len(items)} sequences, {total_frames} frames, {total_bytes / 1e6:.1f} MB "
        f"from {', '.join(map(str, roots))} -> {out}")

    def write(tmp):
        import h5py
        done_bytes, last = 0, time.time()
        with h5py.File(tmp, "w-") as f:
            f.attrs["format"] = PACK_FORMAT
            f.attrs["format_version"] = PACK_VERSION
            f.attrs["created_by"] = "mdnet-data pack (tools/data/pack.py)"
            f.attrs["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            f.attrs["roots"] = json.dumps([os.path.abspath(r) for r in roots])
            f.attrs["frames_limit"] = int(frames)
            f.create_dataset("order", data=[it.group for it in items], dtype=h5py.string_dtype())
            seqs = f.create_group("seq")
            for k, it in enumerate(items):
                done_bytes += _write_sequence(seqs, it, h5py)
                now = time.time()
                if now - last >= every_s or k == len(items) - 1:
                    last = now
                    rate = done_bytes / max(now - t0, 1e-9)
                    eta = (total_bytes - done_bytes) / rate if rate > 0 else 0.0
                    log(f"[{k + 1}/{len(items)}] {it.group}: {done_bytes / 1e6:.1f} of "
                        f"{total_bytes / 1e6:.1f} MB, {rate / 1e6:.1f} MB/s, about {eta:.0f} s left")
            _write_index(f, items, h5py)
    atomic_write(out, write)
    summary = {"pack": str(out), "sequences": len(items), "frames": total_frames, "bytes": total_bytes,
               "missing_frames": n_missing, "seconds": time.time() - t0}
    log(f"wrote {out}: {len(items)} sequences, {total_frames} frames, {total_bytes / 1e6:.1f} MB "
        f"in {summary['seconds']:.1f} s" + (f"; {n_missing} frame file(s) were missing (reading "
                                           f"them fails, as from the folders)" if n_missing else ""))
    return summary


def _write_index(f, items: list, h5py) -> None:
    # /index: every sequence's listing (name, root, boxes, flags, ...) in a few whole-pack arrays,
    # so a reader lists 10,000 sequences with a dozen reads instead of ~10 per sequence (layout:
    # online/readers/pack.py). A copy: /seq/<group> stays the authority that --verify hashes.
    n = np.array([len(it.seq) for it in items], np.int64)
    g = f.create_group(INDEX_GROUP)
    g.create_dataset("box_offsets", data=np.concatenate([[0], np.cumsum(n)]).astype(np.int64))
    g.create_dataset("boxes", data=np.concatenate([it.seq.boxes.astype(np.float64) for it in items]
                                                  or [np.zeros((0, 4))]).reshape(-1, 4))
    g.create_dataset("absent", data=np.concatenate([it.seq.absent.astype(bool) for it in items]
                                                   or [np.zeros(0, bool)]))
    for key, values in (("name", [it.seq.name for it in items]), ("root", [it.root for it in items]),
                        ("format", [it.seq.format for it in items]),
                        ("problems", [json.dumps(list(it.seq.problems)) for it in items])):
        g.create_dataset(key, data=values, dtype=h5py.string_dtype())
    g.create_dataset("frames_on_disk", data=np.array([int(it.seq.frames_on_disk) for it in items], np.int64))
    g.create_dataset("has_groundtruth", data=np.array([bool(it.seq.has_groundtruth) for it in items], bool))
    # The frame tables: reading and checking frames need no per-sequence group access.
    g.create_dataset("frame_offsets", data=np.concatenate(
        [np.concatenate([[0], np.cumsum(it.sizes)]) for it in items] or [np.zeros(0)]).astype(np.int64))
    g.create_dataset("crc32", data=np.concatenate([it.crc for it in items] or [np.zeros(0)]).astype(np.uint32))
    g.create_dataset("missing", data=np.concatenate([it.missing for it in items] or [np.zeros(0)]).astype(bool))
    g.create_dataset("data_offset", data=np.array([it.data_offset for it in items], np.int64))
    # Frame file names (for error messages) as fixed-length bytes: read back as one numpy array.
    names = [f.encode("utf-8") for it in items for f in it.files]
    g.create_dataset("files", data=np.array(names, dtype=f"S{max(1, max(map(len, names), default=1))}"))
    # (W, H) of frame 0 as the readers decoded it, (0, 0) when unknown: pretraining's outlier
    # filter needs it and would otherwise decode every owned domain's first frame at start.
    g.create_dataset("image_size", data=np.array([it.seq.image_size if it.seq.image_size and not it.missing[0]
                                                  else (0, 0) for it in items], np.int64).reshape(-1, 2))


def _write_sequence(seqs, it: _Item, h5py) -> int:
    seq, n = it.seq, len(it.seq)
    offsets = np.zeros(n + 1, np.int64)
    offsets[1:] = np.cumsum(it.sizes)
    g = seqs.create_group(it.group)
    # Contiguous (no `chunks`): one byte range per sequence, read back with pread (see pack.py).
    data = g.create_dataset("data", shape=(int(offsets[-1]),), dtype=np.uint8)
    crc = np.zeros(n, np.uint32)
    digest = SequenceDigest()
    buf, buf_start, size = bytearray(), 0, None
    for i in range(n):
        b = _frame_bytes(it, i)
        crc[i] = zlib.crc32(b)
        digest.add_frame(b)
        if size is None and b:
            # Once per sequence, and it checks what the readers already decoded at load.
            img = decode_bytes(b, f"{it.source}: frame {i} ({it.files[i]})")
            size = (img.shape[1], img.shape[0])
        buf += b
        if len(buf) >= _WRITE_BUFFER or i == n - 1:
            if buf:
                data[buf_start:buf_start + len(buf)] = np.frombuffer(buf, np.uint8)
            buf_start += len(buf)
            buf = bytearray()
    g.create_dataset("offsets", data=offsets)
    g.create_dataset("crc32", data=crc)
    it.crc = crc
    where = data.id.get_offset()  # contiguous data written: its place in the file (None if empty)
    it.data_offset = -1 if where is None else int(where)
    g.create_dataset("files", data=it.files, dtype=h5py.string_dtype())
    g.create_dataset("missing", data=it.missing)
    g.create_dataset("boxes", data=seq.boxes.astype(np.float64))
    g.create_dataset("absent", data=seq.absent.astype(bool))
    g.attrs["name"] = seq.name
    g.attrs["root"] = it.root
    g.attrs["format"] = seq.format
    g.attrs["source_path"] = it.source
    g.attrs["frames"] = n
    g.attrs["frames_on_disk"] = int(seq.frames_on_disk)
    g.attrs["has_groundtruth"] = bool(seq.has_groundtruth)
    g.attrs["image_size"] = np.asarray(size or (0, 0), np.int64)
    g.attrs["problems"] = json.dumps(list(seq.problems))
    g.attrs["bytes"] = int(offsets[-1])
    g.attrs["sha256"] = digest.hexdigest(it.files, it.missing, seq.boxes, seq.absent)
    return int(offsets[-1])
