"""Where the time of a conv1-3 pass and of a tracked frame goes (`mdnet-bench track --profile`).

Per layer: this MXNet build has no profiler (`mx.runtime.Features()` lists PROFILER off), but
oneDNN, which runs every conv, ReLU, LRN, pooling, reorder, quantize and dequantize of the trunk on
the CPU, times each primitive it executes and prints it when DNNL_VERBOSE=1 is set before it loads.
So the trunk (as it runs at the chosen precision: fp32, bf16 with its casts, int8 with its
quantize / fused conv+ReLU / dequantize) runs in a child process with that variable set, on the
same batch of crops, and the parent reads one line per primitive: kind, implementation (which
kernel oneDNN picked: `brgconv:avx512_core_vnni`, `jit:avx2`, ...), memory formats, shape and
milliseconds. Layout changes (`reorder`) show up as their own rows, which is where a precision
option can lose what its convolutions gain. The time outside oneDNN (MXNet's own ops such as the
mean subtraction, flatten and casts, plus scheduling) is the wall time of the forward minus the
primitives' sum. Each figure is the median over the repeats.

Per phase: `PhaseFeatures` wraps a tracker's feature source and charges each call to the phase
the tracker is in (the first frame's one call; per frame, the first call after `new_image()` is
the candidates, the second the stored samples), through the tracker's own Timer. Updates,
training and box regression are the tracker's existing Timer parts (`train_s`, `bbreg_s`).
"""
from __future__ import annotations

import time

import numpy as np


class PhaseFeatures:
    """A feature source that adds its calls' time to `timer` by phase (see the module docstring)."""

    PHASES = ("first_frame_features_s", "candidates_s", "stored_samples_s")

    def __init__(self, inner, timer):
        self.inner = inner
        self.timer = timer
        self._initialized = False
        self._calls = 0

    def __getattr__(self, name):  # spec, window, regions_run, ...
        return getattr(self.inner, name)

    def new_image(self) -> None:
        self._calls = 0
        self.inner.new_image()

    def __call__(self, image, groups):
        t0 = time.perf_counter()
        out = self.inner(image, groups)
        if not self._initialized:
            phase = "first_frame_features_s"
            self._initialized = True
        else:
            phase = "candidates_s" if self._calls == 0 else "stored_samples_s"
        self._calls += 1
        self.timer.add(phase, time.perf_counter() - t0)
        return out


def phases(first_parts: dict, per_frame_parts: dict, first_frame_s: float, total_s_per_frame: float) -> dict:
    """The tracker's Timer parts arranged by phase: the first frame, then the mean tracked frame."""
    first = {
        "features_s": first_parts.get("first_frame_features_s", 0.0),
        "of_which_calibration_s": first_parts.get("calib_s", 0.0),
        "training_s": first_parts.get("train_s", 0.0),
        "of_which_mining_s": first_parts.get("train_mining_s", 0.0),
        "box_regression_fit_s": first_parts.get("bbreg_s", 0.0),
        "sampling_s": first_parts.get("sample_s", 0.0),
    }
    first["other_s"] = first_frame_s - sum(v for k, v in first.items() if not k.startswith("of_which"))
    frame = {
        "candidates_s": per_frame_parts.get("candidates_s", 0.0),
        "stored_samples_s": per_frame_parts.get("stored_samples_s", 0.0),
        "updates_s": per_frame_parts.get("train_s", 0.0) + per_frame_parts.get("memory_s", 0.0),
        "of_which_mining_s": per_frame_parts.get("train_mining_s", 0.0),
        "box_regression_s": per_frame_parts.get("bbreg_s", 0.0),
        "sampling_s": per_frame_parts.get("sample_s", 0.0),
    }
    # Scoring the candidates with fc4-fc6, top-k, bookkeeping.
    frame["other_s"] = total_s_per_frame - sum(v for k, v in frame.items() if not k.startswith("of_which"))
    return {"first_frame": first, "per_frame": frame}


