"""Test helpers for mdnet-import: MatConvNet networks in numpy, written the way MATLAB writes them.

* `simplenn_forward`: a small numpy version of MatConvNet's vl_simplenn forward (HxWxC images,
  HxWxCinxCout filters): vl_nnconv (correlation, stride, pad), vl_nnrelu, vl_nnnormalize,
  vl_nnpool (max, floor output size), dropout as identity. It shares no code with the importer,
  so agreeing with it checks the importer's layout, not a copy of it.
* `mdnet_layers` / `vggm_layers`: simplenn layer lists shaped like MDNet's released models and
  like ImageNet VGG-M, at any widths, with random weights, in either layer style.
* `write_v5` (scipy savemat: cell arrays of structs) and `write_v73` (h5py, laid out as MATLAB
  -v7.3 does: 512-byte "MATLAB 7.3 MAT-file" header userblock, column-major arrays stored with
  reversed axes, cells as datasets of object references into `#refs#`, structs as groups,
  MATLAB_class attributes).

Python values map to MATLAB as: dict -> struct, list -> 1xN cell, str -> char, numpy array or
number -> numeric array (MATLAB drops trailing singleton dimensions, and so do the writers).
"""
from __future__ import annotations

import itertools
import string

import h5py
import numpy as np
import scipy.io as sio

LRN_PARAM = np.array([5, 2, 1e-4, 0.75])


# ------------------------------------------------------------------------------- forward


def _quad(v):
    v = np.asarray(v).ravel().astype(int)
    return tuple(v) * 4 if len(v) == 1 else tuple(v)


def _pair(v):
    v = np.asarray(v).ravel().astype(int)
    return (int(v[0]),) * 2 if len(v) == 1 else (int(v[0]), int(v[1]))


def vl_nnconv(x, filters, biases, stride=1, pad=0):
    """Correlation: y(i,j,o) = b(o) + sum_{u,v,c} x(i*sy+u, j*sx+v, c) f(u,v,c,o)."""
    t, b, l, r = _quad(pad)
    sy, sx = _pair(stride)
    x = np.pad(x, ((t, b), (l, r), (0, 0)))
    kh, kw, cin, cout = filters.shape
    oh, ow = (x.shape[0] - kh) // sy + 1, (x.shape[1] - kw) // sx + 1
    y = np.zeros((oh, ow, cout)) + np.asarray(biases, np.float64).ravel()
    for u in range(kh):
        for v in range(kw):
            patch = x[u:u + sy * (oh - 1) + 1:sy, v:v + sx * (ow - 1) + 1:sx, :]
            y += patch @ filters[u, v].astype(np.float64)
    return y


