"""Dataset packs: many sequences in one HDF5 file, written by `mdnet-data pack` (tools/data/pack.py).

A cluster job reading a benchmark from shared storage pays per file: LaSOT or GOT-10k is millions
of small JPEGs, and every open and stat is a metadata round trip to the file server. A pack holds
the same sequences in one file: every frame's ORIGINAL encoded bytes (not re-encoded, so a frame
decodes to exactly the pixels the folder gives), the reader's boxes and absent flags, the frame
file names, and checksums. Reading a frame is one positioned read of exactly its bytes.

Layout (format_version 1):

    /                attrs: format = "mdnet-data pack", format_version = 1, created_by, created
                     (UTC), roots (JSON list of the packed roots), frames_limit (0 = every frame)
    /order           (K,) str: the group names in pack order (a dataset, not an attribute:
                     HDF5 attributes stop at 64 KiB, a pool of 10,000 sequences needs more)
    /seq/<group>/    one group per sequence; <group> is the sequence name, or name@root when two
                     packed roots hold a sequence of the same name
        data         (B,) uint8: the frame files' bytes, concatenated, unchanged
        offsets      (N+1,) int64: frame i is data[offsets[i]:offsets[i + 1]]
        crc32        (N,) uint32: zlib.crc32 of each frame's bytes, checked on every read
        files        (N,) str: the original frame file names
        missing      (N,) bool: the frame file did not exist when packed (0 bytes stored; reading
                     the frame fails as the folder reader fails on a missing file)
        boxes        (N, 4) float64 and absent (N,) bool: exactly the reader's Sequence
        attrs        name, root (folder name of the packed root: pretraining disambiguates equal
                     names with it, as it does for folders), format (the reader format: otb,
                     lasot, ...), source_path, frames (N), frames_on_disk, has_groundtruth,
                     image_size [w, h], problems (JSON list), bytes (B), sha256

    /index/          the listing of every sequence in /order's order, copied from the groups
                     (written since issue 28; packs without it are read group by group): name,
                     root, format, problems (K,) str; frames_on_disk (K,) int64; has_groundtruth
                     (K,) bool; box_offsets (K+1,) int64; boxes (sum N, 4) float64; absent (sum
                     N,) bool, sequence j's rows box_offsets[j]:box_offsets[j + 1]; image_size
                     (K, 2) int64, frame 0's [w, h] ([0, 0]: unknown); the frame tables
                     frame_offsets (sum N + K,) int64 (sequence j's N + 1 offsets start at
                     box_offsets[j] + j), crc32 (sum N,) uint32, missing (sum N,) bool, files
                     (sum N,) fixed-length UTF-8 bytes (a numpy array, no Python string per
                     frame) and data_offset (K,) int64 (file offset of /seq/<group>/data, -1:
                     none). Listing
                     a pack and reading or checking its frames then take a dozen reads in all,
                     not ~10 per sequence (docs/pretraining.md, Scale).

`sha256` covers one sequence: every frame's length and bytes, then its file names, missing flags,
boxes and absent flags (`SequenceDigest`); `mdnet-data index POOL.h5 --verify` recomputes it.

Each sequence's `data` is its own dataset with HDF5's CONTIGUOUS layout (not split into chunks):
a rank that reads its shard of domains touches only those sequences' byte ranges, and a frame is
one read of exactly its bytes. Chunking would add nothing here (no compression: JPEG bytes do not
compress) and would read whole chunks per frame through HDF5's chunk cache. The file offset of a
contiguous dataset is known (H5Dget_offset), so frames are read with `os.pread` on a plain file
descriptor: thread-safe, releases the GIL, no h5py call per frame (h5py serialises every call on
one global lock). A pack rewritten with another layout (h5repack with chunks or compression) is
still read, through h5py under a lock, only slower.

Handles are opened lazily, once per process (a forked or unpickled copy opens its own), so the
pretraining's prefetch threads and Horovod ranks share nothing. Boxes and flags of every
sequence are read at load; a sequence's frame index (offsets, checksums, names) only when its
first frame is read, so a rank reads the index of its own shard only.
"""
from __future__ import annotations

import hashlib
import json
import os
import threading
import zlib
from pathlib import Path

import numpy as np

from online.sequence import (HEAD_BYTES, TAIL_BYTES, DataError, FrameSource, Sequence, decode_image_bytes,
                             image_bytes_problem)

