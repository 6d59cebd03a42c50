"""Inference precision of the conv trunk (conv1-3): fp32 (default), bf16 or int8 on a oneDNN CPU,
fp16 on a GPU.

`TrackerConfig.trunk_dtype` picks it; online/features.py converts the block it runs (exact mode's
ConvStage, fast mode's FeatureMap) with `convert(block, dtype, ctx, calib)`. Only conv1-3 change:
their output is handed on as float32, so fc4-fc6, online training, hard mining and box regression
run in fp32 exactly as before, on features that differ by the trunk's rounding.

- bf16: MXNet AMP (`convert_symbol`, target bfloat16) with LRN kept in fp32. Measured on
  MXNet 1.9.1's oneDNN: a bf16 LRN runs outside the fast path, ~25x slower than fp32 (4.7 s vs 0.18 s
  for conv1's output of 256 crops), which made the whole bf16 trunk ~12x slower than fp32. conv1
  stays fp32 too (`_first_conv`). So the graph is conv1, LRN1, pool1 in fp32 -> cast -> conv2+ReLU
  in bf16 -> cast -> LRN2 -> pool2 -> cast -> conv3 in bf16 -> cast. Weights are stored in bf16
  (`cast_optional_params`), so no cast runs per call.
- fp16 (GPU only): the same AMP conversion with target float16 (`amp_symbol`), for cuDNN's fp16
  convolutions (tensor cores on Volta and later). LRN stays fp32 here too, for range rather than
  speed: it is on AMP's own float16 fp32 list ("possible overflows"), and its sum of squares over 5
  channels does overflow fp16 (max 65504) -- conv1's ReLU output reaches ~520-570 on OTB Crossing
  crops, and 2.6% (trained weights, models/mdnet-vggm-real-cpu.h5) / 5.5% (random:0) of conv1's LRN
  windows have a sum of squares above 65504 (up to 3.5e5 / 4.3e5); conv2's and conv3's stay below
  2.5e4. So the graph is conv+ReLU in fp16 -> cast -> LRN -> pool (fp32) -> cast -> next conv, with
  fp16 weights. Expected error, emulated on the CPU (inputs, weights and conv outputs rounded to
  fp16, fp32 accumulation, 64 Crossing crops): 0.0006 (random:0) / 0.0012 (trained) relative L2 of
  the conv3 features. Not run here: MXNet 1.9.1's CPU backend has no float16 convolution ("FP16
  gemm on cpu not implemented"), so the CPU tests check the converted graph's structure only.
- int8: `mx.contrib.quantization` (oneDNN backend, conv+ReLU fused, naive min/max calibration,
  channel-wise weight scales) of conv2-3; conv1 with its LRN and pool stays fp32 (`_first_conv`), calibrated once on crops of the first frame the tracker sees (the
  caller picks them). The thresholds are fixed after that: a later image with a wider range of
  activations is clipped, which is the price of static int8.

Speed and accuracy of each option (trunk speed, fps, success AUC on ../shared/data): docs/tracking.md's
"Exact mode at the hardware's speed"; where the time goes per oneDNN primitive: `mdnet-bench track
--profile`. In fast mode (one small region map per frame, batch 1) neither helped when measured
with conv1 converted too (bf16 0.66x, int8 0.96x wall on a 243x235 region). fp16 has no
measurement: no GPU has been available to this project (`mdnet-bench track --gpu 0 --trunk-dtype
fp32,fp16`).

bf16 and int8 need the CPU's instruction set: oneDNN runs bf16 without AVX512_BF16 (or AMX) and int8
without VNNI by emulation, slower than fp32, so a config asking for them there is refused
(ConfigError) rather than silently made slow. On a GPU neither applies (MXNet's int8 kernels here
are oneDNN's; bf16 is a CPU format in this MXNet): refused too. fp16 is refused on a CPU (no
float16 convolution there, see above). `check_supported` decides from the context object alone,
without touching the device.
"""
from __future__ import annotations

import json

import numpy as np

from online.config import ConfigError
from online.tracker_config import TRUNK_DTYPES

# Any one of these CPU flags (Linux /proc/cpuinfo names) runs the precision natively.
REQUIRED_FLAGS = {
    "bf16": ("avx512_bf16", "amx_bf16"),
    "int8": ("avx512_vnni", "avx_vnni", "amx_int8"),
}