def vl_nnnormalize(x, param):
    """y = x / (kappa + alpha * sum_{q in G(c)} x_q^2)^beta, G(c) = [c - floor((N-1)/2),
    c + ceil((N-1)/2)] clipped to the channels; alpha multiplies each square (no 1/N)."""
    n, kappa, alpha, beta = [float(p) for p in np.asarray(param).ravel()]
    n = int(n)
    sq = x ** 2
    s = np.zeros_like(x)
    channels = x.shape[2]
    for c in range(channels):
        lo, hi = max(0, c - (n - 1) // 2), min(channels, c + n // 2 + 1)
        s[:, :, c] = sq[:, :, lo:hi].sum(axis=2)
    return x / (kappa + alpha * s) ** beta


def vl_nnpool(x, pool, stride=1, pad=0):
    """Max pooling; output size floor((H + pads - pool) / stride) + 1; padding never wins."""
    t, b, l, r = _quad(pad)
    ph, pw = _pair(pool)
    sy, sx = _pair(stride)
    x = np.pad(x, ((t, b), (l, r), (0, 0)), constant_values=-np.inf)
    oh, ow = (x.shape[0] - ph) // sy + 1, (x.shape[1] - pw) // sx + 1
    y = np.full((oh, ow, x.shape[2]), -np.inf)
    for u in range(ph):
        for v in range(pw):
            y = np.maximum(y, x[u:u + sy * (oh - 1) + 1:sy, v:v + sx * (ow - 1) + 1:sx, :])
    return y


def simplenn_forward(layers, image_hwc, until: str):
    """Run `layers` on one mean-subtracted HxWxC image up to and including the layer `until`."""
    x = np.asarray(image_hwc, np.float64)
    for layer in layers:
        t = layer["type"]
        if t == "conv":
            f, b = layer["weights"] if "weights" in layer else (layer["filters"], layer["biases"])
            f = f.reshape(f.shape + (1,) * (4 - f.ndim))
            x = vl_nnconv(x, f, b, layer.get("stride", 1), layer.get("pad", 0))
        elif t == "relu":
            x = np.maximum(x, 0)
        elif t in ("lrn", "normalize"):
            x = vl_nnnormalize(x, layer["param"])
        elif t == "pool":
            assert layer.get("method", "max") == "max"
            x = vl_nnpool(x, layer["pool"], layer.get("stride", 1), layer.get("pad", 0))
        elif t == "dropout":
            pass  # inference
        else:
            raise ValueError(f"reference forward does not run {t}")
        if layer["name"] == until:
            return x
    raise KeyError(until)


# ------------------------------------------------------------------------------- networks


def _conv(rng, name, kh, cin, cout, style, bias_col, stride=1, pad=0):
    # He-scaled weights keep activations O(100) through the net (pixels are +-128), so the LRN
    # denominator (2 + 1e-4 * sum x^2) is far from its constant: a wrong alpha would show.
    f = rng.normal(0, np.sqrt(2.0 / (kh * kh * cin)), (kh, kh, cin, cout)).astype(np.float32)
    b = rng.normal(0, 1.0, (cout, 1) if bias_col else (1, cout)).astype(np.float32)
    layer = {"name": name, "type": "conv"}
    if style == "weights":
        layer["weights"] = [f, b]
    else:
        layer.update(filters=f, biases=b)
    layer.update(stride=float(stride), pad=np.asarray(pad, np.float64).reshape(1, -1))
    return layer


def _block(rng, k, kh, cin, cout, stride, style, bias_col, pad=0, pool_pad=0, lrn_type="lrn"):
    return [_conv(rng, f"conv{k}", kh, cin, cout, style, bias_col, stride, pad),
            {"name": f"relu{k}", "type": "relu"},
            {"name": f"norm{k}", "type": lrn_type, "param": LRN_PARAM.reshape(1, 4)},
            {"name": f"pool{k}", "type": "pool", "method": "max", "pool": np.array([[3.0, 3.0]]),
             "stride": 2.0, "pad": np.asarray(pool_pad, np.float64).reshape(1, -1)}]


def conv1_3_layers(rng, c=(8, 16, 16), style="weights", bias_col=False, lrn_type="lrn"):
    """conv1 .. relu3 as in MDNet's imagenet-vgg-m-conv1-3.mat (no padding)."""
    c1, c2, c3 = c
    return (_block(rng, 1, 7, 3, c1, 2, style, bias_col, lrn_type=lrn_type)
            + _block(rng, 2, 5, c1, c2, 2, style, bias_col, lrn_type=lrn_type)
            + [_conv(rng, "conv3", 3, c2, c3, style, bias_col), {"name": "relu3", "type": "relu"}])


def mdnet_layers(rng, c=(8, 16, 16), f=32, style="filters", bias_col=False, fc6=2):
    """An MDNet released model: conv1-3, fc4 3x3xC3xF, fc5 1x1xFxF, fc6 1x1xFx2, softmaxloss."""
    layers = conv1_3_layers(rng, c, style, bias_col)
    layers += [_conv(rng, "fc4", 3, c[2], f, style, bias_col), {"name": "relu4", "type": "relu"},
               {"name": "drop4", "type": "dropout", "rate": 0.5},
               _conv(rng, "fc5", 1, f, f, style, bias_col), {"name": "relu5", "type": "relu"},
               {"name": "drop5", "type": "dropout", "rate": 0.5}]
    if fc6:
        layers += [_conv(rng, "fc6", 1, f, fc6, style, bias_col),
                   {"name": "loss", "type": "softmaxloss"}]
    return layers


def vggm_layers(rng, c=(8, 16, 16), f=32, classes=10, style="weights", bias_col=True):
    """ImageNet VGG-M's structure (MatConvNet imagenet-vgg-m.mat) at widths c / f: padded conv2-5
    and pools, conv4-5, fc6 6x6, fc7, fc8, softmax."""
    c1, c2, c3 = c
    layers = (_block(rng, 1, 7, 3, c1, 2, style, bias_col, pool_pad=[0, 1, 0, 1])
              + _block(rng, 2, 5, c1, c2, 2, style, bias_col, pad=1, pool_pad=[0, 1, 0, 1])
              + [_conv(rng, "conv3", 3, c2, c3, style, bias_col, pad=1),
                 {"name": "relu3", "type": "relu"},
                 _conv(rng, "conv4", 3, c3, c3, style, bias_col, pad=1),
                 {"name": "relu4", "type": "relu"},
                 _conv(rng, "conv5", 3, c3, c3, style, bias_col, pad=1),
                 {"name": "relu5", "type": "relu"},
                 {"name": "pool5", "type": "pool", "method": "max", "pool": np.array([[3.0, 3.0]]),
                  "stride": 2.0, "pad": np.array([[0.0, 1.0, 0.0, 1.0]])},
                 _conv(rng, "fc6", 6, c3, f, style, bias_col), {"name": "relu6", "type": "relu"},
                 _conv(rng, "fc7", 1, f, f, style, bias_col), {"name": "relu7", "type": "relu"},
                 _conv(rng, "fc8", 1, f, classes, style, bias_col),
                 {"name": "prob", "type": "softmax"}])
    return layers


def vggm_meta(classes=10):
    return {"normalization": {"averageImage": np.array([[123.68], [116.779], [103.939]], np.float32),
                              "imageSize": np.array([[224.0, 224.0, 3.0]]),
                              "interpolation": "bilinear", "keepAspect": True},
            "classes": {"name": [f"n{i:08d}" for i in range(classes)],
                        "description": [f"class {i}" for i in range(classes)]}}


# ------------------------------------------------------------------------------- writers


def _matlab_shape(arr):
    arr = np.asarray(arr)
    if arr.ndim < 2:
        arr = arr.reshape(1, -1)
    while arr.ndim > 2 and arr.shape[-1] == 1:  # MATLAB drops trailing singleton dimensions
        arr = arr[..., 0]
    return arr


def _to_v5(v):
    if isinstance(v, dict):
        return {k: _to_v5(x) for k, x in v.items()}
    if isinstance(v, list):
        cell = np.empty((1, len(v)), dtype=object)
        for i, x in enumerate(v):
            cell[0, i] = _to_v5(x)
        return cell
    if isinstance(v, (str, bool)):
        return v
    return _matlab_shape(v)


def write_v5(path, variables: dict, compress=False):
    """MATLAB v5 (compress=False) or v7 (compressed) file, as `save` writes it."""
    sio.savemat(str(path), {k: _to_v5(v) for k, v in variables.items()},
                do_compression=compress, oned_as="row")


_CLASS = {np.dtype(np.float32): "single", np.dtype(np.float64): "double",
          np.dtype(np.uint8): "uint8", np.dtype(np.int32): "int32", np.dtype(np.int64): "int64"}


def _ref_names():
    letters = string.ascii_lowercase + string.ascii_uppercase
    for n in itertools.count(1):
        for t in itertools.product(letters, repeat=n):
            yield "".join(t)


def _h5_attr(node, name, text):
    node.attrs.create(name, np.bytes_(text))


def _write_h5(parent, name, v, refs, names):
    if isinstance(v, dict):
        g = parent.create_group(name)
        _h5_attr(g, "MATLAB_class", "struct")
        fields = np.empty(len(v), dtype=h5py.vlen_dtype(np.dtype("S1")))
        for i, k in enumerate(v):  # each field name as a variable-length array of characters
            fields[i] = np.frombuffer(k.encode(), "S1")
        g.attrs.create("MATLAB_fields", fields)
        for k, x in v.items():
            _write_h5(g, k, x, refs, names)
        return
    if isinstance(v, list):
        # Each element lives in #refs#; the cell is a dataset of references, shape reversed.
        rs = []
        for x in v:
            key = next(names)
            _write_h5(refs, key, x, refs, names)
            rs.append(refs[key].ref)
        ds = parent.create_dataset(name, data=np.array(rs, dtype=h5py.ref_dtype).reshape(len(v), 1))
        _h5_attr(ds, "MATLAB_class", "cell")
        return
    if isinstance(v, str) and v:
        ds = parent.create_dataset(name, data=np.array([ord(c) for c in v], np.uint16).reshape(-1, 1))
        _h5_attr(ds, "MATLAB_class", "char")
        ds.attrs.create("MATLAB_int_decode", np.int32(2))
        return
    if isinstance(v, str) or np.asarray(v).size == 0:
        shape = (0, 0) if isinstance(v, str) else _matlab_shape(v).shape
        ds = parent.create_dataset(name, data=np.array(shape, np.uint64))
        _h5_attr(ds, "MATLAB_class", "char" if isinstance(v, str) else _CLASS[np.asarray(v).dtype])
        ds.attrs.create("MATLAB_empty", np.uint8(1))
        return
    if isinstance(v, bool):
        ds = parent.create_dataset(name, data=np.array([[int(v)]], np.uint8))
        _h5_attr(ds, "MATLAB_class", "logical")
        ds.attrs.create("MATLAB_int_decode", np.int32(1))
        return
    arr = _matlab_shape(np.asarray(v, np.float64) if isinstance(v, (int, float)) else v)
    ds = parent.create_dataset(name, data=arr.T)  # column-major: HDF5 sees the axes reversed
    _h5_attr(ds, "MATLAB_class", _CLASS[arr.dtype])


def matlab_73_header() -> bytes:
    text = (b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 "
            b"HDF5 schema 1.00 .")
    head = text.ljust(116, b" ") + b"\x00" * 8 + (0x0200).to_bytes(2, "little") + b"IM"
    return head.ljust(512, b"\x00")


def write_v73(path, variables: dict):
    """MATLAB -v7.3 file: HDF5 with a 512-byte MATLAB header userblock."""
    names = _ref_names()
    with h5py.File(str(path), "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        for k, v in variables.items():
            _write_h5(f, k, v, refs, names)
    with open(path, "r+b") as fh:
        fh.write(matlab_73_header())


def write(path, variables: dict, fmt: str):
    {"v5": lambda: write_v5(path, variables), "v7": lambda: write_v5(path, variables, True),
     "v73": lambda: write_v73(path, variables)}[fmt]()


def conv_weights(layer):
    """(filters, biases) of a conv layer dict, either style."""
    return tuple(layer["weights"]) if "weights" in layer else (layer["filters"], layer["biases"])
