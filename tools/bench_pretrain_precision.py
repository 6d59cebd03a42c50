"""mdnet-bench pretrain-precision: would bf16 or int8 speed up a pretraining step on a oneDNN CPU?

    mdnet-bench pretrain-precision --weights runs/real-cpu --json      # real-cpu recipe, both modes
    mdnet-bench pretrain-precision --mode fast --rounds 9 --train fp32,bf16 --mining fp32,bf16

The tracker runs conv1-3 in bf16 or int8 for inference (online/trunk_precision.py). A pretraining
step is two passes over the shared trunk (pretrain/trainer.py `run_step`): MINING (inference: the
negative pool through conv1-3 + fc4-fc6, keep the `sampling.neg` hardest) and TRAINING (forward +
backward of 32 positives + those negatives, clip, SGD update). This times both at the config's
shapes (default cluster/configs/real-cpu.yaml, VGG-M widths: exact mode trains 128 crops of 107 px
and mines a 1024-crop pool in batches of 256; fast mode runs the 4-frame region batch and pools
everything from its conv3 maps) on batches from pretraining's own data path (pretrain/minibatch.py
`prepare_step`; the config's data, synthetic sequences when it is missing), in ONE process: each
round runs every option on the round's batch, in an order rotated every round, so a change of
load on a shared machine hits all options alike. Figures are medians over rounds (after one
warm-up round); ratios are medians of the per-round fp32 time / option time.

What training forces on a low precision is timed as part of its step:
- The weights change every step. bf16 mining (`trunk_precision.convert(block, "bf16")`, the
  tracker's graph, today conv1 and LRN fp32, conv2-3 bf16 with bf16 weights) recasts the new weights
  into its bf16 copies every step (`refresh`). int8 cannot refresh in place: oneDNN's quantized
  convolutions keep the weights they quantized at their first call (a `set_data` is ignored;
  checked), so every step rebuilds the quantized graph and its first call sets up oneDNN again.
  `int8-recal` also recalibrates the activation ranges (64 pool crops, or the first region in fast
  mode, as the tracker's first frame does); `int8-reuse` reuses the previous step's ranges.
  `score_again` / `mining_ratio_int8_same_weights`: the int8-reuse graph run a second time on the
  same pool, i.e. int8's speed if the weights did not change.
- bf16 training keeps fp32 master weights (optimizer, clipping, momentum stay fp32): MXNet AMP
  `convert_symbol(target_dtype="bfloat16", cast_optional_params=False)` casts the weights in every
  forward; conv and FC forward AND backward then run on oneDNN's bf16 kernels (`bf16_backward`: the
  primitives of a bf16 backward, read from DNNL_VERBOSE in a subprocess; LRN's backward stays fp32,
  on oneDNN's reference kernel). `bf16`: LRN fp32 (as the tracker); `bf16-keep-conv1`: conv1 fp32
  too (as the tracker's bf16 trunk); `bf16-amp`: AMP's default lists (LRN bf16), what
  `amp.convert_hybrid_block` gives. `amp.init()` patches those lists into every op process-wide, so
  it cannot share a process with the fp32 reference; at 16/32/64 widths it ran 3.3x slower than
  fp32 with 12-18 % gradient error.
- `fp32-static` (mining and training) is fp32 in the wrapper the low precisions use (a SymbolBlock
  with static memory, weights copied in every step). Pretraining hybridizes fast mode's FeatureMap
  without static memory (its region size changes every step), so option / fp32 alone credits a
  precision with what static memory saves; option / fp32-static is the precision's own share.

Errors: mining is a selection, so `mining_overlap` is the fraction of fp32's hardest negatives the
option picks too (and `mining_score_rel_err` the raw scores' relative L2 error). Training:
`grad_rel_err`, each shared parameter's gradient against fp32 (same batch and weights, dropout
off). The fp32 reference has a fix: MXNet 1.9.1's oneDNN backward of LRN followed by pooling (LRN
on oneDNN's blocked layout) returns wrong conv1 and conv2 gradients -- `grad_rel_err.fp32`, the
graph without the fix (as pretraining ran until this measurement found it), is off by ~100 %
(conv1) and ~20 % (conv2); conv3-fc5 are exact, forward values are right. A reshape after each LRN
(ConvStage(trainable=True), online/network.py, what pretraining trains now) gives the gradients of
MXNet's plain CPU kernels (MXNET_MKLDNN_ENABLED=0, which agree with finite differences); tested in
tests/pretrain/test_lrn_gradient.py. `fp32-fixed` times that graph. The bf16 graphs with
LRN in fp32 get plain-layout LRN inputs from AMP's casts and are right without it.

`step_ratios["MINING+TRAIN"]` = (fp32 mining + fp32 training) / (that mining + that training), per
round, median. Data wait, allreduce and validation are left out (no precision changes them), so a
real step gains less.

Measured BEFORE pretraining got the LRN fix (so "fp32" was the unfixed graph, and its
gradient error is what the fix removed) (MXNet 1.9.1, 2-core AVX512_BF16/VNNI EPYC loaded by a 2-worker evaluation, 2 threads;
real-cpu recipe, runs/real-cpu trunk and branches, work/pool.h5 batches, 5 rounds):
- exact (fp32 step 4.69 s, mining 34 %): mining bf16 1.20x, fp32-static 1.01x, int8-recal 0.56x,
  int8-reuse 0.60x (1.43x on a second call: the per-step rebuild costs ~1.5 s); training bf16
  0.85x, bf16-keep-conv1 0.79x; best step bf16 mining + fp32 training 1.06x.
- fast (fp32 step 1.55 s, mining 29 %): mining bf16 1.51x but fp32-static 1.46x (bf16 228 ms,
  fp32-static 217 ms, fp32 417 ms), int8-reuse 1.31x, int8-recal 0.95x; training bf16 0.92x,
  bf16-keep-conv1 0.86x, fp32-static 1.05x; steps: bf16 + fp32-static 1.12x, fp32-static +
  fp32-static 1.09x, bf16 + fp32 1.11x vs fp32-static + fp32 1.11x. bf16-amp training: 0.37x
  (exact), 0.35x (fast), 13 % gradient error.
- errors: mined set overlap 1.00 (min 0.99) bf16, 0.99 (min 0.97) int8; bf16 training gradients
  6-8 % relative error overall (7-9 % on conv1).
So no precision reaches 1.1x of the step by itself: bf16 mining is worth 1.06x in exact mode and
nothing in fast mode beyond static memory; bf16 training and int8 anything are slower. What fast
mode gains here comes from static memory, which needs no precision change.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "cluster" / "configs" / "real-cpu.yaml"
DEFAULT_WEIGHTS = REPO / "models" / "mdnet-real-cpu.h5"

MINING_OPTIONS = ("fp32", "fp32-static", "bf16", "int8-recal", "int8-reuse")
# Training options: (LRN backward fix, AMP bf16 settings or None). "fp32" is the MultiDomainNet
# itself, as pretraining runs it (with the LRN fix since it was found; the figures in the module
# docstring were measured before, when "fp32" was the unfixed graph); the others are SymbolBlocks.
TRAIN_GRAPHS = {
    "fp32": (False, None),
    "fp32-static": (False, None),
    "fp32-fixed": (True, None),
    "bf16": (False, {"lrn_fp32": True, "keep_conv1": False}),
    "bf16-keep-conv1": (True, {"lrn_fp32": True, "keep_conv1": True}),
    "bf16-amp": (False, {"lrn_fp32": False, "keep_conv1": False}),
}
TRAIN_OPTIONS = tuple(TRAIN_GRAPHS)
DEFAULT_TRAIN = ("fp32", "fp32-static", "fp32-fixed", "bf16", "bf16-keep-conv1")


def add_pretrain_precision_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "pretrain-precision", help="time a pretraining step's mining and training passes in fp32 / bf16 / int8",
        description="One process, interleaved rounds: the mining pass (inference over the negative pool) in "
                    "fp32, bf16 and int8 with the per-step cost of new weights, and the training pass (forward + "
                    "backward + update) in fp32 and bf16 (AMP, fp32 master weights), at the config's shapes; "
                    "medians, ratios against fp32, gradient errors and how much of the mined set changes.")
    p.add_argument("--config", default=str(DEFAULT_CONFIG),
                   help="pretraining config (default: cluster/configs/real-cpu.yaml, the shipped model's recipe)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="pretraining config override (repeatable)")
    p.add_argument("--mode", default="exact,fast", metavar="MODE[,MODE]",
                   help="model.mode(s) to measure (default exact,fast)")
    p.add_argument("--weights", default=None,
                   help="trunk weights: a weight file (.h5), a pretraining run or checkpoint folder (its trunk and "
                        "the domains' fc6 branches: realistic mining scores) or random:SEED (default: "
                        "models/mdnet-real-cpu.h5 when its widths are the config's, else random:0; fc6 branches "
                        "then get the paper init)")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="dataset root (default: the config's data; synthetic sequences when it is missing)")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds, after one warm-up round (default 5)")
    p.add_argument("--train", default=",".join(DEFAULT_TRAIN), metavar="OPT[,OPT...]",
                   help=f"training options of {', '.join(TRAIN_OPTIONS)} (default {','.join(DEFAULT_TRAIN)}; "
                        f"fp32 is always run: it is the reference)")
    p.add_argument("--mining", default=",".join(MINING_OPTIONS), metavar="OPT[,OPT...]",
                   help=f"mining options of {', '.join(MINING_OPTIONS)} (default all)")
    p.add_argument("--calib", type=int, default=64, metavar="N",
                   help="int8 calibration: N crops of the pool (exact mode; default 64, the tracker's); fast mode "
                        "calibrates on the first region of the batch")
    p.add_argument("--grad-rounds", type=int, default=2, metavar="N",
                   help="rounds whose batch also gets the gradient-error check (default 2)")
    p.add_argument("--no-dnnl-check", action="store_true",
                   help="skip the DNNL_VERBOSE subprocess that lists the primitives of a bf16 backward")
    from online.threads import threads_arg
    threads_arg(p)
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a text summary")
    p.set_defaults(func=bench_pretrain_precision)
    return p


def _options(text: str, allowed: tuple, what: str, must: str) -> list:
    opts = [o.strip() for o in text.split(",") if o.strip()]
    bad = [o for o in opts if o not in allowed]
    if bad or len(set(opts)) != len(opts):
        raise SystemExit(f"mdnet-bench pretrain-precision: --{what} takes distinct values of "
                         f"{', '.join(allowed)}, got {text!r}")
    return [must] + [o for o in opts if o != must]


# ============================================================================ graphs


def _head_block(fcs, branch):
    """fc4-fc5 (+dropout) then a domain's fc6, as one block (features in, raw scores out)."""
    from mxnet import gluon

    class Head(gluon.HybridBlock):
        def __init__(self):
            super().__init__(prefix="")
            self.fcs, self.branch = fcs, branch

        def hybrid_forward(self, F, x):
            return self.branch(self.fcs(x))
    return Head()