# int8 calibration inputs (exact mode: crops spread over the first frame's samples). Measured on
# OTB Crossing (random:0 and ImageNet VGG-M convs): relative error of the features 0.0164 / 0.0167 /
# 0.0169 with 32 / 64 / 256 crops -- more crops widen the ranges without helping -- at 0.2 / 0.35 /
# ~5 s of calibration on 2 loaded cores.
CALIB_CROPS = 64

# AMP's target per trunk dtype, and the ops kept in fp32 on top of AMP's default fp32 list for it
# (see the module docstring: bf16 LRN is slow; for fp16, LRN is on AMP's own list already).
AMP_TARGETS = {"bf16": "bfloat16", "fp16": "float16"}
AMP_FP32_EXTRA = {"bf16": ("LRN",), "fp16": ()}
# Dtypes whose conv1 stays fp32 on oneDNN (see _first_conv); on a GPU (fp16) cuDNN has no such gap.
AMP_KEEP_CONV1 = ("bf16",)


def cpu_flags(path: str = "/proc/cpuinfo") -> set:
    """The CPU feature flags of the first processor entry; empty when the file cannot be read."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def check_supported(dtype: str, ctx, flags: set | None = None, field: str = "trunk_dtype",
                    trunk=None) -> None:
    """Raise ConfigError when `dtype` cannot run at speed on `ctx` (flags: this CPU's, by default).
    `field`: the TrackerConfig key being checked (trunk_dtype, or mining_dtype for the fc mining pass).
    `trunk`: the trunk module (online/trunks) whose convs run at `dtype`; its PRECISIONS lists what
    has been built and measured for it."""
    if dtype not in TRUNK_DTYPES:
        raise ConfigError(f"TrackerConfig.{field} must be one of {', '.join(TRUNK_DTYPES)}, got {dtype!r}")
    if trunk is not None and dtype not in trunk.PRECISIONS:
        raise ConfigError(f"TrackerConfig.{field}={dtype} is not available for the {trunk.Spec.TRUNK} trunk "
                          f"(it runs {', '.join(trunk.PRECISIONS)})")
    if dtype == "fp32":
        return
    # Decided from the context object alone: mx.gpu(N) is never touched here.
    if dtype == "fp16":
        if ctx.device_type != "gpu":
            raise ConfigError(f"TrackerConfig.{field}=fp16 runs on a GPU only (cuDNN), not on {ctx}: "
                              f"MXNet's CPU backend has no float16 convolution; use {field}=fp32 "
                              f"(or bf16 / int8 on a CPU that has the instructions)")
        return
    if ctx.device_type != "cpu":
        raise ConfigError(f"TrackerConfig.{field}={dtype} runs on a CPU with oneDNN only, not on {ctx} "
                          f"(int8 kernels and bf16 here are oneDNN's): use {field}="
                          f"{'fp16 or fp32' if field == 'trunk_dtype' else 'fp32'} on a GPU")
    import mxnet as mx
    if not mx.runtime.Features().is_enabled("MKLDNN"):
        raise ConfigError(f"TrackerConfig.{field}={dtype} needs an MXNet build with oneDNN (MKLDNN); "
                          f"this one has none")
    have = cpu_flags() if flags is None else set(flags)
    need = REQUIRED_FLAGS[dtype]
    if not have.intersection(need):
        raise ConfigError(f"TrackerConfig.{field}={dtype} needs a CPU with {' or '.join(need)} "
                          f"(/proc/cpuinfo flags); this CPU has none, so oneDNN would emulate it slower "
                          f"than fp32: use {field}=fp32")



def resolve_mining_dtype(dtype: str, mode: str, ctx, flags: set | None = None) -> str:
    """TrackerConfig.mining_dtype as it runs: `auto` is bf16 in fast mode on a oneDNN CPU with
    avx512_bf16 or amx_bf16 (measured on ../shared/data: no accuracy lost, docs/tracking.md), and
    fp32 everywhere else (exact mode stays the published MDNet); fp32 / bf16 are kept as given."""
    if dtype != "auto":
        return dtype
    if mode != "fast" or ctx.device_type != "cpu":
        return "fp32"
    import mxnet as mx
    have = cpu_flags() if flags is None else set(flags)
    ok = mx.runtime.Features().is_enabled("MKLDNN") and have.intersection(REQUIRED_FLAGS["bf16"])
    return "bf16" if ok else "fp32"

def fp32_symbol(block, cast: bool = True):
    """(symbol with input `data`, {name: NDArray}) of a Gluon block's forward graph."""
    import mxnet as mx
    sym = block(mx.sym.var("data"))
    if cast:
        # Float32 out, whatever the last op computes in: features feed fp32 code (RoIAlign, fc4).
        # AMP keeps it: for bf16 `Cast` is on the fp32 list (a cast back to fp32 goes before it),
        # for fp16 it is dtype-neutral (it reads the fp16 ReLU output and writes float32 itself).
        sym = mx.sym.Cast(sym, dtype="float32")
    params = {name: p.data() for name, p in block.collect_params().items()}
    return sym, params


def symbol_block(sym, params: dict, ctx, static_shape: bool = True):
    """A hybridized SymbolBlock of `sym` (input `data`) with its arguments from `params`."""
    import warnings

    import mxnet as mx
    from mxnet import gluon
    with warnings.catch_warnings():
        # "Cannot decide type for the following arguments ... data": the input's type is only
        # known at the first call (float32 pixels); nothing to act on.
        warnings.filterwarnings("ignore", message="Cannot decide type", category=UserWarning)
        net = gluon.SymbolBlock(sym, [mx.sym.var("data")])
    for name, p in net.collect_params().items():
        value = params[name]
        p.dtype = value.dtype  # bf16 / int8 weights keep their own type
        p.initialize(ctx=ctx, force_reinit=True)
        p.set_data(value.as_in_context(ctx))
    net.hybridize(static_alloc=True, static_shape=static_shape)
    return net


def amp_symbol(block, dtype: str):
    """(symbol, params) of `block` with conv(+ReLU) in `dtype` (bf16 or fp16, MXNet AMP), LRN and
    pooling in fp32, fp32 output; the weights the converted convs read are stored in `dtype`."""
    import mxnet as mx
    from mxnet.contrib import amp
    from mxnet.contrib.amp.amp import _DTYPE_MX_TO_NP, bfloat16

    target = AMP_TARGETS[dtype]
    low = np.float16 if target == "float16" else bfloat16  # the numpy type of the converted weights
    sym, params = fp32_symbol(block)
    fp32_ops = list(dict.fromkeys(list(amp.list_fp32_ops(low)) + list(AMP_FP32_EXTRA[dtype])))
    # bf16 keeps conv1 in fp32 (AMP_KEEP_CONV1): see _first_conv.
    conv = amp.convert_symbol(sym, target_dtype=target, fp32_ops=fp32_ops, data_names=["data"],
                              cast_optional_params=True,
                              excluded_sym_names=_first_conv(sym) if dtype in AMP_KEEP_CONV1 else [])
    attrs = conv.attr_dict()
    out = {}
    for name in conv.list_arguments():
        if name == "data":
            continue
        value = params[name]
        dt = attrs.get(name, {}).get("__dtype__", "-1")
        if dt != "-1" and _DTYPE_MX_TO_NP[int(dt)] == low:
            # amp_cast directly: AMP's own helper (_cast_symbol_NDArray) leaves float16 arrays on a
            # CPU context in fp32, and the symbol then expects float16 weights.
            value = mx.nd.amp_cast(value, dtype=low)
        out[name] = value
    return conv, out


def _global_max(x):
    # oneDNN's global max pooling, then a max over N x C values: MXNet's plain `max` over a whole
    # layer output is single-threaded and took ~1 s per layer for 256 crops here.
    import mxnet as mx
    return mx.sym.max(mx.sym.Pooling(x, kernel=(1, 1), global_pool=True, pool_type="max"))


def _first_conv(sym) -> list:
    """[name] of the first convolution of a graph (fp32 or MKLDNN_QUANTIZE-fused): conv1, which
    the int8 and bf16 trunks keep in fp32.

    Why (oneDNN in MXNet 1.9.1, `mdnet-bench track --profile`, 256 crops, loaded machine): the
    conversion back to fp32 in front of LRN1 (int8: dequantize; bf16: AMP's cast) always writes
    plain NCHW, and oneDNN's LRN on plain NCHW is its slow avx2 kernel. int8 with conv1 quantized:
    u8 NHWC -> f32 NCHW (39 ms) -> LRN (73 ms, vs 26 ms on the fp32 graph's NHWC) -> u8 NHWC
    (50 ms): 162 of the trunk's 290 ms, more than the 68 ms int8 saves on conv1. bf16 also has no
    fast kernel for conv1's 3 input channels (gemm, 121 ms vs 99 ms fp32). Keeping conv1, its LRN
    and pool in fp32 took the trunk from 1.21x to 1.58x fp32's speed (int8) and from 0.90x to
    1.18x (bf16), with a smaller feature error (the input layer is the most sensitive)."""
    for node in json.loads(sym.tojson())["nodes"]:
        if node["op"] in ("Convolution", "_sg_mkldnn_conv"):
            return [node["name"]]
    return []


def int8_symbol(block, ctx, calib: list):
    """(symbol, params) of `block` in int8 (oneDNN), calibrated on the inputs in `calib` (a list
    of NDArrays of raw pixels, any batch sizes): naive min/max of every quantized layer's fp32
    output over them."""
    import mxnet as mx
    from mxnet.contrib.quantization import calib_graph, quantize_graph

    if not calib:
        raise ValueError("int8 trunk: no calibration inputs")
    sym, params = fp32_symbol(block)
    fused = sym.get_backend_symbol("MKLDNN_QUANTIZE")  # conv+ReLU fused, as it will run quantized
    qsym, qparams, _, collector = quantize_graph(
        fused, params, {}, ctx=ctx, excluded_sym_names=_first_conv(fused), calib_mode="naive",
        quantized_dtype="auto", quantize_mode="full", quantize_granularity="channel-wise")
    # The fp32 graph with the min and max of every layer the quantized graph needs a range for as
    # outputs, reduced inside the graph. (MXNet's own collector copies each whole layer output
    # through a monitor callback: several seconds for 256 crops on 2 cores.)
    internals = fused.get_internals()
    names = [n for n in internals.list_outputs() if n in set(collector.include_layer)]
    ranges = [r for n in names for r in (-_global_max(-internals[n]), _global_max(internals[n]))]
    probe = symbol_block(mx.sym.Group(ranges), params, ctx, static_shape=False)
    lo = {n: np.inf for n in names}
    hi = {n: -np.inf for n in names}
    for x in calib:
        found = [float(v.asscalar()) for v in probe(x.as_in_context(ctx))]
        for k, n in enumerate(names):
            lo[n] = min(lo[n], found[2 * k])
            hi[n] = max(hi[n], found[2 * k + 1])
    collector.min_max_dict = {n: (lo[n], hi[n]) for n in names}
    qsym, qparams, _ = calib_graph(qsym, params, {}, collector, calib_mode="naive", quantized_dtype="auto",
                                   logger=None)
    qsym = qsym.get_backend_symbol("MKLDNN_QUANTIZE")  # requantize folded into the convs
    return qsym, qparams


def inference_backend(trunk, ctx) -> str | None:
    """The subgraph backend the trunk's fp32 inference graph is partitioned with on `ctx`, or None.

    MobileNetV2 names MKLDNN: its ReLU6 (`clip`) runs outside oneDNN in a plain hybridized graph,
    converting every conv output out of and back into oneDNN's blocked layout (256 crops: 6.1 s);
    the MKLDNN partition fuses it into the convolution as a bounded ReLU (1.1-1.3 s). VGG-M names
    none: its graph is already oneDNN's throughout, and exact mode stays bitwise what it was."""
    import mxnet as mx
    backend = getattr(trunk, "INFERENCE_BACKEND", None)
    if backend == "MKLDNN" and (ctx.device_type != "cpu" or not mx.runtime.Features().is_enabled("MKLDNN")):
        return None
    return backend


def convert(block, dtype: str, ctx, calib: list | None = None, static_shape: bool = True,
            backend: str | None = None):
    """`block` itself for fp32 (partitioned with `backend` when given: a SymbolBlock over the same
    parameter arrays), else a converted copy (its own parameter arrays; the trunk's fp32 weights
    are not touched). int8 needs `calib`; `check_supported` is the caller's (fp16 converts anywhere
    but runs on a GPU only)."""
    if dtype == "fp32":
        if backend:
            sym, params = fp32_symbol(block)
            return symbol_block(sym.get_backend_symbol(backend), params, ctx, static_shape)
        return block
    if dtype in AMP_TARGETS:
        return symbol_block(*amp_symbol(block, dtype), ctx, static_shape)
    if dtype == "int8":
        return symbol_block(*int8_symbol(block, ctx, calib or []), ctx, static_shape)
    raise ConfigError(f"TrackerConfig.trunk_dtype must be one of {', '.join(TRUNK_DTYPES)}, got {dtype!r}")
