"""mdnet-bench pretrain-precision: would bf16 or int8 speed up a pretraining step on a oneDNN CPU?

    mdnet-bench pretrain-precision --json                  # real-cpu recipe, exact and fast mode
    mdnet-bench pretrain-precision --weights runs/real-cpu/checkpoints/latest --rounds 7

The tracker runs conv1-3 in bf16 or int8 for inference (online/trunk_precision.py). A pretraining
step is two passes over the same shared trunk (pretrain/trainer.py `run_step`): the MINING pass
(inference: the negative pool through conv1-3 + fc4-fc6, keep the `sampling.neg` hardest) and the
TRAINING pass (forward + backward of 32 positives + those negatives, then clip + SGD update). This
measures both at the config's shapes (default cluster/configs/real-cpu.yaml: VGG-M widths; exact
mode = 128 crops of 107 px trained, a 1024-crop pool mined in batches of 256; fast mode = the
4-frame region batch, pool and training RoIs pooled from its conv3 maps), on batches made by the
pretraining data path itself (pretrain/minibatch.py `prepare_step`, on the config's data, or on
synthetic sequences when that is missing), in ONE process: every round runs every option on the
round's batch, in an order rotated each round, so a change of load on a shared machine hits all
options alike; figures are medians over rounds, ratios are medians of per-round fp32 / option.

What a low precision must pay for in training, and is timed here as part of its step:
- weights change every step. Mining in bf16 (`trunk_precision.convert(block, "bf16")`: the tracker's
  graph, conv+ReLU bf16, LRN fp32, weights stored in bf16) recasts the new fp32 weights into its bf16 copies every step
  (`recast`). Mining in int8 cannot refresh weights in place: oneDNN's quantized convolutions keep
  the weights they quantized at their first call (a `set_data` of new weights is ignored; checked),
  so every step rebuilds the quantized graph (quantize_graph + calib_graph + a new SymbolBlock,
  whose first call creates its oneDNN primitives): `int8-recal` also recalibrates the activation
  ranges on the step's pool (64 crops, or one region in fast mode) as the tracker does on its first
  frame; `int8-reuse` takes the previous step's ranges and skips that pass.
- training in bf16 keeps fp32 master weights (the optimizer, clipping and momentum stay fp32):
  MXNet AMP `convert_symbol(target_dtype="bfloat16", cast_optional_params=False)` inserts casts of
  the weights into every forward; conv and FC forward AND backward then run on oneDNN's bf16 kernels
  (`bf16_backward` in the output: the oneDNN primitives a bf16 backward runs, read from
  DNNL_VERBOSE in a subprocess). `bf16` keeps LRN in fp32 (as the tracker does); `bf16-amp` is
  AMP's default lists (LRN in bf16), i.e. what `amp.convert_hybrid_block` or `amp.init()` give.

Mining is a selection, so its error is reported as what it changes: `mining_overlap`, the fraction
of the fp32 pass's hardest negatives that the option picks too (and the raw scores' relative error).
Training's error is the relative L2 error of each shared parameter's gradient against fp32 on the
same batch and weights (dropout off, so both see the same function).

MXNet 1.9.1's oneDNN backward of LRN followed by pooling is wrong (`grad_rel_err.fp32_as_trained`):
the gradients of conv1 and conv2 it returns disagree with finite differences and with the same
graph run without oneDNN (MXNET_MKLDNN_ENABLED=0) by about 100 %, in every execution mode
(imperative, hybridized, static or not); conv3 and the fc layers are exact. Forward values are
right. A reshape (identity) between each LRN and what follows it makes MXNet hand pooling's
gradient to LRN's backward in the plain layout and the gradients come out right (`_fix_lrn_backward`;
checked against finite differences in tests/tools/test_bench_pretrain_precision.py). The gradient
errors of the low precisions are therefore measured on graphs with that fix, against fp32 with the
fix; `train_ms.fp32-fixed` is what the fix costs. Timings otherwise use the graph as pretraining
runs it.

Whole-step ratios `step_ratios["MINING+TRAIN"]` = (fp32 mining + fp32 training) / (that option's
mining + its training), per round, median: this leaves out data wait, allreduce and validation,
which no precision changes, so the real step gains less than this.
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

MINING_OPTIONS = ("fp32", "bf16", "int8-recal", "int8-reuse")
TRAIN_OPTIONS = ("fp32", "fp32-fixed", "bf16", "bf16-amp")
DEFAULT_TRAIN = ("fp32", "fp32-fixed", "bf16")
SHARED = ("conv1", "conv2", "conv3", "fc4", "fc5")


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
                   help="trunk weights: a weight file (.h5), a pretraining checkpoint folder (its trunk and the "
                        "domains' fc6 branches) or random:SEED (default: models/mdnet-real-cpu.h5 when its widths "
                        "are the config's, else random:0; fc6 branches then get the paper init)")
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


class _LrnCopy:
    """The symbol namespace with every LRN followed by a reshape to its own shape (see the module
    docstring: it makes oneDNN's LRN backward get its input gradient in the plain layout)."""

    def __init__(self, F):
        self._F = F

    def __getattr__(self, name):
        return getattr(self._F, name)

    def LRN(self, *args, **kw):  # noqa: N802 (MXNet's op name)
        return self._F.reshape(self._F.LRN(*args, **kw), shape=(0, 0, 0, 0))


def _fix_lrn_backward(convs) -> None:
    """Make a ConvStage's graph compute correct conv1/conv2 gradients on oneDNN (instance only)."""
    from online.network import ConvStage

    def feature_map(F, x, conv3=None):
        return ConvStage.feature_map(convs, _LrnCopy(F), x, conv3)
    convs.feature_map = feature_map


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
    trunk = Trunk(sp)
    if fix_lrn:
        _fix_lrn_backward(trunk.convs)
    conv = FeatureMap(trunk.convs) if mode == "fast" else trunk.convs
    head = _head_block(trunk.fcs, make_head(sp, "fc6"))
    data = mx.sym.var("data")
    return mx.sym.Cast(conv(data), dtype="float32"), mx.sym.Cast(head(data), dtype="float32")


def _amp_bf16(sym, lrn_fp32: bool):
    """AMP bf16 graph of `sym` with fp32 parameters (cast inside the graph at every call)."""
    from mxnet.contrib import amp
    from mxnet.contrib.amp.amp import bfloat16
    fp32_ops = amp.list_fp32_ops(bfloat16) + (["LRN"] if lrn_fp32 else [])
    return amp.convert_symbol(sym, target_dtype="bfloat16", fp32_ops=fp32_ops, data_names=["data"],
                              cast_optional_params=False)


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
    (a list of NDArrays) or built with given activation `ranges` (name -> (min, max)) and no
    calibration pass. Same graph and same numbers as int8_symbol for the same ranges."""
    import mxnet as mx
    from mxnet.contrib.quantization import calib_graph, quantize_graph

    from online.trunk_precision import _first_conv, _global_max, fp32_symbol, symbol_block
    sym, params = fp32_symbol(block)
    fused = sym.get_backend_symbol("MKLDNN_QUANTIZE")
    qsym, _, _, collector = quantize_graph(
        fused, params, {}, ctx=ctx, excluded_sym_names=_first_conv(fused), calib_mode="naive",
        quantized_dtype="auto", quantize_mode="full", quantize_granularity="channel-wise")
    if ranges is None:
        internals = fused.get_internals()
        names = [n for n in internals.list_outputs() if n in set(collector.include_layer)]
        outs = [r for n in names for r in (-_global_max(-internals[n]), _global_max(internals[n]))]
        probe = symbol_block(mx.sym.Group(outs), params, ctx, static_shape=False)
        lo = {n: np.inf for n in names}
        hi = {n: -np.inf for n in names}
        for x in calib:
            found = [float(v.asscalar()) for v in probe(x.as_in_context(ctx))]
            for k, n in enumerate(names):
                lo[n], hi[n] = min(lo[n], found[2 * k]), max(hi[n], found[2 * k + 1])
        ranges = {n: (lo[n], hi[n]) for n in names}
    collector.min_max_dict = dict(ranges)
    qsym, qparams, _ = calib_graph(qsym, params, {}, collector, calib_mode="naive", quantized_dtype="auto",
                                   logger=None)
    return qsym.get_backend_symbol("MKLDNN_QUANTIZE"), qparams, ranges


def _recast(net, block) -> None:
    """Copy `block`'s current fp32 weights into the bf16 SymbolBlock `net` (bf16 where it keeps bf16)."""
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
        ckpt_dir = ckpt.find_latest(path) if not (path / "meta.json").exists() else path
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
            csym, hsym = _symbols(spec, mode, dropout=True, fix_lrn=opt != "bf16-amp" and opt != "bf16")
            if opt.startswith("bf16"):
                csym, hsym = (_amp_bf16(s, lrn_fp32=opt == "bf16") for s in (csym, hsym))
            train_nets[opt] = _TrainNet(csym, hsym, master, d0, ctx, mode, cfg.optim)
        grad_nets = {}
        for name, fix, dt in (("ref", True, None), ("fp32_as_trained", False, None), ("bf16", True, "bf16"),
                              ("bf16_as_trained", False, "bf16"), ("bf16-amp", True, "bf16-amp")):
            if dt == "bf16-amp" and "bf16-amp" not in train_opts:
                continue
            csym, hsym = _symbols(spec, mode, dropout=False, fix_lrn=fix)
            if dt:
                csym, hsym = (_amp_bf16(s, lrn_fp32=dt == "bf16") for s in (csym, hsym))
            vals = {n: master.value(n, d0) for s in (csym, hsym) for n in s.list_arguments() if n != "data"}
            grad_nets[name] = (TP.symbol_block(csym, vals, ctx, static_shape=mode == "exact"),
                               TP.symbol_block(hsym, vals, ctx))
        bf16_mine = TP.convert(conv_block, "bf16", ctx, static_shape=mode == "exact") if "bf16" in mining_opts else None
        per_mode[mode] = dict(conv_block=conv_block, train_nets=train_nets, grad_nets=grad_nets, bf16_mine=bf16_mine,
                              rounds=[], grads=[], ranges=None)

    def mine_fp32(batch, d):
        t0 = time.perf_counter()
        s = model.score_fast(batch.regions, batch.neg, d, mb) if batch.fast else model.score(batch.neg, d, mb)
        return s, {"total": time.perf_counter() - t0}

    def mine_bf16(st, batch, d):
        t0 = time.perf_counter()
        _recast(st["bf16_mine"], st["conv_block"])
        mx.nd.waitall()
        t1 = time.perf_counter()
        s = _mine_with(st["bf16_mine"], model, batch, d, mb, ctx)
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
        return s, {"refresh": t1 - t0, "score": t2 - t1, "total": t2 - t0}

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
                elif opt == "bf16":
                    scores[opt], rec["mining"][opt] = mine_bf16(st, batch, d)
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
conv = _amp_bf16(conv, lrn_fp32=True)
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
            extra = "" if o == "fp32" else (f"  {m['mining_ratio'][o]:.2f}x  overlap {m['mining_overlap'][o]['median']:.3f} "
                                            f"(min {m['mining_overlap'][o]['min']:.3f})  score err "
                                            f"{m['mining_score_rel_err'][o]:.4f}")
            parts = ", ".join(f"{k} {t:.0f}" for k, t in v.items() if k != "total")
            print(f"  mining {o:>10}: {v['total']:8.0f} ms{' (' + parts + ')' if parts else ''}{extra}")
        for o, v in m["train_ms"].items():
            extra = "" if o == "fp32" else f"  {m['train_ratio'][o]:.2f}x"
            print(f"  train  {o:>10}: {v['total']:8.0f} ms (fwd+bwd {v['fwd_bwd']:.0f}, update {v['update']:.0f}){extra}")
        for name, e in m.get("grad_rel_err", {}).items():
            print(f"  grad rel err {name:>16}: " + ", ".join(f"{k} {v:.3g}" for k, v in e.items()))
        best = m["best_step"]
        if best:
            print(f"  best whole step: {best['option']} {best['ratio']:.2f}x fp32")
    if "bf16_backward" in out:
        print(f"\nbf16 backward on oneDNN: {json.dumps(out['bf16_backward'])}")