from .registry import Format, register

PACK_FORMAT = "mdnet-data pack"
PACK_VERSION = 1
PACK_EXTS = (".h5", ".hdf5")
INDEX_GROUP = "index"  # the whole-pack listing (optional: packs written before it are read per group)
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class SequenceDigest:
    """The sha256 of one packed sequence: frames (length + bytes) in order, then the annotations."""

    def __init__(self):
        self._h = hashlib.sha256(f"{PACK_FORMAT} {PACK_VERSION}\n".encode())

    def add_frame(self, data: bytes) -> None:
        self._h.update(len(data).to_bytes(8, "little"))
        self._h.update(data)

    def hexdigest(self, files, missing, boxes, absent) -> str:
        h = self._h.copy()
        h.update("\n".join(files).encode("utf-8") + b"\n")
        h.update(np.asarray(missing, np.uint8).tobytes())
        h.update(np.ascontiguousarray(boxes, "<f8").tobytes())  # NaN boxes hash as their bits
        h.update(np.asarray(absent, np.uint8).tobytes())
        return h.hexdigest()


def decode_bytes(data: bytes, where: str) -> np.ndarray:
    """Encoded image bytes -> RGB uint8 HxWx3, exactly as `online.sequence.decode_image` reads a file
    (the same decoder, the same corrupt-frame check: a pack keeps a truncated file's bytes as they are)."""
    return decode_image_bytes(data, where)


def _h5py():
    import h5py  # imported late: reading folders never needs it
    return h5py


def _open_h5(path: str):
    try:
        f = _h5py().File(path, "r")
    except OSError as e:
        if not os.path.exists(path):
            raise DataError(f"{path}: no such pack") from None
        # A copy cut short fails here: HDF5 finds the file shorter than its own end marker.
        raise DataError(f"{path}: damaged pack, HDF5 cannot open it (a truncated copy?): {e}") from None
    fmt = f.attrs.get("format")
    if fmt != PACK_FORMAT:
        f.close()
        raise DataError(f"{path}: an HDF5 file but not an mdnet-data pack (format attribute "
                        f"{fmt!r}, expected {PACK_FORMAT!r}; a weight file or checkpoint?)")
    version = int(f.attrs.get("format_version", -1))
    if version != PACK_VERSION:
        f.close()
        raise DataError(f"{path}: pack format version {version}, this reader knows {PACK_VERSION}; "
                        f"rewrite the pack with this version's mdnet-data pack")
    return f


class PackFile:
    """One pack file, opened lazily per process: a plain descriptor for frame bytes, h5py for the rest."""

    def __init__(self, path: str | Path):
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        self._pid = -1
        self._fd = -1
        self._h5 = None

    def _ensure_open(self):
        # Called under the lock. A forked child inherits the parent's handles; it opens its own
        # (an h5py handle must not cross a fork, and the child may outlive the parent's file).
        if self._pid != os.getpid():
            self._h5 = _open_h5(self.path)
            self._fd = os.open(self.path, os.O_RDONLY)
            self._pid = os.getpid()

    def h5(self):
        """The h5py file; call with `self.lock` held (h5py is not safe for concurrent use anyway)."""
        self._ensure_open()
        return self._h5

    @property
    def lock(self) -> threading.Lock:
        return self._lock

    def pread(self, n: int, offset: int) -> bytes:
        if self._pid != os.getpid():
            with self._lock:
                self._ensure_open()
        return os.pread(self._fd, n, offset)

    def close(self) -> None:
        with self._lock:
            self._close()

    def _close(self):
        if self._pid == os.getpid():
            self._h5.close()
            os.close(self._fd)
        self._h5, self._fd, self._pid = None, -1, -1

    def __del__(self):
        try:
            self._close()
        except Exception:  # interpreter shutdown: h5py or os may already be gone
            pass

    # An unpickled copy (a spawned worker) reopens the file when first used.
    def __getstate__(self):
        return {"path": self.path}

    def __setstate__(self, state):
        self.__init__(state["path"])