def _symbols(spec, mode: str, dropout: bool, fix_lrn: bool):
    """(conv symbol, head symbol), input `data`, float32 outputs. The conv part is exact mode's
    ConvStage (crops -> flattened conv3) or fast mode's FeatureMap (regions -> conv3 maps); the
    head's fc6 parameters are named fc6_weight / fc6_bias (loaded from the step's domain)."""
    import mxnet as mx

    from online.network import FeatureMap, Trunk, make_head
    sp = spec if dropout else dataclasses.replace(spec, dropout=0.0)
    trunk = Trunk(sp, trainable_convs=fix_lrn)  # the LRN gradient fix (online/network.py ConvStage)
    conv = FeatureMap(trunk.convs) if mode == "fast" else trunk.convs
    head = _head_block(trunk.fcs, make_head(sp, "fc6"))
    data = mx.sym.var("data")
    return mx.sym.Cast(conv(data), dtype="float32"), mx.sym.Cast(head(data), dtype="float32")


def _amp_bf16(sym, lrn_fp32: bool, keep_conv1: bool = False):
    """AMP bf16 graph of `sym` with fp32 parameters (cast inside the graph at every call); LRN in
    fp32 or bf16, conv1 in bf16 or (keep_conv1, as the tracker's bf16 trunk) fp32."""
    from mxnet.contrib import amp
    from mxnet.contrib.amp.amp import bfloat16

    from online.trunk_precision import _first_conv
    fp32_ops = amp.list_fp32_ops(bfloat16) + (["LRN"] if lrn_fp32 else [])
    return amp.convert_symbol(sym, target_dtype="bfloat16", fp32_ops=fp32_ops, data_names=["data"],
                              cast_optional_params=False, excluded_sym_names=_first_conv(sym) if keep_conv1 else [])