# --- per-layer profile from oneDNN's own timing (DNNL_VERBOSE=1 in a child process) ---

BEGIN, END = "MDNET_PROFILE_BEGIN", "MDNET_PROFILE_END"
_KIND_NAMES = {"convolution": "conv", "eltwise": "relu", "lrn": "lrn", "pooling": "pool",
               "pooling_v2": "pool", "reorder": "reorder", "inner_product": "fc"}


def conv_gflop(desc: str) -> float:
    """GFLOP (2 per multiply-add) of a oneDNN convolution shape, e.g. 'mb256_ic3oc96_ih107oh51kh7..._iw107ow51kw7...'."""
    import re
    v = {k: int(n) for k, n in re.findall(r"(mb|ic|oc|oh|ow|kh|kw|g)(\d+)", desc)}
    if not {"mb", "ic", "oc", "oh", "ow", "kh", "kw"} <= set(v):
        return 0.0
    return 2.0 * v["mb"] * v["oc"] * v["oh"] * v["ow"] * v["ic"] * v["kh"] * v["kw"] / v.get("g", 1) / 1e9


def _formats(field: str) -> str:
    """'src_f32::blocked:acdb:f0 dst_u8::blocked:abcd:f0' -> 'f32 acdb -> u8 abcd' (data tensors only)."""
    parts = []
    for item in field.split():
        name, _, rest = item.partition("_")
        if name in ("src", "dst", "data"):
            bits = rest.split(":")
            parts.append(f"{bits[0]} {bits[3] if len(bits) > 3 else '?'}")
    return " -> ".join(parts)


def parse_verbose(text: str) -> list[dict]:
    """The timed forwards in a child's stdout: [{'wall_ms', 'primitives': [{kind, impl, formats, shape, ms}]}]."""
    runs, current = [], None
    for line in text.splitlines():
        if line.startswith(BEGIN):
            current = []
        elif line.startswith(END) and current is not None:
            runs.append({"wall_ms": float(line.split()[1]), "primitives": current})
            current = None
        elif current is not None and ("_verbose,exec," in line):
            f = line.strip().split(",")
            if len(f) < 11:
                continue
            current.append({"kind": f[3], "impl": f[4], "formats": _formats(f[6]), "shape": f[-2],
                            "ms": float(f[-1])})
    return runs


def _label(prims: list[dict]) -> list[str]:
    """Layer names in execution order: conv k, then its relu / lrn / pool k; reorders name their neighbours."""
    names, conv = [], 0
    for p in prims:
        kind = _KIND_NAMES.get(p["kind"], p["kind"])
        if kind == "conv":
            conv += 1
        names.append(f"{kind}{conv}" if kind in ("conv", "relu", "lrn", "pool") else f"{kind} after conv{conv}"
                     if conv else f"{kind} (input)")
    return names


def summarize_runs(runs: list[dict]) -> dict:
    """Median per primitive over the timed forwards (same primitive sequence in each)."""
    if not runs:
        raise RuntimeError("profile: no timed forward found in the child's output (was DNNL_VERBOSE honoured?)")
    n = min(len(r["primitives"]) for r in runs)
    if n == 0:
        raise RuntimeError("profile: oneDNN reported no primitive (an MXNet build without oneDNN?)")
    first = runs[0]["primitives"][:n]
    rows = []
    for k, (label, p) in enumerate(zip(_label(first), first)):
        ms = float(np.median([r["primitives"][k]["ms"] for r in runs]))
        row = {"layer": label, "primitive": p["kind"], "impl": p["impl"], "formats": p["formats"],
               "shape": p["shape"], "ms": ms}
        if p["kind"] == "convolution":
            gf = conv_gflop(p["shape"])
            row["gflop"] = gf
            row["gflop_per_s"] = gf / (ms / 1000.0) if ms > 0 else float("nan")
        rows.append(row)
    onednn = float(np.median([sum(p["ms"] for p in r["primitives"]) for r in runs]))
    wall = float(np.median([r["wall_ms"] for r in runs]))
    return {"wall_ms": wall, "onednn_ms": onednn, "outside_onednn_ms": wall - onednn, "primitives": rows}