class PackFrames(FrameSource):
    """The frames of one packed sequence: stored bytes, checked against their CRC, decoded on access."""

    def __init__(self, pack: PackFile, group: str, name: str, n: int, frame_index=None):
        self.pack, self.group, self.name, self._n = pack, group, name, n
        self._index = None  # (offsets, crc32, files, missing, file offset of data or None)
        # (offsets, crc32, missing, file offset of data or None, file names), from the pack's
        # /index when it has them: frames are then read and checked, and named in errors, without
        # opening this sequence's group, which cost ~0.5 ms and ~30 kB of HDF5 state per sequence.
        self._frames = frame_index

    def _frame_index(self):
        if self._frames is None:
            offsets, crc, files, missing, base = self._load_index()
            self._frames = (offsets, crc, missing, base, files)
        return self._frames

    def __len__(self):
        return self._n

    def _load_index(self):
        if self._index is None:
            with self.pack.lock:
                if self._index is None:
                    g = self.pack.h5()[f"seq/{self.group}"]
                    offsets = g["offsets"][()].astype(np.int64)
                    crc = g["crc32"][()].astype(np.uint32)
                    files = [str(s) for s in g["files"].asstr()[()]]
                    missing = g["missing"][()].astype(bool)
                    # Contiguous, unfiltered data has a file offset: frames are then plain reads.
                    base = g["data"].id.get_offset()
                    if not (len(offsets) == len(crc) + 1 == len(files) + 1 == len(missing) + 1 >= self._n + 1):
                        raise DataError(f"{self.pack.path}: sequence {self.name!r}: frame index sizes "
                                        f"disagree (damaged pack)")
                    self._index = (offsets, crc, files, missing, base)
        return self._index

    def where(self, i: int) -> str:
        """`POOL.h5: sequence 'X' frame i (0001.jpg)`: how errors name a frame."""
        return f"{self.pack.path}: sequence {self.name!r} frame {i} ({self._file_name(i)})"

    def _file_name(self, i: int) -> str:
        name = self._frame_index()[4][i]
        return name.decode("utf-8") if isinstance(name, bytes) else str(name)

    def raw(self, i: int) -> bytes:
        """The frame's stored bytes (the original file), checked against the stored CRC."""
        i = self._check(i)
        offsets, crc, missing, base, _ = self._frame_index()
        if missing[i]:
            raise DataError(f"{self.where(i)}: frame file missing (it was missing when the pack was written)")
        start, n = int(offsets[i]), int(offsets[i + 1] - offsets[i])
        if base is not None:
            data = self.pack.pread(n, base + start)
        else:
            with self.pack.lock:
                data = self.pack.h5()[f"seq/{self.group}/data"][start:start + n].tobytes()
        if len(data) != n:
            raise DataError(f"{self.where(i)}: only {len(data)} of {n} bytes could be read: the pack is "
                            f"truncated or damaged")
        got = zlib.crc32(data)
        if got != int(crc[i]):
            raise DataError(f"{self.where(i)}: bytes do not match their checksum (crc32 {got:08x}, "
                            f"stored {int(crc[i]):08x}): the pack is damaged")
        return data

    def check(self, i):
        """The cheap corrupt-frame check: the frame's first and last bytes only (no CRC, no decode)."""
        i = self._check(i)
        offsets, _, missing, base, _ = self._frame_index()
        if missing[i]:
            raise DataError(f"{self.where(i)}: frame file missing (it was missing when the pack was written)")
        start, n = int(offsets[i]), int(offsets[i + 1] - offsets[i])
        tail_start = start + max(0, n - TAIL_BYTES)
        if base is not None:
            head = self.pack.pread(min(n, HEAD_BYTES), base + start)
            tail = self.pack.pread(start + n - tail_start, base + tail_start)
        else:
            with self.pack.lock:
                data = self.pack.h5()[f"seq/{self.group}/data"]
                head = data[start:start + min(n, HEAD_BYTES)].tobytes()
                tail = data[tail_start:start + n].tobytes()
        problem = image_bytes_problem(head, tail, n)
        if problem is not None:
            raise DataError(f"{self.where(i)}: {problem}")

    def _check(self, i) -> int:
        i = int(i)
        if i < 0:
            i += self._n
        if not 0 <= i < self._n:
            raise IndexError(f"{self.pack.path}: sequence {self.name!r}: frame {i} out of range "
                             f"(0..{self._n - 1})")
        return i

    def __getitem__(self, i):
        i = self._check(i)
        data = self.raw(i)
        try:
            return decode_bytes(data, "")
        except DataError:
            # Decoded again to name the frame: its file name is in the sequence's group, which a
            # good frame need not open (see _frames).
            return decode_bytes(data, self.where(i))

    def describe(self, i):
        # Ends with the frame's file name, like a folder sequence's path.
        return f"{self.pack.path}:/seq/{self.group}/{self._file_name(i)}"


