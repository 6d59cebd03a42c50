"""Online training of one target's fc4-fc6 (py-MDNet's `train()`), at the hardware's speed.

Each iteration: a minibatch of `batch_pos` positives + the `batch_neg` hardest of `batch_neg_cand`
negatives (hardness = the current net's raw fc6 positive output, inference mode), walking through
concatenated random permutations of each pool; one SGD step (momentum, weight decay) on the
minibatch's mean loss, its gradient clipped to a global norm (py-MDNet's clip_grad_norm_).

Where an iteration's time went, measured (`mdnet-bench track --profile`: each op of a 15-iteration
update on OTB Crossing with the shipped weights, 2 threads; the table is in docs/benchmarks.md), and
what this module does about it:

- Scoring the mining pool (1024 x 4608 -> 512 -> 512 -> 2) is half of it. It runs as ONE forward
  of a graph planned for exactly `batch_neg_cand` rows (not `batch_test` chunks: the same numbers,
  bitwise, one call), or in bf16 (`mining_dtype`, oneDNN's AVX512-BF16 GEMMs: the pool is cast once
  per update, the weights once per iteration; only which negatives are picked can change).
- gluon.Trainer.step cost 12-15 ms per iteration: its aggregated update kernel is slow on the
  CPU; `sgd_mom_update` per parameter gives the same numbers in 5 ms (class SGD).
- clip_global_norm multiplied every gradient by its scale even when the scale is 1: the norm is
  computed the same way, and the multiplication runs only when it clips.
- No per-parameter waits: one synchronisation per iteration (the mining scores reach the host).

Everything stays bitwise the same as the Trainer-based loop at `mining_dtype: fp32`
(tests/online/test_online_training.py).
"""
from __future__ import annotations

import time

import mxnet as mx
import numpy as np
from mxnet import autograd

from online.mining import select_hardest


def perm_stream(rng: np.random.Generator, n: int, need: int) -> np.ndarray:
    """Concatenated permutations of range(n), at least `need` long (py-MDNet's train())."""
    parts, have = [], 0
    while have < need:
        parts.append(rng.permutation(n))
        have += n
    return np.concatenate(parts)


def _bf16():
    from mxnet.contrib.amp.amp import bfloat16
    return bfloat16


class SGD:
    """SGD with momentum and weight decay over a fixed list of parameters, with MXNet's own update
    kernel per parameter (`sgd_mom_update`: bitwise the numbers of gluon.Trainer's aggregated
    `multi_sgd_mom_update`, which measured 15 ms for these 2.6 M weights against 5 ms).
    `reset(lr)` starts a new optimiser (zero momentum), as py-MDNet does between the first-frame
    training and the online updates."""

    def __init__(self, params: list, momentum: float, weight_decay: float, ctx):
        self.params = params
        self.momentum = float(momentum)
        self.wd = [float(weight_decay) * p.wd_mult for p in params]
        self.states = [mx.nd.zeros(p.shape, ctx=ctx, dtype=p.dtype) for p in params]
        self.ctx = ctx
        self.lrs = None

    def reset(self, lr: float) -> None:
        for s in self.states:
            s[:] = 0
        self.lrs = [float(lr) * p.lr_mult for p in self.params]

    def step(self) -> None:
        for p, mom, lr, wd in zip(self.params, self.states, self.lrs, self.wd):
            w = p.data(self.ctx)
            mx.nd.sgd_mom_update(w, p.grad(self.ctx), mom, out=w, lr=lr, wd=wd, momentum=self.momentum,
                                 rescale_grad=1.0)


def clip_global_norm(grads: list, max_norm: float) -> float:
    """Scale `grads` so their global 2-norm is at most max_norm; returns the norm.

    The norm and the scale are computed exactly as gluon.utils.clip_global_norm computes them (so
    the same float32 numbers come out); the scale reaches the host, and the gradients are
    multiplied only when it is below 1 (a multiplication by 1.0 changes nothing)."""
    sq = [mx.nd.dot(g.reshape((-1,)), g.reshape((-1,))) for g in grads]
    total = mx.nd.sqrt(mx.nd.add_n(*sq))
    scale = max_norm / (total + 1e-8)
    scale = mx.nd.min(mx.nd.concat(scale, mx.nd.ones(1, ctx=scale.context), dim=0))
    if float(scale.asscalar()) < 1.0:
        for g in grads:
            g *= scale
    return float(total.asscalar())