def _graph_pair(spec, mode: str, opt: str, dropout: bool):
    """(conv symbol, head symbol) of training option `opt` (TRAIN_GRAPHS)."""
    fix, amp = TRAIN_GRAPHS[opt]
    csym, hsym = _symbols(spec, mode, dropout=dropout, fix_lrn=fix)
    if amp is not None:
        csym, hsym = _amp_bf16(csym, **amp), _amp_bf16(hsym, **amp)
    return csym, hsym


class _Master:
    """The fp32 weights everything is loaded from: the MultiDomainNet's shared params plus the
    step's domain's branch under the name fc6_*."""

    def __init__(self, model):
        self.model = model

    def value(self, name: str, d: int):
        if name.startswith("fc6_"):
            return self.model.branch_params(d)[name[len("fc6_"):]].data()
        return self.model.shared_params()[name].data()

    def lr_mult(self, name: str, d: int) -> float:
        if name.startswith("fc6_"):
            return self.model.branch_params(d)[name[len("fc6_"):]].lr_mult
        return self.model.shared_params()[name].lr_mult


class _TrainNet:
    """A training copy of the net (conv part + head) from symbols, with its own fp32 parameters
    and SGD trainer; `load` copies the master's current weights into it."""

    def __init__(self, conv_sym, head_sym, master: _Master, d: int, ctx, mode: str, optim):
        from mxnet import gluon

        from online.trunk_precision import symbol_block
        self.conv = symbol_block(conv_sym, {n: master.value(n, d) for n in conv_sym.list_arguments() if n != "data"},
                                 ctx, static_shape=mode == "exact")
        self.head = symbol_block(head_sym, {n: master.value(n, d) for n in head_sym.list_arguments() if n != "data"},
                                 ctx)
        self.params = {**self.conv.collect_params(), **self.head.collect_params()}
        for n, p in self.params.items():
            p.lr_mult = master.lr_mult(n, d)
        self.trainer = gluon.Trainer(list(self.params.values()), "sgd",
                                     {"learning_rate": optim.lr, "momentum": optim.momentum, "wd": optim.weight_decay},
                                     kvstore=None)
        self.master, self.mode, self.ctx = master, mode, ctx

    def load(self, d: int) -> None:
        for n, p in self.params.items():
            p.set_data(self.master.value(n, d))

    def scores(self, batch, neg_idx, spec):
        return _train_scores(self.conv, self.head, self.mode, batch, neg_idx, spec, self.ctx)

    def shared_grads(self) -> list:
        return [p.grad() for n, p in sorted(self.params.items()) if not n.startswith("fc6_")]


def _train_scores(conv, head, mode, batch, neg_idx, spec, ctx):
    """The training forward of pretrain/model.py (`__call__` / `window_scores`) through `conv`
    and `head` blocks: exact = head(conv(crops)); fast = conv1-3 on each frame's window, RoIAlign,
    head. Call under autograd.record()."""
    import mxnet as mx

    from online import roi
    from pretrain import windows as W
    from pretrain.model import to_input
    if mode == "exact":
        return head(conv(to_input(np.concatenate([batch.pos, batch.neg[neg_idx]]), ctx)))
    rois = np.concatenate([batch.pos, batch.neg[neg_idx]])
    feats, order = [], []
    for slot, idx, win in W.frame_windows(rois, batch.regions.shape, spec.conv3_size):
        maps = conv(to_input(W.window_pixels(batch.regions, slot, win), ctx))
        r = mx.nd.array(W.shift_rois(rois[idx], win), ctx=ctx, dtype=np.float32)
        feats.append(roi.pool(mx.nd, maps, r, spec))
        order.append(idx)
    x = mx.nd.concat(*feats, dim=0) if len(feats) > 1 else feats[0]
    order = np.concatenate(order)
    if not np.array_equal(order, np.arange(len(order))):
        x = mx.nd.take(x, mx.nd.array(np.argsort(order, kind="stable"), ctx=ctx))
    return head(x)


def _loss(scores, n_pos: int, ctx):
    import mxnet as mx

    from online.head import mdnet_loss
    labels = np.concatenate([np.ones(n_pos), np.zeros(scores.shape[0] - n_pos)])
    return mdnet_loss(mx.nd, scores, mx.nd.array(labels, ctx=ctx)).mean()


