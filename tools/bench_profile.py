"""Where the time of a conv1-3 pass and of a tracked frame goes (`mdnet-bench track --profile`).

Per layer: this MXNet build has no profiler (`mx.runtime.Features()` lists PROFILER off), so each
layer's time is measured as a difference of prefixes: the trunk's graph (as it runs at the chosen
precision: fp32, bf16 with its casts, int8 with its quantize / fused conv+ReLU / dequantize nodes)
cut after node k is timed for every k, the prefixes round-robin so that a load change hits all of
them alike, and layer k's time is prefix(k) - prefix(k-1) on the per-prefix minima (load only
adds time). A prefix ends where its last node's output is, in whatever memory layout oneDNN left
it, so a layout conversion the full graph needs later is charged to the node that needs it. On a
loaded machine small differences can come out negative: they are noise, shown as measured.

Per phase: `PhaseFeatures` wraps a tracker's feature source and charges each call to the phase
the tracker is in (the first frame's one call; per frame, the first call after `new_image()` is
the candidates, the second the stored samples), through the tracker's own Timer. Updates,
training and box regression are the tracker's existing Timer parts (`train_s`, `bbreg_s`).
"""
from __future__ import annotations

import json
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
        "box_regression_fit_s": first_parts.get("bbreg_s", 0.0),
        "sampling_s": first_parts.get("sample_s", 0.0),
    }
    first["other_s"] = first_frame_s - sum(v for k, v in first.items() if not k.startswith("of_which"))
    frame = {
        "candidates_s": per_frame_parts.get("candidates_s", 0.0),
        "stored_samples_s": per_frame_parts.get("stored_samples_s", 0.0),
        "updates_s": per_frame_parts.get("train_s", 0.0) + per_frame_parts.get("memory_s", 0.0),
        "box_regression_s": per_frame_parts.get("bbreg_s", 0.0),
        "sampling_s": per_frame_parts.get("sample_s", 0.0),
    }
    # Scoring the candidates with fc4-fc6, top-k, bookkeeping.
    frame["other_s"] = total_s_per_frame - sum(frame.values())
    return {"first_frame": first, "per_frame": frame}


def _prefixes(sym):
    """[(node name, op, output symbol)] of every op node of `sym` in execution order."""
    internals = sym.get_internals()
    outputs = internals.list_outputs()
    index = {name: i for i, name in enumerate(outputs)}
    found = []
    for node in json.loads(sym.tojson())["nodes"]:
        if node["op"] == "null":
            continue
        for out in (node["name"] + "_output", node["name"] + "_output0"):
            if out in index:
                found.append((node["name"], node["op"], internals[index[out]]))
                break
    return found


def layer_times(block, dtype: str, ctx, x, calib: list, repeats: int = 5) -> dict:
    """Seconds per node of `block` (a ConvStage) at `dtype` for the batch `x`, by prefix differences."""
    from online import trunk_precision as tp

    if dtype == "fp32":
        sym, params = tp.fp32_symbol(block, cast=False)
    elif dtype == "bf16":
        sym, params = tp.bf16_symbol(block)
    else:
        sym, params = tp.int8_symbol(block, ctx, calib)
    nodes = _prefixes(sym)
    nets = []
    for _, _, out in nodes:
        used = set(out.list_arguments()) | set(out.list_auxiliary_states())
        nets.append(tp.symbol_block(out, {k: v for k, v in params.items() if k in used}, ctx))
    for net in nets:  # plan every graph before timing
        net(x).wait_to_read()
    times = [[] for _ in nets]
    for _ in range(repeats):
        for k, net in enumerate(nets):
            t0 = time.perf_counter()
            net(x).wait_to_read()
            times[k].append(time.perf_counter() - t0)
    med = [float(np.min(t)) for t in times]  # the least-disturbed run of each prefix
    layers = [{"node": name, "op": op, "s": med[k] - (med[k - 1] if k else 0.0)}
              for k, (name, op, _) in enumerate(nodes)]
    return {"dtype": dtype, "batch": int(x.shape[0]), "total_s": med[-1], "repeats": repeats, "layers": layers}


def profile_layers(trunk, dtypes: list, ctx, image, boxes, batch: int = 256, repeats: int = 5) -> dict:
    """layer_times of the trunk's convs for one batch of crops of `boxes` in `image`, per dtype
    (int8 calibrated as the tracker does: trunk_precision.CALIB_CROPS crops spread over `boxes`)."""
    import mxnet as mx

    from online import trunk_precision as tp
    from online.crops import crop_regions

    spec = trunk.spec
    boxes = np.asarray(boxes, dtype=np.float64)
    pick = np.resize(np.arange(len(boxes)), batch)
    x = mx.nd.array(crop_regions(image, boxes[pick], spec.input_size, spec.padding, spec.mean), ctx=ctx)
    cal = np.unique(np.linspace(0, len(boxes) - 1, min(len(boxes), tp.CALIB_CROPS)).round().astype(int))
    calib = [mx.nd.array(crop_regions(image, boxes[cal], spec.input_size, spec.padding, spec.mean), ctx=ctx)]
    return {d: layer_times(trunk.convs, d, ctx, x, calib, repeats) for d in dtypes}