class PoolScorer:
    """Raw fc6 positive scores of mining-pool rows, in inference mode (no dropout).

    fp32: the target's inference graph, planned for exactly `rows` rows (static shape).
    bf16: fc4 and fc5 as oneDNN bf16 GEMMs (ReLU in bf16), fc6 in fp32; the pool is cast to bf16
    once per update (`prepare`), the weights once per call (they change every iteration).
    """

    def __init__(self, head, params: dict, rows: int, dtype: str, ctx):
        if dtype not in ("fp32", "bf16"):
            # `auto` is resolved by the tracker (trunk_precision.resolve_mining_dtype) before this.
            raise ValueError(f"mining precision must be fp32 or bf16 here, got {dtype!r}")
        self.dtype = dtype
        self.head = head
        self.ctx = ctx
        self.rows = rows
        # fc4-fc6, or fc5-fc6 when fc4 is frozen (TrackerConfig.online_fc4: frozen; rows are fc4 outputs).
        self.fc = [(params[f"{n}_weight"], params[f"{n}_bias"]) for n in ("fc4", "fc5", "fc6")
                   if f"{n}_weight" in params]

    def prepare(self, neg: mx.nd.NDArray) -> mx.nd.NDArray:
        """The pool as the scorer reads it (bf16: one cast per update)."""
        return neg if self.dtype == "fp32" else mx.nd.amp_cast(neg, dtype=_bf16())

    def __call__(self, cand: mx.nd.NDArray) -> np.ndarray:
        if self.dtype == "fp32":
            return self.head(cand)[:, 1].asnumpy()
        x = cand
        for w, b in self.fc[:-1]:
            w16 = mx.nd.amp_cast(w.data(self.ctx), dtype=_bf16())
            b16 = mx.nd.amp_cast(b.data(self.ctx), dtype=_bf16())
            x = mx.nd.Activation(mx.nd.FullyConnected(x, w16, b16, num_hidden=w.shape[0]), act_type="relu")
        w, b = self.fc[-1]
        x = mx.nd.amp_cast(x, dtype="float32")
        return mx.nd.FullyConnected(x, w.data(self.ctx), b.data(self.ctx), num_hidden=2)[:, 1].asnumpy()


class _OpClock:
    """Per-op wall times for a profile: waits for the engine after each op; does nothing when
    `times` is None (the tracker's normal run)."""

    def __init__(self, times: dict | None):
        self.times = times
        self.t = time.perf_counter()

    def __call__(self, name: str) -> None:
        if self.times is None:
            return
        mx.nd.waitall()
        now = time.perf_counter()
        self.times.setdefault(name, []).append(now - self.t)
        self.t = now


