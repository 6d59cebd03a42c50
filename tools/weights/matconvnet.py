"""Read a MatConvNet "simplenn" network from a MATLAB .mat file into plain numpy layers.

A simplenn file holds the variable `layers` (or a struct `net` with a field `layers`, which MDNet's
own loader also accepts): a cell array of layer structs with `name` and `type` ('conv', 'relu',
'lrn' / 'normalize', 'pool', 'dropout', 'softmax', ...). A conv layer keeps its parameters either
in a `weights` cell {filters, biases} (MatConvNet beta 12 and later, ImageNet VGG-M) or in separate
`filters` / `biases` fields (older files, MDNet's released models). Filters are H x W x Cin x Cout;
biases are stored 1 x C or C x 1.

Two container formats, told apart by the 128-byte MAT header:

* MATLAB v5 / v7 (`save -v7`, the default): read with scipy.io.loadmat. Arrays come back with
  MATLAB's own dimension order.
* MATLAB v7.3 (`save -v7.3`): an HDF5 file behind a 512-byte header userblock, read with h5py.
  MATLAB writes arrays column-major, so HDF5 shows every array with its axes reversed (an
  H x W x Cin x Cout filter is a Cout x Cin x W x H dataset); we transpose back. A cell array is a
  dataset of object references into the `#refs#` group, a struct is a group, and every node says
  what it is in its MATLAB_class attribute ('cell', 'struct', 'char' as uint16 codes, 'single',
  'double', ...); empty arrays are stored as their dimensions with MATLAB_empty set.

MATLAB drops trailing singleton dimensions (a filter with one output channel is H x W x Cin), so
filters are padded back to 4 dimensions. Everything else about the network (which layer is which,
shapes against each other) is the caller's business: this module only turns the file into
`SimpleNN`, and every problem reading it is a MatFileError whose message names the file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

V5 = "MATLAB 5.0"
V73 = "MATLAB 7.3"
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class MatFileError(ValueError):
    """The .mat file is unreadable or is not a simplenn network; the message names the file."""


class Cell(list):
    """A MATLAB cell array, its elements in MATLAB's (column-major) order."""


class StructArray(list):
    """A MATLAB struct array with other than one element (a 1x1 struct is a plain dict)."""


@dataclass(frozen=True)
class Unsupported:
    """A value this reader does not convert (function handle, object, sparse matrix ...)."""
    matlab_class: str


@dataclass(frozen=True)
class Layer:
    index: int  # 1-based position in the file's layers cell, as MATLAB counts
    name: str
    type: str
    filters: np.ndarray | None = None  # conv only: float32 H x W x Cin x Cout (MatConvNet order)
    biases: np.ndarray | None = None  # conv only: float32 (Cout,)
    stride: tuple = (1, 1)
    pad: tuple = (0, 0, 0, 0)  # top, bottom, left, right
    dilate: tuple = (1, 1)
    pool: tuple | None = None  # pool only: window H, W
    method: str = "max"  # pool only
    param: tuple | None = None  # lrn only: N, kappa, alpha, beta

    @property
    def label(self) -> str:
        return f"layer {self.index} '{self.name}' ({self.type})"

    @property
    def shape_text(self) -> str:
        return "x".join(str(d) for d in self.filters.shape) if self.filters is not None else "-"


@dataclass(frozen=True)
class SimpleNN:
    path: str
    format: str  # V5 or V73
    variables: tuple  # every variable in the file
    layers: tuple  # Layer, in file order
    normalization: dict | None  # meta.normalization (or a top-level `normalization`); informative


# ------------------------------------------------------------------------------------ format