# ----------------------------------------------------------------------------------------------
# Reading and verifying

def is_pack_file(p: Path) -> bool:
    """An HDF5 file named .h5/.hdf5 (cheap: the signature only; read_pack checks it is a pack)."""
    if p.suffix.lower() not in PACK_EXTS or not p.is_file():
        return False
    try:
        with open(p, "rb") as fh:
            return fh.read(8) == _HDF5_SIGNATURE
    except OSError:
        return False


def _attr_str(g, key: str) -> str:
    v = g.attrs[key]
    return v.decode() if isinstance(v, bytes) else str(v)


def read_pack_entries(path: str | Path) -> list[tuple[str, Sequence]]:
    """(root folder name, Sequence) for every sequence of a pack, in pack order; nothing is decoded."""
    pack = PackFile(path)
    entries = []
    with pack.lock:
        f = pack.h5()
        order = [str(s) for s in f["order"].asstr()[()]] if "order" in f else None
        if order is None or "seq" not in f:
            raise DataError(f"{pack.path}: damaged pack: no order/seq entries")
        if INDEX_GROUP in f:
            return _entries_from_index(pack, f[INDEX_GROUP], order)
        for group in order:
            if group not in f["seq"]:
                raise DataError(f"{pack.path}: damaged pack: /order names {group!r} but /seq/{group} is missing")
            g = f["seq"][group]
            name = _attr_str(g, "name")
            seq = Sequence(
                name=name, frames=PackFrames(pack, group, name, int(g.attrs["frames"])),
                boxes=g["boxes"][()], absent=g["absent"][()], format=_attr_str(g, "format"),
                path=f"{pack.path}:/seq/{group}", problems=list(json.loads(_attr_str(g, "problems"))),
                frames_on_disk=int(g.attrs["frames_on_disk"]), has_groundtruth=bool(g.attrs["has_groundtruth"]))
            if len(seq.frames) < len(seq):
                raise DataError(f"{pack.path}: sequence {name!r}: {len(seq)} boxes but "
                                f"{len(seq.frames)} frames (damaged pack)")
            entries.append((_attr_str(g, "root"), seq))
    return entries


def _entries_from_index(pack: PackFile, g, order: list) -> list[tuple[str, Sequence]]:
    # The whole-pack listing (/index): the same Sequences as the per-group loop above, from a
    # dozen reads. Called with the pack's lock held.
    try:
        offsets = g["box_offsets"][()].astype(np.int64)
        boxes, absent = g["boxes"][()], g["absent"][()].astype(bool)
        names, roots, fmts, problems = (g[k].asstr()[()] for k in ("name", "root", "format", "problems"))
        on_disk, has_gt = g["frames_on_disk"][()], g["has_groundtruth"][()].astype(bool)
        sizes = g["image_size"][()].reshape(-1, 2)
    except KeyError as e:
        raise DataError(f"{pack.path}: damaged pack: /{INDEX_GROUP} lacks {e}") from None
    k = len(order)
    if not (len(offsets) == k + 1 and offsets[-1] == len(boxes) == len(absent)
            and len(names) == len(roots) == len(fmts) == len(problems) == len(on_disk) == len(has_gt)
            == len(sizes) == k):
        raise DataError(f"{pack.path}: damaged pack: /{INDEX_GROUP} sizes disagree with /order ({k} sequences)")
    frames = _frame_index_arrays(pack, g, order, offsets)
    entries = []
    for j, group in enumerate(order):
        a, b = int(offsets[j]), int(offsets[j + 1])
        name = str(names[j])
        index = None if frames is None else (frames[0][a + j:b + j + 1], frames[1][a:b], frames[2][a:b],
                                             int(frames[3][j]) if frames[3][j] >= 0 else None, frames[4][a:b])
        seq = Sequence(
            name=name, frames=PackFrames(pack, group, name, b - a, index), boxes=boxes[a:b], absent=absent[a:b],
            format=str(fmts[j]), path=f"{pack.path}:/seq/{group}", problems=list(json.loads(problems[j])),
            frames_on_disk=int(on_disk[j]), has_groundtruth=bool(has_gt[j]),
            image_size=(int(sizes[j, 0]), int(sizes[j, 1])) if sizes[j].all() else None)
        entries.append((str(roots[j]), seq))
    return entries