class OnlineTrainer:
    """Trains a target's fc4-fc6 (`TargetHead` in train form, sharing parameters with `mine_head`,
    the inference form planned for `batch_neg_cand` rows) on cached conv3 features."""

    def __init__(self, train_head, mine_head, cfg, spec, ctx, timer):
        self.cfg = cfg
        self.ctx = ctx
        self.timer = timer
        self.head = train_head
        params = train_head.collect_params()
        self.params = list(params.values())
        short = {p.name[len(train_head.prefix):]: p for p in self.params}
        self.sgd = SGD(self.params, cfg.momentum, cfg.weight_decay, ctx)
        self.scorer = PoolScorer(mine_head, short, cfg.batch_neg_cand, cfg.mining_dtype, ctx)
        self.keep = 1.0 - spec.dropout
        self.width = spec.fc_width
        n = cfg.batch_pos + cfg.batch_neg
        self.labels = mx.nd.array(np.r_[np.ones(cfg.batch_pos), np.zeros(cfg.batch_neg)], ctx=ctx)
        self.m4 = mx.nd.zeros((n, spec.fc_width), ctx=ctx)
        self.m5 = mx.nd.zeros((n, spec.fc_width), ctx=ctx)
        # Profiling only (mdnet-bench track --profile): op name -> list of seconds, each op
        # synchronised (which serialises the loop, so it is a little slower than unprofiled).
        self.op_times: dict | None = None
        self._buffers: dict = {}

    def _buffer(self, name: str, shape: tuple, dtype) -> mx.nd.NDArray:
        buf = self._buffers.get(name)
        if buf is None or buf.shape != shape or buf.dtype != dtype:
            buf = self._buffers[name] = mx.nd.zeros(shape, ctx=self.ctx, dtype=dtype)
        return buf

    def reset(self, lr: float) -> None:
        """A fresh optimiser (zero momentum) with learning rate `lr` (fc6: x lr_mult_fc6)."""
        self.sgd.reset(lr)

    def train(self, pos: mx.nd.NDArray, neg: mx.nd.NDArray, iterations: int, rng: np.random.Generator):
        cfg, ctx = self.cfg, self.ctx
        bp, bn, bc = cfg.batch_pos, cfg.batch_neg, cfg.batch_neg_cand
        keep = self.keep
        t_host = time.perf_counter()
        pos_np = perm_stream(rng, pos.shape[0], bp * iterations)
        neg_np = perm_stream(rng, neg.shape[0], bc * iterations)
        pos_idx = mx.nd.array(pos_np, ctx=ctx, dtype="int32")
        neg_idx = mx.nd.array(neg_np, ctx=ctx, dtype="int32")
        host = time.perf_counter() - t_host
        t0 = time.perf_counter()
        pool = self.scorer.prepare(neg) if bc > bn else neg
        if self.op_times is not None:
            pool.wait_to_read()
            self.op_times.setdefault("per update: the pool as the scorer reads it", []).append(time.perf_counter() - t0)
        mine = time.perf_counter() - t0
        net = 0.0
        grads = [p.grad(ctx) for p in self.params]
        ops = self.op_times
        mark = _OpClock(ops)
        for it in range(iterations):
            t0 = time.perf_counter()
            # Inverted dropout masks (values 0 or 1/keep), from this target's generator.
            self.m4[:] = (rng.random((bp + bn, self.width), dtype=np.float32) < keep) * np.float32(1.0 / keep)
            self.m5[:] = (rng.random((bp + bn, self.width), dtype=np.float32) < keep) * np.float32(1.0 / keep)
            mark("dropout masks (numpy, copied in)")
            t1 = time.perf_counter()
            # Gathers write into buffers allocated once: a fresh 19 MB output per iteration cost
            # twice the copy itself. The minibatch is [positives; hardest negatives].
            x = self._buffer("x", (bp + bn, pos.shape[1]), pos.dtype)
            mx.nd.take(pos, pos_idx[it * bp:(it + 1) * bp], out=x[:bp])
            if bc > bn:
                # Hard negative mining: score the pool in inference mode, keep the top batch_neg.
                cand = mx.nd.take(pool, neg_idx[it * bc:(it + 1) * bc],
                                  out=self._buffer("cand", (bc, pool.shape[1]), pool.dtype))
                mark("gather positives + mining pool")
                scores = self.scorer(cand)
                mark(f"mining: score {bc} negatives ({self.scorer.dtype}), to host")
                hard = select_hardest(scores, bn)
                mx.nd.take(neg, mx.nd.array(neg_np[it * bc + hard], ctx=ctx, dtype="int32"), out=x[bp:])
            else:
                mx.nd.take(neg, neg_idx[it * bc:(it + 1) * bc], out=x[bp:])
            mark("select the hardest, gather the minibatch")
            t2 = time.perf_counter()
            with autograd.record():
                loss = self.head(x, self.m4, self.m5, self.labels)
            mark("forward (train graph)")
            loss.backward()
            mark("backward")
            if cfg.grad_clip > 0:
                clip_global_norm(grads, cfg.grad_clip)
                mark("global-norm clip")
            self.sgd.step()
            mark("SGD step")
            host += t1 - t0
            mine += t2 - t1
            net += time.perf_counter() - t2
        t0 = time.perf_counter()
        mx.nd.waitall()  # the last step's update, so the time is this update's
        net += time.perf_counter() - t0
        self.timer.net_s += net + mine
        self.timer.add("train_host_s", host)
        self.timer.add("train_mining_s", mine)
        self.timer.add("train_s", net + mine + host)  # all of online training (first frame and updates)