def _timed_train(forward, shared_grads, update, n_pos: int, clip: float, ctx) -> tuple:
    """(forward+backward s, clip+update s) of one training step, as pretrain/trainer.py runs it."""
    import mxnet as mx
    from mxnet import autograd
    t0 = time.perf_counter()
    with autograd.record():
        loss = _loss(forward(), n_pos, ctx)
    loss.backward()
    mx.nd.waitall()
    t1 = time.perf_counter()
    if clip > 0:
        mx.gluon.utils.clip_global_norm(shared_grads(), clip, check_isfinite=True)
    update()
    mx.nd.waitall()
    return t1 - t0, time.perf_counter() - t1


# ============================================================================ mining


def _int8_symbol(block, ctx, calib=None, ranges=None):
    """(qsym, qparams, ranges): online/trunk_precision.py `int8_symbol`, either calibrated on `calib`
    (a list of NDArrays) or built with the activation `ranges` of an earlier build and no
    calibration pass. Ranges are a list of (min, max) in graph order, not a dict by layer name:
    every tracing of a Gluon block names its ops anew (lrn6 -> lrn8), and ranges keyed by the old
    names would silently match nothing (calib_graph then leaves those layers to runtime ranges)."""
    import mxnet as mx
    from mxnet.contrib.quantization import calib_graph, quantize_graph

    from online.trunk_precision import _first_conv, _global_max, fp32_symbol, symbol_block
    sym, params = fp32_symbol(block)
    fused = sym.get_backend_symbol("MKLDNN_QUANTIZE")
    qsym, _, _, collector = quantize_graph(
        fused, params, {}, ctx=ctx, excluded_sym_names=_first_conv(fused), calib_mode="naive",
        quantized_dtype="auto", quantize_mode="full", quantize_granularity="channel-wise")
    internals = fused.get_internals()
    names = [n for n in internals.list_outputs() if n in set(collector.include_layer)]
    if ranges is None:
        outs = [r for n in names for r in (-_global_max(-internals[n]), _global_max(internals[n]))]
        probe = symbol_block(mx.sym.Group(outs), params, ctx, static_shape=False)
        lo, hi = [np.inf] * len(names), [-np.inf] * len(names)
        for x in calib:
            found = [float(v.asscalar()) for v in probe(x.as_in_context(ctx))]
            for k in range(len(names)):
                lo[k], hi[k] = min(lo[k], found[2 * k]), max(hi[k], found[2 * k + 1])
        ranges = list(zip(lo, hi))
    if len(ranges) != len(names):
        raise ValueError(f"int8 ranges for {len(ranges)} layers, the graph quantizes {len(names)}")
    collector.min_max_dict = dict(zip(names, ranges))
    qsym, qparams, _ = calib_graph(qsym, params, {}, collector, calib_mode="naive", quantized_dtype="auto",
                                   logger=None)
    return qsym.get_backend_symbol("MKLDNN_QUANTIZE"), qparams, list(ranges)


def _recast(net, block) -> None:
    """Copy `block`'s current fp32 weights into the SymbolBlock `net` (cast to bf16 where it keeps bf16)."""
    import mxnet as mx
    from mxnet.contrib.amp.amp import bfloat16
    src = {n: p.data() for n, p in block.collect_params().items()}
    for n, p in net.collect_params().items():
        v = src[n]
        p.set_data(mx.nd.amp_cast(v, dtype=bfloat16) if p.dtype == bfloat16 else v)


def _mine_with(conv, model, batch, d: int, mb: int, ctx):
    """Pool scores (N, 2) with conv1-3 run by `conv` and fc4-fc6 by the model (fp32), as
    MultiDomainNet.score / score_fast do it."""
    import mxnet as mx

    from pretrain.model import to_input
    if batch.fast:
        with mx.autograd.pause():
            maps = conv(to_input(batch.regions, ctx))
        return model.score_rois(maps, batch.neg, d, mb)
    out = []
    for i in range(0, len(batch.neg), mb):
        out.append(model.branches[d](model.trunk.fcs(conv(to_input(batch.neg[i:i + mb], ctx)))))
    return mx.nd.concat(*out, dim=0).asnumpy() if len(out) > 1 else out[0].asnumpy()


def _calib_inputs(batch, n: int, ctx) -> list:
    from pretrain.model import to_input
    if batch.fast:
        return [to_input(batch.regions[:1], ctx)]
    idx = np.linspace(0, len(batch.neg) - 1, min(n, len(batch.neg))).round().astype(int)
    return [to_input(batch.neg[idx], ctx)]


# ============================================================================ data and weights


