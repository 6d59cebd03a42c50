"""The weight file: the shared layers (conv1..fc5) plus everything needed to use them, in HDF5.

Layout (format "mdnet-weights", version 1):

    /params/<name>        float32 dataset per shared parameter (conv1_weight .. fc5_bias)
    root attributes       format, format_version, trunk (online/trunks registry name; absent in
                          files written before it: vggm), the trunk spec's keys (VGG-M:
                          input_size, padding, mean, conv_channels, fc_width, dropout, lrn_nsize,
                          lrn_alpha, lrn_beta, lrn_knorm, lrn_note; MobileNetV2: last_block,
                          norm_mean, norm_std, ...), provenance (a JSON string: config, steps,
                          datasets, time, commit ...)

Plain arrays and attributes only, no pickle: the file does not depend on module paths and any
HDF5 reader can inspect it (`h5dump -A weights.h5`). The preprocessing (input size, padding, mean)
and the LRN constants travel with the weights so the tracker builds exactly the net that was
trained instead of trusting its own defaults.

LRN alpha is stored in MXNet's convention (MXNet divides alpha by nsize): MatConvNet's VGG-M
alpha 1e-4 is stored as 5e-4. The `lrn_note` attribute says so for anyone reading the file
without this module.
"""
from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import h5py
import mxnet as mx
import numpy as np

from online.atomic import atomic_write
from online import trunks
from online.network import NetSpec, Trunk, init_trunk, param_names, shared_params

FORMAT = "mdnet-weights"
FORMAT_VERSION = 1
SUPPORTED_VERSIONS = (1,)
RANDOM_PREFIX = "random:"

LRN_NOTE = ("lrn_alpha is in MXNet's convention (mx.nd.LRN divides alpha by nsize): "
            "it equals MatConvNet's alpha * lrn_nsize (VGG-M: 1e-4 * 5 = 5e-4)")



class WeightFileError(ValueError):
    """A weight file (or weights argument) is unusable; the message names the file and the cause."""


@dataclass(frozen=True)
class WeightFile:
    spec: object  # the trunk's spec (online/trunks): NetSpec for VGG-M
    params: dict  # name -> float32 np.ndarray, names and shapes as param_names(spec)
    provenance: dict  # whatever the writer recorded, plus "created"
    path: str


# ---------------------------------------------------------------------------------------- save


def _to_numpy(value) -> np.ndarray:
    # Accept what callers naturally hold: numpy arrays, NDArrays, or Gluon Parameters.
    if isinstance(value, mx.gluon.Parameter):
        value = value.data(value.list_ctx()[0])
    if isinstance(value, mx.nd.NDArray):
        value = value.asnumpy()
    return np.asarray(value, dtype=np.float32)


def _json_default(obj):
    # Provenance is plain data; convert the few non-JSON types a config or step counter may hold
    # and refuse anything else rather than writing a repr nobody can read back.
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"provenance value of type {type(obj).__name__} is not JSON data: {obj!r}")


def _net_words(spec) -> str:
    # How errors name the network: VGG-M by its widths (as before the registry), others by trunk.
    if hasattr(spec, "conv_channels"):
        return f"conv_channels={spec.conv_channels}, fc_width={spec.fc_width}"
    return f"{spec.describe()}"


def _check_names_and_shapes(found: dict, spec, where: str) -> None:
    """Raise WeightFileError unless `found` (name -> shape) is exactly param_names(spec)."""
    expected = param_names(spec)
    missing = [n for n in expected if n not in found]
    unexpected = sorted(n for n in found if n not in expected)
    if missing or unexpected:
        if len(missing) > 8:
            missing = missing[:8] + [f"... {len(missing) - 8} more"]
        raise WeightFileError(
            f"{where}: parameter names do not match the network ({_net_words(spec)}); "
            f"missing: {missing or 'none'}; unexpected: {unexpected[:8] or 'none'}")
    wrong = [f"{n}: expected {tuple(shape)}, found {tuple(found[n])}"
             for n, shape in expected.items() if tuple(found[n]) != tuple(shape)]
    if wrong:
        raise WeightFileError(
            f"{where}: parameter shapes do not match the network ({_net_words(spec)}, "
            f"input_size={spec.input_size}): " + "; ".join(wrong))