def detect_format(path: str) -> str:
    """V5 or V73 from the MAT header; MatFileError for anything else."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(128)
    except OSError as e:
        raise MatFileError(f"{path}: cannot read ({e.strerror or e})") from e
    if head.startswith(_HDF5_SIGNATURE):
        raise MatFileError(f"{path}: an HDF5 file without the MATLAB 7.3 header, not a MAT-file "
                           f"(an MDNet weight file .h5 needs no import)")
    if len(head) < 128:
        raise MatFileError(f"{path}: not a MATLAB MAT-file ({len(head)} bytes, shorter than the "
                           f"128-byte MAT header)")
    # Bytes 124-125 hold the version (0x0100: v5/v7, 0x0200: v7.3), 126-127 the endian mark.
    order = {b"IM": "little", b"MI": "big"}.get(head[126:128])
    version = int.from_bytes(head[124:126], order) if order else None
    if head.startswith(b"MATLAB 7.3 MAT-file") or version == 0x0200:
        return V73
    if head.startswith(b"MATLAB 5.0 MAT-file") or version == 0x0100:
        return V5
    text = head[:40].decode("ascii", "replace").split("\x00")[0]
    raise MatFileError(f"{path}: not a MATLAB v5/v7/v7.3 MAT-file (header starts {text!r})")


# ------------------------------------------------------------------------------------ v5 / v7


def _from_v5(value):
    """loadmat(squeeze_me=False, struct_as_record=True) value -> dict / Cell / str / ndarray."""
    if not isinstance(value, np.ndarray):
        return Unsupported(type(value).__name__)  # MatlabFunction, MatlabOpaque
    if value.dtype.names:  # struct (array)
        items = [{f: _from_v5(el[f]) for f in value.dtype.names} for el in value.ravel(order="F")]
        return items[0] if len(items) == 1 else StructArray(items)
    if value.dtype == object:
        return Cell(_from_v5(el) for el in value.ravel(order="F"))
    if value.dtype.kind == "U":  # char; chars_as_strings gives one string per row
        return "".join(value.ravel().tolist())
    return value


def _read_v5(path: str, wanted) -> tuple:
    import scipy.io as sio

    # Any exception from scipy here means the bytes are not a readable MAT-file (truncated,
    # corrupt, compressed stream cut short ...): re-raise as one error that names the file.
    try:
        names = [w[0] for w in sio.whosmat(path)]
        data = sio.loadmat(path, variable_names=[n for n in wanted if n in names],
                           squeeze_me=False, struct_as_record=True, chars_as_strings=True)
    except Exception as e:  # noqa: BLE001 (re-raised with the file's name)
        raise MatFileError(f"{path}: cannot read MATLAB v5 file, truncated or corrupt "
                           f"({type(e).__name__}: {e})") from e
    return names, {n: _from_v5(data[n]) for n in wanted if n in data}


# ------------------------------------------------------------------------------------ v7.3

_H5_NUMERIC = {"single": np.float32, "double": np.float64, "int8": np.int8, "uint8": np.uint8,
               "int16": np.int16, "uint16": np.uint16, "int32": np.int32, "uint32": np.uint32,
               "int64": np.int64, "uint64": np.uint64, "logical": np.bool_}


def _h5_class(node) -> str:
    c = node.attrs.get("MATLAB_class", b"")
    return c.decode("ascii", "replace") if isinstance(c, bytes) else str(c)


def _from_h5(f, node):
    import h5py

    cls = _h5_class(node)
    if isinstance(node, h5py.Group):
        if cls not in ("struct", ""):
            return Unsupported(cls)  # objects, function handles, sparse matrices
        names = list(node.keys())
        # A struct array keeps each field as a dataset of references (no MATLAB_class of its own),
        # one per element; a 1x1 struct stores its fields directly.
        if names and all(isinstance(node[k], h5py.Dataset) and node[k].dtype == h5py.ref_dtype
                         and "MATLAB_class" not in node[k].attrs for k in names):
            cols = {k: [_from_h5(f, f[r]) for r in node[k][()].ravel()] for k in names}
            n = len(cols[names[0]])
            items = [{k: cols[k][i] for k in names} for i in range(n)]
            return items[0] if n == 1 else StructArray(items)
        return {k: _from_h5(f, node[k]) for k in names}
    if int(np.asarray(node.attrs.get("MATLAB_empty", 0)).ravel()[0]):
        # The dataset holds the dimensions of the empty array, not data.
        if cls == "char":
            return ""
        if cls == "cell":
            return Cell()
        if cls == "struct":
            return StructArray()
        dims = tuple(int(d) for d in np.asarray(node[()]).ravel())
        return np.zeros(dims, dtype=_H5_NUMERIC.get(cls, np.float64))
    data = node[()]
    if cls == "cell" or node.dtype == h5py.ref_dtype:
        # HDF5 shows MATLAB's column-major order as C order of the reversed shape.
        return Cell(_from_h5(f, f[r]) for r in np.asarray(data).ravel())
    if "MATLAB_object_decode" in node.attrs or cls == "function_handle":
        return Unsupported(cls)
    arr = np.asarray(data).T  # reverse the axes back to MATLAB's order
    if cls == "char":
        return "".join(chr(c) for c in arr.ravel())
    if cls == "logical":
        return arr.astype(bool)
    return arr


def _read_v73(path: str, wanted) -> tuple:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            names = [k for k in f.keys() if not k.startswith("#")]  # #refs#, #subsystem#
            return names, {n: _from_h5(f, f[n]) for n in wanted if n in names}
    except (OSError, RuntimeError, KeyError, ValueError) as e:
        raise MatFileError(f"{path}: cannot read MATLAB 7.3 (HDF5) file, truncated or corrupt "
                           f"({type(e).__name__}: {e})") from e


# ------------------------------------------------------------------------------------ layers


def _str(value, what: str, path: str) -> str:
    if not isinstance(value, str):
        raise MatFileError(f"{path}: {what} is not a string ({type(value).__name__})")
    return value


def _ints(value, counts: tuple, what: str, path: str) -> tuple:
    arr = np.asarray(value, dtype=np.float64).ravel() if isinstance(value, (np.ndarray, int, float)) \
        else None
    if arr is None or len(arr) not in counts or not np.all(arr == np.round(arr)):
        raise MatFileError(f"{path}: {what} must be {' or '.join(map(str, counts))} integers, "
                           f"found {value!r}")
    out = tuple(int(v) for v in arr)
    n = max(counts)  # MatConvNet: one value applies to every side
    return out * n if len(out) == 1 else out


def _array(value, what: str, path: str) -> np.ndarray:
    if not isinstance(value, np.ndarray) or value.dtype.kind not in "fiub":
        raise MatFileError(f"{path}: {what} is not a numeric array ({type(value).__name__})")
    return value


def _conv_params(d: dict, where: str, path: str) -> tuple:
    weights = d.get("weights")
    if isinstance(weights, Cell) and len(weights) > 0:
        filters = weights[0]
        biases = weights[1] if len(weights) > 1 else None
    elif "filters" in d:
        filters, biases = d["filters"], d.get("biases")
    else:
        raise MatFileError(f"{path}: {where} has no weights (neither a 'weights' cell nor "
                           f"'filters'/'biases' fields)")
    filters = _array(filters, f"{where} filters", path)
    if filters.ndim > 4 or filters.size == 0:
        raise MatFileError(f"{path}: {where} filters have shape {'x'.join(map(str, filters.shape))}"
                           f", expected H x W x Cin x Cout")
    # MATLAB drops trailing singleton dimensions: 3x3x8 is 3x3x8x1.
    filters = filters.reshape(filters.shape + (1,) * (4 - filters.ndim)).astype(np.float32)
    cout = filters.shape[3]
    if biases is None or (isinstance(biases, np.ndarray) and biases.size == 0):
        biases = np.zeros(cout, np.float32)  # MatConvNet: an empty bias means no bias
    biases = _array(biases, f"{where} biases", path)
    if biases.ndim > 2 or min(biases.shape, default=1) > 1 or biases.size != cout:
        raise MatFileError(f"{path}: {where} biases have shape {'x'.join(map(str, biases.shape))}, "
                           f"expected 1x{cout} or {cout}x1 (filters "
                           f"{'x'.join(map(str, filters.shape))})")
    return filters, biases.reshape(-1).astype(np.float32)


def _layer(i: int, d, path: str) -> Layer:
    if not isinstance(d, dict):
        raise MatFileError(f"{path}: layers{{{i}}} is not a struct ({type(d).__name__})")
    ltype = _str(d.get("type", None), f"layers{{{i}}}.type", path)
    name = _str(d.get("name", f"layer{i}"), f"layers{{{i}}}.name", path)
    where = f"layer {i} '{name}' ({ltype})"
    kw = {}
    if ltype == "conv":
        kw["filters"], kw["biases"] = _conv_params(d, where, path)
    if ltype in ("conv", "pool"):
        kw["stride"] = _ints(d.get("stride", 1), (1, 2), f"{where} stride", path)
        kw["pad"] = _ints(d.get("pad", 0), (1, 4), f"{where} pad", path)
    if ltype == "conv" and "dilate" in d:
        kw["dilate"] = _ints(d["dilate"], (1, 2), f"{where} dilate", path)
    if ltype == "pool":
        kw["pool"] = _ints(d.get("pool", None), (1, 2), f"{where} pool", path)
        kw["method"] = _str(d.get("method", "max"), f"{where} method", path)
    if ltype in ("lrn", "normalize") and "param" in d:
        kw["param"] = tuple(float(v) for v in _array(d["param"], f"{where} param", path).ravel())
    return Layer(index=i, name=name, type=ltype, **kw)


def read_simplenn(path) -> SimpleNN:
    """The network in a simplenn .mat file (MATLAB v5/v7 or v7.3)."""
    path = str(path)
    if not Path(path).is_file():
        raise MatFileError(f"{path}: no such file")
    fmt = detect_format(path)
    wanted = ("layers", "net", "meta", "normalization")
    reader = _read_v5 if fmt == V5 else _read_v73
    names, values = reader(path, wanted)

    layers = values.get("layers")
    if layers is None and isinstance(values.get("net"), dict):
        layers = values["net"].get("layers")  # net = load(...); net.net.layers, as mdnet_init.m
    if layers is None:
        raise MatFileError(f"{path}: no 'layers' variable: not a MatConvNet simplenn network "
                           f"(variables: {', '.join(sorted(names)) or 'none'})")
    if not isinstance(layers, Cell):
        # DagNN files (dagnn.DagNN.saveobj) keep `layers` as a struct array beside vars/params.
        kind = "a struct array (a DagNN network?)" if isinstance(layers, (dict, StructArray)) \
            else type(layers).__name__
        raise MatFileError(f"{path}: 'layers' is {kind}, expected a cell array of layer structs "
                           f"(MatConvNet simplenn)")
    parsed = tuple(_layer(i + 1, d, path) for i, d in enumerate(layers))

    meta = values.get("meta")
    norm = meta.get("normalization") if isinstance(meta, dict) else values.get("normalization")
    return SimpleNN(path=path, format=fmt, variables=tuple(names), layers=parsed,
                    normalization=norm if isinstance(norm, dict) else None)
