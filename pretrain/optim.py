"""Optimizers, learning rates and optimizer state as plain arrays.

Two kinds of trainer, because the two kinds of parameter live differently:
- shared (conv1-fc5): one `distributed.SharedTrainer`; its gradients are averaged over ranks,
  clipped by global norm, then applied; every rank applies the same update.
- branches (fc6 per domain): one plain `gluon.Trainer(kvstore=None)` per owned branch, stepped only
  when its domain is trained, so an inactive branch gets no update, no weight decay and no
  momentum decay (MDNet's behaviour).

All SGD with momentum 0.9 and weight decay 5e-4 (config). The learning rate of a parameter is
base lr x schedule factor x its layer multiplier (conv x1, fc x10) x, for the shared parameters
only, the world-size scale chosen by `optim.lr_scaling` (see pretrain/config.py for why).

Momentum buffers are read and written as numpy arrays (checkpoints), never through
`Trainer.save_states`, which pickles.
"""
from __future__ import annotations

import math

import mxnet as mx
import numpy as np
from mxnet import gluon

from pretrain.distributed import SharedTrainer


def world_lr_scale(kind: str, world_size: int) -> float:
    if kind == "none":
        return 1.0
    if kind == "linear":
        return float(world_size)
    if kind == "sqrt":
        return math.sqrt(world_size)
    raise ValueError(f"optim.lr_scaling {kind!r}: expected none, linear or sqrt")


def lr_factor(progress: float, total_cycles: float, sched) -> float:
    """Schedule factor at `progress` cycles into training (a float; sched: ScheduleConfig)."""
    if sched.kind == "constant":
        f = 1.0
    elif sched.kind == "step":
        f = sched.gamma ** sum(1 for m in sched.milestones if progress >= m)
    elif sched.kind == "cosine":
        t = min(max(progress / total_cycles, 0.0), 1.0)
        f = sched.final_factor + (1.0 - sched.final_factor) * 0.5 * (1.0 + math.cos(math.pi * t))
    else:
        raise ValueError(f"schedule.kind {sched.kind!r}: expected constant, step or cosine")
    if sched.warmup_cycles > 0 and progress < sched.warmup_cycles:
        f *= progress / sched.warmup_cycles
    return f


def _sgd_params(optim) -> dict:
    return {"learning_rate": optim.lr, "momentum": optim.momentum, "wd": optim.weight_decay}


def shared_trainer(params: dict, optim) -> SharedTrainer:
    return SharedTrainer(params, "sgd", _sgd_params(optim), prefix="shared.")


def branch_trainer(params: dict, optim) -> gluon.Trainer:
    return gluon.Trainer(params, "sgd", _sgd_params(optim), kvstore=None)


def trainer_param_names(trainer: gluon.Trainer) -> list[str]:
    return [p.name for p in trainer._params]


def get_momentum(trainer: gluon.Trainer) -> dict:
    """Parameter name -> momentum buffer (zeros before the first update)."""
    updater = trainer._updaters[0]
    out = {}
    for i, p in enumerate(trainer._params):
        state = updater.states.get(i)
        out[p.name] = state.asnumpy() if state is not None else np.zeros(p.shape, np.float32)
    return out


def set_momentum(trainer: gluon.Trainer, momentum: dict, ctx) -> None:
    """Install momentum buffers by parameter name (all names must be present)."""
    updater = trainer._updaters[0]
    names = trainer_param_names(trainer)
    missing = [n for n in names if n not in momentum]
    if missing:
        raise KeyError(f"momentum missing for {missing}")
    for i, (name, p) in enumerate(zip(names, trainer._params)):
        m = np.asarray(momentum[name], dtype=np.float32)
        if m.shape != tuple(p.shape):
            raise ValueError(f"momentum of {name}: shape {m.shape}, parameter {tuple(p.shape)}")
        updater.states[i] = mx.nd.array(m, ctx=ctx)
        updater.states_synced[i] = True