def save_weights(path, params: dict, spec, provenance: dict | None = None) -> None:
    """Write the shared params and `spec` to `path` atomically (temp file + os.replace)."""
    path = os.fspath(path)
    arrays = {name: _to_numpy(v) for name, v in params.items()}
    _check_names_and_shapes({n: a.shape for n, a in arrays.items()}, spec,
                            f"cannot save weights to {path}")
    bad = [n for n, a in arrays.items() if not np.all(np.isfinite(a))]
    if bad:
        raise WeightFileError(f"cannot save weights to {path}: non-finite values in {bad}")
    prov = dict(provenance or {})
    prov.setdefault("created", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    prov_json = json.dumps(prov, default=_json_default, sort_keys=True)

    # Written atomically (online/atomic.py): a reader, or a crash, sees the old file or the whole
    # new one. h5py creates the temporary file itself ("w-": fails if it exists).
    def write(tmp):
        with h5py.File(tmp, "w-") as f:
            f.attrs["format"] = FORMAT
            f.attrs["format_version"] = FORMAT_VERSION
            for key, value in spec.to_dict().items():
                f.attrs[key] = np.asarray(value, dtype=np.int64) if key == "conv_channels" else value
            if hasattr(spec, "lrn"):
                f.attrs["lrn_note"] = LRN_NOTE
            f.attrs["provenance"] = prov_json
            group = f.create_group("params")
            for name in param_names(spec):  # fixed order: the convs, then fc4 and fc5
                group.create_dataset(name, data=arrays[name])
    atomic_write(path, write)


def params_from_trunk(trunk: Trunk) -> dict:
    """name -> float32 numpy copy of every shared parameter (from the first context)."""
    return {name: _to_numpy(p) for name, p in shared_params(trunk).items()}


# ---------------------------------------------------------------------------------------- load


def _attr_str(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _version(attrs) -> int | None:
    v = np.asarray(attrs.get("format_version", None))
    if v.shape != () or v.dtype.kind not in "iu":
        return None
    return int(v)


def _check_param_entry(entry, path: str, name: str) -> None:
    """Raise WeightFileError unless /params/<name> is a numeric dataset."""
    if not isinstance(entry, h5py.Dataset):
        kind = "a group" if isinstance(entry, h5py.Group) else type(entry).__name__
        raise WeightFileError(f"weight file {path}: /params/{name} is {kind}, expected a float32 "
                              f"dataset of weights")
    if entry.dtype.kind not in "fiu":
        what = "strings" if h5py.check_string_dtype(entry.dtype) is not None else f"dtype {entry.dtype}"
        raise WeightFileError(f"weight file {path}: /params/{name} holds {what}, expected a float32 "
                              f"dataset of weights")


def load_weights(path) -> WeightFile:
    """Read and validate a weight file; every problem is a WeightFileError naming the file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise WeightFileError(f"weight file {path} does not exist")
    if not os.path.isfile(path):
        raise WeightFileError(f"weight file {path} is not a regular file")

    # Read everything first (h5py raises OSError for truncated or foreign files), validate after,
    # so our own errors are never mistaken for I/O errors.
    try:
        with h5py.File(path, "r") as f:
            attrs = {k: f.attrs[k] for k in f.attrs.keys()}
            group = f.get("params")
            if isinstance(group, h5py.Group):
                datasets = {n: d for n, d in group.items()}
                # A hand-edited or foreign file may hold a group, a string or a compound where
                # a weight array belongs: name the key instead of failing on its missing shape.
                for n, d in datasets.items():
                    _check_param_entry(d, path, n)
                shapes = {n: tuple(d.shape) for n, d in datasets.items()}
            else:
                shapes, datasets = None, {}
            has_group = shapes is not None
            fmt = attrs.get("format")
            # Only read the arrays once the header says this is a file we understand.
            header_ok = (fmt is not None and _attr_str(fmt) == FORMAT
                         and _version(attrs) in SUPPORTED_VERSIONS)
            arrays = {}
            if header_ok and has_group:
                for n, d in datasets.items():
                    arrays[n] = np.asarray(d[()], dtype=np.float32)
    except (OSError, RuntimeError, KeyError, TypeError, ValueError) as e:
        if isinstance(e, WeightFileError):
            raise
        raise WeightFileError(
            f"cannot read weight file {path}: the file is truncated or not an HDF5 weight file "
            f"({type(e).__name__}: {e})") from e

    fmt = attrs.get("format")
    if fmt is None:
        raise WeightFileError(f"{path} is an HDF5 file but not an MDNet weight file "
                              f"(no 'format' attribute; expected format={FORMAT!r})")
    if _attr_str(fmt) != FORMAT:
        raise WeightFileError(f"{path}: format is {_attr_str(fmt)!r}, expected {FORMAT!r}")
    version = _version(attrs)
    if version not in SUPPORTED_VERSIONS:
        found = attrs.get("format_version")
        raise WeightFileError(f"{path}: format_version {found!r} is not supported "
                              f"(this code reads versions {list(SUPPORTED_VERSIONS)})")
    try:
        spec = trunks.spec_from_dict(attrs)
    except KeyError as e:
        raise WeightFileError(f"{path}: {e.args[0]} (metadata attributes)") from e
    except (TypeError, ValueError) as e:
        raise WeightFileError(f"{path}: malformed metadata attribute ({e})") from e
    problem = spec.validate()
    if problem:
        raise WeightFileError(f"{path}: {problem}")
    if not has_group:
        raise WeightFileError(f"{path}: no /params group (no weights stored)")
    _check_names_and_shapes(shapes, spec, f"weight file {path}")
    bad = [n for n, a in arrays.items() if not np.all(np.isfinite(a))]
    if bad:
        raise WeightFileError(f"weight file {path}: non-finite values in {bad}")

    prov_raw = attrs.get("provenance")
    try:
        provenance = json.loads(_attr_str(prov_raw)) if prov_raw is not None else {}
    except json.JSONDecodeError as e:
        raise WeightFileError(f"{path}: provenance attribute is not valid JSON ({e})") from e
    if not isinstance(provenance, dict):
        raise WeightFileError(f"{path}: provenance must be a JSON object, found "
                              f"{type(provenance).__name__}")
    ordered = {n: arrays[n] for n in param_names(spec)}
    return WeightFile(spec=spec, params=ordered, provenance=provenance, path=path)


# ---------------------------------------------------------------------------------------- use


def load_params_into(trunk: Trunk, params: dict, allow_missing: bool = False) -> list:
    """Set the trunk's (initialised) params from `params` (name -> array); return names loaded.

    Names must be the trunk's own (conv1_weight .. fc5_bias). Unexpected names always fail (they
    mean a naming mismatch that would otherwise load nothing silently); missing names fail unless
    `allow_missing` (e.g. pretraining loads conv1-3 only and keeps its fc init). Shapes are checked
    before anything is written, so a failed call leaves the trunk unchanged.
    """
    target = shared_params(trunk)
    missing = [n for n in target if n not in params]
    unexpected = sorted(n for n in params if n not in target)
    matched = [n for n in target if n in params]
    if not matched:
        raise WeightFileError(f"no parameter names matched the trunk; trunk has {list(target)}, "
                              f"given {sorted(params)}")
    if unexpected:
        raise WeightFileError(f"unexpected parameter names {unexpected} (trunk has {list(target)})"
                              + (f"; also missing {missing}" if missing else ""))
    if missing and not allow_missing:
        raise WeightFileError(f"missing parameters {missing} (pass allow_missing=True to keep "
                              f"their current values)")
    values = {}
    wrong = []
    for n in matched:
        v = _to_numpy(params[n])
        if tuple(v.shape) != tuple(target[n].shape):
            wrong.append(f"{n}: expected {tuple(target[n].shape)}, found {tuple(v.shape)}")
        values[n] = v
    if wrong:
        raise WeightFileError("parameter shapes do not match the trunk: " + "; ".join(wrong))
    for n in matched:
        p = target[n]
        try:
            ctxs = p.list_ctx()
        except RuntimeError as e:
            raise WeightFileError(f"parameter {n} is not initialised; call init_trunk (or "
                                  f"initialize) before loading weights") from e
        p.set_data(mx.nd.array(values[n], ctx=ctxs[0], dtype=np.float32))
    return matched


def trunk_from_weights(wf: WeightFile, ctx=None) -> Trunk:
    """A Trunk built with the file's spec and holding the file's params."""
    ctx = ctx or mx.cpu()
    trunk = Trunk(wf.spec)
    # Zero init is a cheap placeholder: every value is overwritten by the file right after.
    trunk.collect_params().initialize(mx.init.Zero(), ctx=ctx)
    load_params_into(trunk, wf.params)
    return trunk


def parse_random_seed(weights: str) -> int | None:
    """The SEED of a `random:SEED` weights string, None for anything else (a path)."""
    if not weights.startswith(RANDOM_PREFIX):
        return None
    text = weights[len(RANDOM_PREFIX):]
    if not (text.isascii() and text.isdigit()):
        raise WeightFileError(f"bad weights {weights!r}: expected a path to a weight file (.h5) "
                              f"or random:SEED with a non-negative integer SEED, e.g. random:0")
    seed = int(text)
    return seed


def build_trunk(weights, ctx=None, spec=None) -> tuple:
    """(trunk, provenance) from a weight file path or `random:SEED`.

    Provenance is {"source": "random", "seed": SEED} for a random trunk, and
    {"source": "file", "path": ..., "provenance": <the file's provenance>} for a file. A `spec`
    given with a file must equal the file's (the file is the truth; a mismatch is a config error).
    """
    weights = os.fspath(weights)
    seed = parse_random_seed(weights)
    if seed is not None:
        trunk = Trunk(spec or NetSpec())
        init_trunk(trunk, ctx, seed=seed)
        return trunk, {"source": "random", "seed": seed}
    wf = load_weights(weights)
    if spec is not None and spec != wf.spec:
        if type(spec) is not type(wf.spec):
            raise WeightFileError(f"weight file {weights} holds a {wf.spec.TRUNK} trunk, "
                                  f"{spec.TRUNK} was requested")
        diff = [f"{f.name}: requested {getattr(spec, f.name)!r}, file has "
                f"{getattr(wf.spec, f.name)!r}"
                for f in dataclasses.fields(type(spec))
                if getattr(spec, f.name) != getattr(wf.spec, f.name)]
        raise WeightFileError(f"weight file {weights} was saved with a different network: "
                              + "; ".join(diff))
    trunk = trunk_from_weights(wf, ctx)
    return trunk, {"source": "file", "path": wf.path, "provenance": wf.provenance}