def _child(argv) -> int:
    """Child process: run the trunk at one dtype on saved crops, delimiting every timed forward."""
    import argparse

    p = argparse.ArgumentParser(prog="tools.bench.dnnl_profile")
    p.add_argument("--weights", required=True)
    p.add_argument("--widths", default=None)
    p.add_argument("--crops", required=True, help=".npz with x (the batch) and calib")
    p.add_argument("--dtype", required=True)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args(argv)
    import mxnet as mx

    from online import trunk_precision as tp
    from online.network import NetSpec
    from online.weights import build_trunk

    spec = None
    if a.widths:
        c1, c2, c3, fc = (int(v) for v in a.widths.split(","))
        spec = NetSpec(conv_channels=(c1, c2, c3), fc_width=fc)
    ctx = mx.cpu()
    trunk, _ = build_trunk(a.weights, ctx=ctx, spec=spec)
    data = np.load(a.crops)
    x = mx.nd.array(data["x"], ctx=ctx)
    trunk.convs.hybridize(static_alloc=True, static_shape=True)
    net = tp.convert(trunk.convs, a.dtype, ctx, calib=[mx.nd.array(data["calib"], ctx=ctx)])
    for _ in range(2):  # plan the graph, create the primitives
        net(x).wait_to_read()
    for _ in range(a.repeats):
        print(BEGIN, flush=True)
        t0 = time.perf_counter()
        net(x).wait_to_read()
        wall = time.perf_counter() - t0
        print(f"{END} {wall * 1000.0:.4f}", flush=True)
    return 0


def layer_times(weights: str, widths, dtype: str, crops_npz: str, repeats: int = 5) -> dict:
    """oneDNN's per-primitive times of the trunk at `dtype` on the batch in `crops_npz` (child process)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ, DNNL_VERBOSE="1", MKLDNN_VERBOSE="1",
               PYTHONPATH=os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")])))
    cmd = [sys.executable, "-m", "tools.bench.dnnl_profile", "--weights", weights, "--crops", crops_npz,
           "--dtype", dtype, "--repeats", str(repeats)]
    if widths:
        cmd += ["--widths", ",".join(str(int(w)) for w in widths)]
    done = subprocess.run(cmd, env=env, cwd=repo, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"profile child for {dtype} failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return {"dtype": dtype, "repeats": repeats, **summarize_runs(parse_verbose(done.stdout))}


def profile_layers(weights: str, widths, dtypes: list, spec, image, boxes, batch: int = 256,
                   repeats: int = 5) -> dict:
    """layer_times of the trunk for one batch of crops of `boxes` in `image`, per dtype (int8
    calibrated as the tracker does: trunk_precision.CALIB_CROPS crops spread over `boxes`).
    `weights` / `widths` as given to the tracker: the child rebuilds the same trunk."""
    import tempfile
    from pathlib import Path

    from online import trunk_precision as tp
    from online.crops import crop_regions

    boxes = np.asarray(boxes, dtype=np.float64)
    pick = np.resize(np.arange(len(boxes)), batch)
    cal = np.unique(np.linspace(0, len(boxes) - 1, min(len(boxes), tp.CALIB_CROPS)).round().astype(int))
    out = {}
    with tempfile.TemporaryDirectory(prefix="mdnet-profile-") as tmp:
        path = str(Path(tmp) / "crops.npz")
        np.savez(path, x=crop_regions(image, boxes[pick], spec.input_size, spec.padding, spec.mean),
                 calib=crop_regions(image, boxes[cal], spec.input_size, spec.padding, spec.mean))
        for d in dtypes:
            out[d] = {"batch": int(batch), **layer_times(weights, widths, d, path, repeats)}
    return out


if __name__ == "__main__":
    import sys
    sys.exit(_child(sys.argv[1:]))
