"""Per-op profile of one online update (`mdnet-bench track --profile`).

The tracker is initialised on the sequence's first frame; then its first-frame positives and a
long-term update's negative pool (the first frame's update negatives repeated `n_frames_short`
times: 20 x 200 = 4,000 rows, the size of a real pool) train for `maxiter_update` iterations, as a
long-term update does, with every op synchronised and timed (online.online_training._OpClock).
Medians per iteration over `repeats` updates (after one warm-up); `update_s` is the median wall
time of the same update unprofiled (no per-op waits), the figure the tracker pays.
"""
from __future__ import annotations

import dataclasses
import time

import mxnet as mx
import numpy as np


def profile_update(trunk, cfg, ctx, seq, seed: int, repeats: int = 3) -> dict:
    from online.tracker import MultiTracker

    tracker = MultiTracker(trunk, cfg, ctx, seed=seed)
    tracker.initialize(seq.frame(0), seq.boxes[0][None])
    target = tracker.targets[0]
    pos = target.pos_first
    neg = mx.nd.concat(*([target.neg_mem[0]] * cfg.n_frames_short), dim=0)
    trainer = target.trainer
    trainer.reset(cfg.lr_update)
    plain = []
    for k in range(repeats + 1):
        t0 = time.perf_counter()
        trainer.train(pos, neg, cfg.maxiter_update, target.rng)
        if k:
            plain.append(time.perf_counter() - t0)
    trainer.op_times = {}
    for k in range(repeats + 1):
        if k == 1:
            trainer.op_times = {}  # drop the warm-up
        trainer.train(pos, neg, cfg.maxiter_update, target.rng)
    ops = {name: float(np.median(v)) * 1e3 for name, v in trainer.op_times.items()}
    trainer.op_times = None
    per_it = {k: v for k, v in ops.items() if not k.startswith("per update")}
    return {
        "mining_dtype": tracker.cfg.mining_dtype,  # as it ran (`auto` resolved)
        "positives": int(pos.shape[0]), "negatives": int(neg.shape[0]), "iterations": cfg.maxiter_update,
        "update_s": float(np.median(plain)),
        "ms_per_iteration": per_it,
        "ms_per_update": {k: v for k, v in ops.items() if k.startswith("per update")},
        "profiled_ms_per_iteration": float(sum(per_it.values())),
        "repeats": repeats,
    }


def profile_updates(trunk, cfgs, ctx, seq, seed: int, repeats: int = 3) -> dict:
    """One profile per distinct mining_dtype of `cfgs` (the first config's other settings), keyed by
    the precision that ran (`auto` resolved)."""
    out = {}
    for dtype in dict.fromkeys(c.mining_dtype for c in cfgs):
        prof = profile_update(trunk, dataclasses.replace(cfgs[0], mining_dtype=dtype), ctx, seq, seed, repeats)
        out.setdefault(prof["mining_dtype"], prof)
    return out