def _batches(cfg, modes: list, n: int, data: str | None, tmp: Path) -> tuple:
    """n StepBatches per mode (the same domains, frames and boxes in both modes), and a description."""
    from pretrain.domains import find_domains, prepare_domain
    from pretrain.minibatch import prepare_step
    dcfg = cfg.data
    if data is not None:
        dcfg = dataclasses.replace(dcfg, roots=(data,), packs=())
    try:
        domains = find_domains(dcfg)
        source = ", ".join([*map(str, dcfg.roots), *map(str, dcfg.packs)])
    except Exception as e:  # noqa: BLE001 -- any missing-data error: fall back to synthetic data
        if data is not None:
            raise
        from tools.synth import synthesize
        root = tmp / "synth"
        synthesize(root, sequences=4, frames=30, size=(480, 360), seed=0)
        domains = find_domains(dataclasses.replace(dcfg, roots=(str(root),), packs=(), exclude_overlap=()))
        source = f"synthetic (4 x 30 frames, 480x360; config data unusable: {e})"
    chosen = [domains[(i * len(domains)) // n] for i in range(n)] if len(domains) >= n else \
        [domains[i % len(domains)] for i in range(n)]
    for dom in {d.index: d for d in chosen}.values():
        prepare_domain(dom, cfg.outliers)
    spec = cfg.model.spec()
    pool = cfg.mining.pool if cfg.mining.enabled else cfg.sampling.neg
    out = {m: [] for m in modes}
    for step, dom in enumerate(chosen):
        for m in modes:
            rng = np.random.default_rng([cfg.seed, 0, step, 1])
            out[m].append(prepare_step(dom, step, rng, cfg.sampling, pool, spec, mode=m,
                                       max_region=cfg.model.max_region))
    return out, {d.index: d.name for d in chosen}, source


def _load_weights(model, weights: str, spec) -> str:
    """Load `weights` into the MultiDomainNet; returns what was loaded, in words."""
    import mxnet as mx

    from online.weights import load_params_into, load_weights, parse_random_seed
    from pretrain.model import branch_init
    path = Path(weights)
    seed = parse_random_seed(weights)
    if seed is not None:
        from online.network import init_trunk
        init_trunk(model.trunk, model.ctx, seed=seed)
        for d, head in model.branches.items():
            w, b = branch_init(spec, seed, d)
            head.weight.set_data(mx.nd.array(w))
            head.bias.set_data(mx.nd.array(b))
        return f"random:{seed} (paper init)"
    if path.is_dir():
        from pretrain import checkpoint as ckpt
        ckpt_dir = ckpt.find_latest(path)
        params, _ = ckpt.read_shared(ckpt_dir)
        load_params_into(model.trunk, params)
        branches, _ = ckpt.read_branches(ckpt_dir)
        found = 0
        for d, name in model.names.items():
            if name in branches:
                model.branches[d].weight.set_data(mx.nd.array(branches[name]["weight"]))
                model.branches[d].bias.set_data(mx.nd.array(branches[name]["bias"]))
                found += 1
        return f"checkpoint {ckpt_dir} (trunk; fc6 of {found} of {len(model.names)} domains, others paper init)"
    wf = load_weights(weights)
    if wf.spec != spec:
        raise SystemExit(f"mdnet-bench pretrain-precision: {weights} has widths {wf.spec.conv_channels}/"
                         f"{wf.spec.fc_width}, the config {spec.conv_channels}/{spec.fc_width}")
    load_params_into(model.trunk, wf.params)
    return f"weight file {weights} (trunk; fc6 paper init)"


# ============================================================================ the measurement


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    nb = float(np.linalg.norm(b))
    return float(np.linalg.norm(a - b)) / nb if nb > 0 else float(np.linalg.norm(a))


def _grad_errors(nets: dict, master: _Master, batch, neg_idx, d: int, spec, ctx) -> dict:
    """Per option: relative L2 error of each shared parameter's gradient (and all of them together)
    against nets["ref"] (fp32 with the LRN fix), same weights, batch, dropout off."""
    import mxnet as mx
    from mxnet import autograd
    grads = {}
    for name, (conv, head) in nets.items():
        for p in [*conv.collect_params().values(), *head.collect_params().values()]:
            p.set_data(master.value(p.name, d))
        with autograd.record():
            loss = _loss(_train_scores(conv, head, "fast" if batch.fast else "exact", batch, neg_idx, spec, ctx),
                         len(batch.pos), ctx)
        loss.backward()
        mx.nd.waitall()
        grads[name] = {p.name: p.grad().astype("float32").asnumpy()
                       for p in [*conv.collect_params().values(), *head.collect_params().values()]
                       if not p.name.startswith("fc6_")}
    ref = grads.pop("ref")
    out = {}
    for name, g in grads.items():
        e = {n: _rel(g[n], ref[n]) for n in sorted(ref)}
        e["all"] = _rel(np.concatenate([g[n].ravel() for n in sorted(ref)]),
                        np.concatenate([ref[n].ravel() for n in sorted(ref)]))
        out[name] = e
    return out


def measure(cfg, modes: list, rounds: int, weights: str | None, data: str | None = None,
            train_opts=DEFAULT_TRAIN, mining_opts=MINING_OPTIONS, calib: int = 64,
            grad_rounds: int = 2, log=None) -> dict:
    """The whole measurement (see the module docstring); returns the JSON-ready result."""
    import mxnet as mx

    from online import trunk_precision as TP
    from online.mining import select_hardest
    from pretrain.model import MultiDomainNet, to_input
    warnings.filterwarnings("ignore", message="Cannot decide type", category=UserWarning)
    ctx = mx.cpu()
    spec = cfg.model.spec()
    k_neg, mb, clip = cfg.sampling.neg, cfg.mining.batch, cfg.optim.clip_norm
    log = log or (lambda s: None)
    with tempfile.TemporaryDirectory(prefix="mdnet-bench-precision-") as tmp:
        batches, owned, source = _batches(cfg, modes, rounds + 1, data, Path(tmp))
    model = MultiDomainNet(spec, owned, ctx)
    model.initialize(cfg.init, cfg.seed)
    if weights is None:
        weights = str(DEFAULT_WEIGHTS) if DEFAULT_WEIGHTS.exists() and spec == _file_spec(DEFAULT_WEIGHTS) \
            else "random:0"
    loaded = _load_weights(model, weights, spec)
    model.set_lr_mults(cfg.optim.lr_mult_conv, cfg.optim.lr_mult_fc, cfg.optim.lr_mult_branch)
    master = _Master(model)
    # As pretrain/optim.py: one trainer for the shared layers, one per branch (stepped only with its domain).
    sgd = {"learning_rate": cfg.optim.lr, "momentum": cfg.optim.momentum, "wd": cfg.optim.weight_decay}
    shared_trainer = mx.gluon.Trainer(list(model.shared_params().values()), "sgd", sgd, kvstore=None)
    branch_trainers = {d: mx.gluon.Trainer(list(model.branch_params(d).values()), "sgd", sgd, kvstore=None)
                       for d in model.branches}
    result = {"weights": loaded, "data": source, "domains": sorted(set(owned.values())),
              "spec": {"conv_channels": list(spec.conv_channels), "fc_width": spec.fc_width},
              "samples_per_step": cfg.sampling.pos + k_neg, "mining_pool": len(batches[modes[0]][0].neg),
              "mining_batch": mb, "frames": cfg.sampling.frames, "calib": calib, "modes": {}}
    per_mode = {}
    for mode in modes:
        d0 = batches[mode][0].domain
        conv_block = model.fmap if mode == "fast" else model.trunk.convs
        train_nets = {}
        for opt in train_opts[1:]:
            train_nets[opt] = _TrainNet(*_graph_pair(spec, mode, opt, dropout=True), master, d0, ctx, mode, cfg.optim)
        # Gradient check: every option's graph (dropout off) against fp32 with the LRN fix.
        grad_nets = {}
        for name in ("ref", *[o for o in train_opts if o not in ("fp32-static", "fp32-fixed")]):
            csym, hsym = _graph_pair(spec, mode, "fp32-fixed" if name == "ref" else name, dropout=False)
            vals = {n: master.value(n, d0) for s in (csym, hsym) for n in s.list_arguments() if n != "data"}
            grad_nets[name] = (TP.symbol_block(csym, vals, ctx, static_shape=mode == "exact"),
                               TP.symbol_block(hsym, vals, ctx))
        # The bf16 graph and its fp32 twin: the same wrapper (SymbolBlock, static memory, weights copied
        # in every step), so that bf16 / fp32-static is the precision's own effect.
        mine_nets = {}
        if "bf16" in mining_opts:
            mine_nets["bf16"] = TP.convert(conv_block, "bf16", ctx, static_shape=mode == "exact")
        if "fp32-static" in mining_opts:
            mine_nets["fp32-static"] = TP.symbol_block(*TP.fp32_symbol(conv_block), ctx, static_shape=mode == "exact")
        per_mode[mode] = dict(conv_block=conv_block, train_nets=train_nets, grad_nets=grad_nets, mine_nets=mine_nets,
                              rounds=[], grads=[], ranges=None)

    def mine_fp32(batch, d):
        t0 = time.perf_counter()
        s = model.score_fast(batch.regions, batch.neg, d, mb) if batch.fast else model.score(batch.neg, d, mb)
        return s, {"total": time.perf_counter() - t0}

    def mine_copy(st, batch, d, opt):
        t0 = time.perf_counter()
        _recast(st["mine_nets"][opt], st["conv_block"])
        mx.nd.waitall()
        t1 = time.perf_counter()
        s = _mine_with(st["mine_nets"][opt], model, batch, d, mb, ctx)
        t2 = time.perf_counter()
        return s, {"refresh": t1 - t0, "score": t2 - t1, "total": t2 - t0}

    def mine_int8(st, batch, d, reuse):
        t0 = time.perf_counter()
        if reuse:
            qsym, qparams, _ = _int8_symbol(st["conv_block"], ctx, ranges=st["ranges"])
        else:
            qsym, qparams, st["next_ranges"] = _int8_symbol(st["conv_block"], ctx,
                                                            calib=_calib_inputs(batch, calib, ctx))
        net = TP.symbol_block(qsym, qparams, ctx, static_shape=not batch.fast)
        mx.nd.waitall()
        t1 = time.perf_counter()
        s = _mine_with(net, model, batch, d, mb, ctx)
        t2 = time.perf_counter()
        out = {"refresh": t1 - t0, "score": t2 - t1, "total": t2 - t0}
        if reuse:
            # The same graph once more: int8's speed if the weights did not change (not in the total;
            # score - score_again is the first call's cost: oneDNN primitives, weight quantization).
            _mine_with(net, model, batch, d, mb, ctx)
            out["score_again"] = time.perf_counter() - t2
        return s, out

    for r in range(rounds + 1):
        for mode in modes:
            st = per_mode[mode]
            batch = batches[mode][r]
            d = batch.domain
            rec = {"mining": {}, "train": {}, "overlap": {}, "score_err": {}}
            # ---- mining: every option on the same weights, order rotated per round
            order = [mining_opts[(i + r) % len(mining_opts)] for i in range(len(mining_opts))]
            if st["ranges"] is None and "int8-reuse" in order:  # warm-up round: no previous step's ranges yet
                st["ranges"] = _int8_symbol(st["conv_block"], ctx, calib=_calib_inputs(batch, calib, ctx))[2]
            scores = {}
            for opt in order:
                if opt == "fp32":
                    scores[opt], rec["mining"][opt] = mine_fp32(batch, d)
                elif opt in ("bf16", "fp32-static"):
                    scores[opt], rec["mining"][opt] = mine_copy(st, batch, d, opt)
                else:
                    scores[opt], rec["mining"][opt] = mine_int8(st, batch, d, reuse=opt == "int8-reuse")
            st["ranges"] = st.pop("next_ranges", st["ranges"])
            hard = select_hardest(scores["fp32"][:, 1], k_neg)
            for opt, s in scores.items():
                if opt != "fp32":
                    rec["overlap"][opt] = len(set(hard) & set(select_hardest(s[:, 1], k_neg))) / k_neg
                    rec["score_err"][opt] = _rel(s, scores["fp32"])
            # ---- gradient errors (untimed), on the master's weights before this round's update
            if 1 <= r <= grad_rounds:
                st["grads"].append(_grad_errors(st["grad_nets"], master, batch, hard, d, spec, ctx))
            # ---- training: the same hard negatives and starting weights for every option
            for net in st["train_nets"].values():
                net.load(d)
            mx.nd.waitall()
            topts = [train_opts[(i + r) % len(train_opts)] for i in range(len(train_opts))]
            for opt in topts:
                if opt == "fp32":
                    if batch.fast:
                        rois = np.concatenate([batch.pos, batch.neg[hard]])

                        def fwd():
                            return model.window_scores(batch.regions, rois, d)
                    else:
                        x = to_input(np.concatenate([batch.pos, batch.neg[hard]]), ctx)

                        def fwd():
                            return model(x, d)
                    def update():
                        shared_trainer.update(1)
                        branch_trainers[d].update(1)
                    fb, up = _timed_train(fwd, lambda: [p.grad() for p in model.shared_params().values()],
                                          update, len(batch.pos), clip, ctx)
                else:
                    net = st["train_nets"][opt]
                    fb, up = _timed_train(lambda: net.scores(batch, hard, spec), net.shared_grads,
                                          lambda: net.trainer.update(1), len(batch.pos), clip, ctx)
                rec["train"][opt] = {"fwd_bwd": fb, "update": up, "total": fb + up}
            if r > 0:
                st["rounds"].append(rec)
            log(f"round {r}{' (warm-up)' if r == 0 else ''} {mode}: "
                + ", ".join(f"mine {o} {v['total']:.2f}s" for o, v in rec["mining"].items()) + "; "
                + ", ".join(f"train {o} {v['total']:.2f}s" for o, v in rec["train"].items()))
    for mode in modes:
        result["modes"][mode] = _summarise(per_mode[mode], batches[mode], train_opts, mining_opts)
    return result


def _file_spec(path):
    from online.weights import load_weights
    try:
        return load_weights(path).spec
    except Exception:  # noqa: BLE001 -- an unreadable default file just means: no default weights
        return None


def _med(values) -> float:
    return float(statistics.median(values))


def _summarise(st: dict, batches: list, train_opts, mining_opts) -> dict:
    rounds = st["rounds"]
    out = {"rounds": len(rounds)}
    b = batches[0]
    if b.fast:
        out["regions_shape"] = [list(x.regions.shape) for x in batches[1:]]
    out["mining_ms"] = {o: {k: 1e3 * _med(r["mining"][o][k] for r in rounds) for k in rounds[0]["mining"][o]}
                        for o in mining_opts}
    out["train_ms"] = {o: {k: 1e3 * _med(r["train"][o][k] for r in rounds) for k in rounds[0]["train"][o]}
                       for o in train_opts}
    out["mining_ratio"] = {o: _med(r["mining"]["fp32"]["total"] / r["mining"][o]["total"] for r in rounds)
                           for o in mining_opts if o != "fp32"}
    if "int8-reuse" in mining_opts:
        out["mining_ratio_int8_same_weights"] = _med(
            r["mining"]["fp32"]["total"] / r["mining"]["int8-reuse"]["score_again"] for r in rounds)
    out["train_ratio"] = {o: _med(r["train"]["fp32"]["total"] / r["train"][o]["total"] for r in rounds)
                          for o in train_opts if o != "fp32"}
    out["train_fwd_bwd_ratio"] = {o: _med(r["train"]["fp32"]["fwd_bwd"] / r["train"][o]["fwd_bwd"] for r in rounds)
                                  for o in train_opts if o != "fp32"}
    steps = {}
    for m in mining_opts:
        for t in train_opts:
            if m == "fp32" and t == "fp32":
                continue
            steps[f"{m}+{t}"] = _med((r["mining"]["fp32"]["total"] + r["train"]["fp32"]["total"])
                                     / (r["mining"][m]["total"] + r["train"][t]["total"]) for r in rounds)
    out["step_ms_fp32"] = 1e3 * _med(r["mining"]["fp32"]["total"] + r["train"]["fp32"]["total"] for r in rounds)
    out["mining_fraction_fp32"] = _med(r["mining"]["fp32"]["total"]
                                       / (r["mining"]["fp32"]["total"] + r["train"]["fp32"]["total"]) for r in rounds)
    out["step_ratios"] = steps
    best = max(steps, key=steps.get) if steps else None
    out["best_step"] = {"option": best, "ratio": steps[best]} if best else None
    out["mining_overlap"] = {o: {"median": _med(r["overlap"][o] for r in rounds),
                                 "min": float(min(r["overlap"][o] for r in rounds))}
                             for o in mining_opts if o != "fp32"}
    out["mining_score_rel_err"] = {o: _med(r["score_err"][o] for r in rounds) for o in mining_opts if o != "fp32"}
    if st["grads"]:
        names = st["grads"][0].keys()
        out["grad_rel_err"] = {n: {p: _med(g[n][p] for g in st["grads"]) for p in st["grads"][0][n]} for n in names}
    return out


# ============================================================================ bf16 backward on oneDNN

_DNNL_PROBE = """
import sys, warnings
sys.path.insert(0, {repo!r})
warnings.filterwarnings("ignore")
import mxnet as mx, numpy as np
from mxnet import autograd
from online.network import NetSpec
from online.trunk_precision import symbol_block
from tools.bench_pretrain_precision import _amp_bf16, _symbols
spec = NetSpec(conv_channels=(16, 32, 64), fc_width=64)
conv, _ = _symbols(spec, "exact", dropout=False, fix_lrn=False)
conv = _amp_bf16(conv, lrn_fp32=True)  # the "bf16" training option's conv1-3
rng = np.random.default_rng(0)
shapes = dict(zip(conv.list_arguments(), conv.infer_shape(data=(8, 3, 107, 107))[0]))
net = symbol_block(conv, {{n: mx.nd.array(rng.normal(0, 0.05, s)) for n, s in shapes.items() if n != "data"}},
                   mx.cpu())
x = mx.nd.array(rng.integers(0, 256, (8, 3, 107, 107)), dtype="float32")
with autograd.record():
    net(x).sum().backward()
mx.nd.waitall()
print("PROBE-START", flush=True)
with autograd.record():
    loss = net(x).sum()
loss.backward()
mx.nd.waitall()
print("PROBE-END", flush=True)
"""


def dnnl_bf16_backward() -> dict:
    """Which oneDNN primitives the backward of a bf16 (AMP, LRN fp32) conv1-3 runs, from
    DNNL_VERBOSE in a subprocess (oneDNN reads it once, at load): {op/prop_kind: [impl data-type]}."""
    import os
    env = dict(os.environ, DNNL_VERBOSE="1", MKLDNN_VERBOSE="1")
    proc = subprocess.run([sys.executable, "-c", _DNNL_PROBE.format(repo=str(REPO))], env=env,
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    lines = proc.stdout.split("PROBE-START", 1)[-1].split("PROBE-END", 1)[0].splitlines()
    seen: dict = {}
    for line in lines:
        f = line.split(",")
        if len(f) < 7 or f[0] not in ("dnnl_verbose", "mkldnn_verbose") or f[1] != "exec":
            continue
        op, impl, prop, desc = f[3], f[4], f[5], f[6]
        if op == "reorder" or "backward" not in prop:
            continue
        dtype = desc.split("::", 1)[0].split("_")[-1]  # "src_bf16::..." -> bf16
        seen.setdefault(f"{op} {prop}", set()).add(f"{impl} {dtype}")
    out = {k: sorted(v) for k, v in sorted(seen.items())}
    conv_bwd = [v for k, vs in out.items() if k.startswith("convolution backward") for v in vs]
    return {"primitives": out, "conv_backward_bf16": bool(conv_bwd) and all(v.endswith("bf16") for v in conv_bwd)}


# ============================================================================ CLI


def bench_pretrain_precision(args) -> int:
    from online.threads import set_threads
    threads = set_threads(args.threads)
    from pretrain.config import MODES, load
    modes = [m.strip() for m in args.mode.split(",") if m.strip()]
    if not modes or any(m not in MODES for m in modes) or len(set(modes)) != len(modes):
        raise SystemExit(f"mdnet-bench pretrain-precision: --mode takes distinct values of {', '.join(MODES)}")
    if args.rounds < 1:
        raise SystemExit("mdnet-bench pretrain-precision: --rounds must be at least 1")
    train = _options(args.train, TRAIN_OPTIONS, "train", "fp32")
    mining = _options(args.mining, MINING_OPTIONS, "mining", "fp32")
    cfg = load(args.config, args.overrides)
    from online.trunk_precision import REQUIRED_FLAGS, cpu_flags
    flags = cpu_flags()
    missing = [dt for dt, need in REQUIRED_FLAGS.items() if not flags.intersection(need)]
    if missing:
        print(f"mdnet-bench pretrain-precision: warning: this CPU lacks native {', '.join(missing)} "
              f"(oneDNN emulates it): the ratios say nothing about a CPU that has it", file=sys.stderr)
    log = (lambda s: print(s, file=sys.stderr, flush=True))
    t0 = time.perf_counter()
    out = measure(cfg, modes, args.rounds, args.weights, args.data, train, mining, args.calib, args.grad_rounds, log)
    out.update(config=args.config, overrides=list(args.overrides), threads=threads, rounds=args.rounds,
               native=[dt for dt in REQUIRED_FLAGS if dt not in missing], wall_s=time.perf_counter() - t0)
    if not args.no_dnnl_check:
        out["bf16_backward"] = dnnl_bf16_backward()
    if args.json:
        print(json.dumps(out, indent=1, sort_keys=True))
        return 0
    _print(out)
    return 0


def _print(out: dict) -> None:
    print(f"pretrain precision: {out['config']}{' ' + ' '.join(out['overrides']) if out['overrides'] else ''}; "
          f"widths {out['spec']['conv_channels']}/{out['spec']['fc_width']}, {out['samples_per_step']} samples/step, "
          f"pool {out['mining_pool']}, {out['threads']} thread(s), median of {out['rounds']} rounds")
    print(f"weights: {out['weights']}; data: {out['data']}")
    for mode, m in out["modes"].items():
        print(f"\n{mode} mode (fp32 step {m['step_ms_fp32']:.0f} ms, mining {m['mining_fraction_fp32']:.0%} of it)")
        for o, v in m["mining_ms"].items():
            ov = m["mining_overlap"].get(o, {})
            extra = "" if o == "fp32" else (f"  {m['mining_ratio'][o]:.2f}x  overlap {ov['median']:.3f} "
                                            f"(min {ov['min']:.3f})  score err {m['mining_score_rel_err'][o]:.4f}")
            parts = ", ".join(f"{k} {t:.0f}" for k, t in v.items() if k != "total")
            print(f"  mining {o:>15}: {v['total']:8.0f} ms{' (' + parts + ')' if parts else ''}{extra}")
        if "mining_ratio_int8_same_weights" in m:
            print(f"  mining int8 with unchanged weights (second call): {m['mining_ratio_int8_same_weights']:.2f}x")
        for o, v in m["train_ms"].items():
            extra = "" if o == "fp32" else f"  {m['train_ratio'][o]:.2f}x"
            print(f"  train  {o:>15}: {v['total']:8.0f} ms (fwd+bwd {v['fwd_bwd']:.0f}, "
                  f"update {v['update']:.0f}){extra}")
        for name, e in m.get("grad_rel_err", {}).items():
            print(f"  grad rel err {name:>16}: " + ", ".join(f"{k} {v:.3g}" for k, v in e.items()))
        best = m["best_step"]
        if best:
            print(f"  best whole step: {best['option']} {best['ratio']:.2f}x fp32")
    if "bf16_backward" in out:
        print(f"\nbf16 backward on oneDNN: {json.dumps(out['bf16_backward'])}")