def _frame_index_arrays(pack: PackFile, g, order: list, box_offsets):
    """/index's frame tables (frame_offsets, crc32, missing, data_offset), or None when the pack
    has none or its data offsets no longer hold (then each sequence reads its group's own)."""
    keys = ("frame_offsets", "crc32", "missing", "data_offset", "files")
    if not all(k in g for k in keys):
        return None
    fo, crc, missing, base, files = (g[k][()] for k in keys)
    k, n = len(order), int(box_offsets[-1])
    if not (len(fo) == n + k and len(crc) == len(missing) == len(files) == n and len(base) == k):
        raise DataError(f"{pack.path}: damaged pack: /{INDEX_GROUP} frame tables disagree with /order")
    # The data offsets are where `mdnet-data pack` put each sequence's bytes; a pack rewritten by
    # another tool (h5repack) moves them. Two probes (first and last sequence with data) find that;
    # a wrong offset that slipped through would still fail every frame's CRC, never read silently.
    with_data = np.flatnonzero(base >= 0)
    for j in {int(with_data[0]), int(with_data[-1])} if len(with_data) else ():
        if g.file[f"seq/{order[j]}/data"].id.get_offset() != int(base[j]):
            return None
    return fo.astype(np.int64), crc.astype(np.uint32), missing.astype(bool), base.astype(np.int64), files


def read_pack(path: str | Path) -> list[Sequence]:
    """Every sequence of a pack, in pack order (the order `mdnet-data pack` found them)."""
    return [seq for _, seq in read_pack_entries(path)]


def pack_info(path: str | Path) -> dict:
    """The pack's file-level attributes (format, version, created_by, created, roots, ...)."""
    pack = PackFile(path)
    with pack.lock:
        info = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in pack.h5().attrs.items()}
    pack.close()
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in info.items()}


def verify_sequence(seq: Sequence) -> None:
    """Recompute a packed sequence's sha256 and every frame's CRC; DataError names the first bad frame.

    Reads every byte of the sequence (no decoding): what `mdnet-data index --verify` runs.
    """
    frames = seq.frames
    if not isinstance(frames, PackFrames):
        raise TypeError(f"{seq.name}: not a packed sequence")
    offsets, crc, files, missing, _ = frames._load_index()
    with frames.pack.lock:
        g = frames.pack.h5()[f"seq/{frames.group}"]
        stored = _attr_str(g, "sha256")
        # The group's own annotations are hashed: /index is a copy of them, checked below.
        boxes, absent = g["boxes"][()], g["absent"][()].astype(bool)
    digest = SequenceDigest()
    for i in range(len(frames)):
        # raw() raises on the first frame whose bytes fail their CRC or cannot be read.
        digest.add_frame(b"" if missing[i] else frames.raw(i))
    got = digest.hexdigest(files[:len(frames)], missing[:len(frames)], boxes, absent)
    if got != stored:
        # Every frame passed its CRC, so the annotations (or the stored checksum) changed.
        raise DataError(f"{frames.pack.path}: sequence {seq.name!r}: sha256 {got[:16]}... does not match "
                        f"the stored {stored[:16]}...: boxes, flags or file names were altered "
                        f"(every frame's bytes match their CRC)")
    if not (np.array_equal(seq.boxes, boxes, equal_nan=True) and np.array_equal(seq.absent, absent)):
        raise DataError(f"{frames.pack.path}: sequence {seq.name!r}: the boxes or flags read (from "
                        f"/{INDEX_GROUP}) differ from /seq/{frames.group}: the pack's index was altered")


def _read_one(path: Path) -> Sequence:
    # read_sequence() promises one Sequence; a pack holds many.
    raise DataError(f"{path}: a pack holds many sequences (one sequence per group); "
                    f"use read_pack() or discover()")


register(Format(
    "pack", "POOL.h5 written by mdnet-data pack: many sequences, frames as their original bytes",
    is_pack_file, _read_one, read_all=read_pack))
