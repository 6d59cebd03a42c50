"""The pretraining loop: a thin step (batch -> mine -> loss -> backward -> allreduce -> clip ->
update) and the things around it (logging, epoch metrics, validation, checkpoints) as hooks that
run between steps.

Collectives, in the order every rank issues them (Horovod needs the same sequence everywhere):
setup: one allreduce of outlier counts, then broadcasts of the shared weights and momentum;
each step: one allreduce of the shared gradients; each epoch end: one allreduce of the training
counters, one of the validation counters (when validating); each checkpoint: one barrier; the end:
one allreduce of timings. Whether a hook runs depends only on the step number, which all ranks
share, so they always agree.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon

from online.config import config_to_dict
from online.sequence import DataError
from pretrain import checkpoint as ckpt
from pretrain import distributed as dist
from pretrain import metrics as M
from pretrain.domains import find_domains, prepare_domain
from pretrain.minibatch import prepare_step, select_hardest, validation_samples
from pretrain.model import MultiDomainNet, to_input
from pretrain.optim import (branch_trainer, get_momentum, lr_factor, set_momentum, shared_trainer,
                            world_lr_scale)
from pretrain.outliers import RULES, describe_counts
from pretrain.prefetch import Prefetcher
from pretrain.sharding import StepPlanner, describe_shards, shard_domains, steps_per_cycle

# Streams of the per-step generators: default_rng([seed, rank, step, STREAM]).
_DATA_STREAM, _DROPOUT_STREAM = 1, 2
_VAL_STREAM = 0x7A1
TIMING_KEYS = ("steps", "step_s", "data_wait_s", "mining_s", "net_s", "allreduce_s", "prep_worker_s")


def step_seed(seed: int, rank: int, step: int, stream: int) -> int:
    """A 31-bit seed for MXNet's RNG derived from (seed, rank, step, stream)."""
    return int(np.random.SeedSequence([seed, rank, step, stream]).generate_state(1)[0] & 0x7FFFFFFF)


def device_for(kind: str, world: dist.World):
    """One device per rank: GPU local_rank when there are GPUs (and not told cpu), else the CPU."""
    gpus = mx.context.num_gpus()
    if kind == "gpu" and gpus == 0:
        raise ValueError("runtime.device=gpu but MXNet sees no GPU (is mxnet-cu112 installed?)")
    if kind == "gpu" or (kind == "auto" and gpus > 0):
        return mx.gpu(world.local_rank % gpus)  # Horovod: pin one GPU per local rank
    return mx.cpu()


class Pretrainer:
    def __init__(self, cfg, world: dist.World, out_dir: Path, log: logging.Logger, resume_from=None):
        self.cfg, self.world, self.out, self.log = cfg, world, Path(out_dir), log
        self.resume_from = resume_from
        self.spec = cfg.model.spec()
        self.ctx = device_for(cfg.runtime.device, world)
        self.n_neg_prepared = cfg.mining.pool if cfg.mining.enabled else cfg.sampling.neg
        self.counters = M.zeros()
        self.epoch_time = 0.0  # training seconds of the current epoch so far (resumable)
        self.step_times: list[tuple] = []
        self.grad_norms: list[float] = []  # shared gradient norm before clipping, per step
        self.start_step = 0

    # ======================================================================== setup

    def info(self, msg: str) -> None:
        if self.world.is_main:
            self.log.info(msg)

    def setup(self) -> None:
        cfg, world = self.cfg, self.world
        domains = find_domains(cfg.data, log=self.info)
        small = [d for d in domains if d.train_hint < cfg.data.min_train_frames]
        for d in small:
            self.info(f"data: dropping {d.name}: {d.train_hint} annotated training frames "
                      f"(< data.min_train_frames={cfg.data.min_train_frames})")
        domains = [d for d in domains if d.train_hint >= cfg.data.min_train_frames]
        for i, d in enumerate(domains):
            d.index = i  # re-index after dropping: branch names and shards use 0..K-1
        self.domains = domains
        sizes = [d.train_hint for d in domains]
        # Horovod: shard the domains; every rank computes the same assignment locally.
        self.shards = shard_domains(sizes, world.size)
        self.steps_per_cycle = steps_per_cycle(self.shards)
        self.total_steps = cfg.train.cycles * self.steps_per_cycle
        self.owned = self.shards[world.rank]
        self.info(f"sharding: {len(domains)} domains over {world.size} rank(s) (largest first, by "
                  f"annotated training frames); {self.steps_per_cycle} steps per cycle on every rank, "
                  f"{self.total_steps} steps for {cfg.train.cycles} cycles")
        for line in describe_shards(self.shards, [d.name for d in domains], sizes):
            self.info("sharding: " + line)

        # Outlier filter on the owned domains; per-sequence counts are summed to rank 0 for the log.
        counts = np.zeros((len(domains), len(RULES)))
        for i in self.owned:
            prepare_domain(domains[i], cfg.outliers)
            counts[i] = [domains[i].outlier_counts[r] for r in RULES]
            if len(domains[i].train_frames) == 0:
                raise DataError(f"{domains[i].name}: no training frame left after the outlier filter; "
                                f"list it in data.exclude or loosen the outliers.* settings")
        # Horovod: sum the per-domain counts to every rank (each rank filled only its own domains).
        counts = dist.allreduce_sum_np(counts.reshape(-1), "setup.outliers").reshape(counts.shape)
        for i, d in enumerate(domains):
            self.info("outliers: " + describe_counts(d.name, dict(zip(RULES, counts[i].astype(int))), len(d.sequence)))

        # Model: trunk + this rank's branches.
        self.model = MultiDomainNet(self.spec, {i: domains[i].name for i in self.owned}, self.ctx)
        self.model.initialize(cfg.init, cfg.seed, log=self.info)
        self.model.set_lr_mults(cfg.optim.lr_mult_conv, cfg.optim.lr_mult_fc, cfg.optim.lr_mult_branch)
        self.shared = self.model.shared_params()
        self.shared_trainer = shared_trainer(self.shared, cfg.optim)
        self.branch_trainers = {d: branch_trainer(self.model.branch_params(d), cfg.optim) for d in self.owned}
        self.lr_scale = world_lr_scale(cfg.optim.lr_scaling, world.size)  # Horovod: scale the shared lr
        self.info(f"optim: SGD momentum {cfg.optim.momentum}, wd {cfg.optim.weight_decay}, base lr "
                  f"{cfg.optim.lr:g} (conv x{cfg.optim.lr_mult_conv:g}, fc4-5 x{cfg.optim.lr_mult_fc:g}, "
                  f"fc6 branches x{cfg.optim.lr_mult_branch:g}); "
                  f"shared lr x{self.lr_scale:g} (lr_scaling={cfg.optim.lr_scaling}, {world.size} ranks); "
                  f"clip shared grad norm {cfg.optim.clip_norm:g}; schedule {cfg.schedule.kind}")

        if self.resume_from is not None:
            self._restore(self.resume_from)
        # Horovod: every rank starts from rank 0's shared weights (and momentum).
        dist.broadcast_parameters(self.shared, prefix="shared.")
        mom = get_momentum(self.shared_trainer)
        names = sorted(mom)
        arrays = [mx.nd.array(mom[n], ctx=self.ctx) for n in names]
        dist.broadcast_(arrays, name="shared.momentum")
        set_momentum(self.shared_trainer, {n: a.asnumpy() for n, a in zip(names, arrays)}, self.ctx)

        self.planner = StepPlanner(self.owned, self.steps_per_cycle, cfg.seed, world.rank)
        self.stop_step = self.total_steps
        if cfg.train.stop_at_step > self.start_step:
            self.stop_step = min(self.stop_step, cfg.train.stop_at_step)
        elif cfg.train.stop_at_step > 0:
            # A resumed run inherits the stopped run's config; a stop point already passed is moot.
            self.info(f"train.stop_at_step={cfg.train.stop_at_step} is already done (resuming at step "
                      f"{self.start_step}): running to the end")
        self.prefetch = Prefetcher(self._make_batch, self.start_step, self.stop_step,
                                   cfg.data.workers, cfg.data.prefetch)

    def _restore(self, ckpt_dir: Path) -> None:
        meta = ckpt.read_meta(ckpt_dir)
        names = [d.name for d in self.domains]
        saved = meta["domains"]
        if saved != names:
            missing = sorted(set(saved) - set(names))
            unexpected = sorted(set(names) - set(saved))
            raise ckpt.CheckpointError(
                f"{ckpt_dir}: the checkpoint's domains differ from this config's data: missing here "
                f"{missing[:10] or 'none'}, new here {unexpected[:10] or 'none'}"
                + ("" if missing or unexpected else " (same names, different order)"))
        if meta["model"] != {"conv_channels": list(self.spec.conv_channels), "fc_width": self.spec.fc_width}:
            raise ckpt.CheckpointError(f"{ckpt_dir}: saved with widths {meta['model']}, config has "
                                       f"{list(self.spec.conv_channels)}/{self.spec.fc_width}")
        params, momentum = ckpt.read_shared(ckpt_dir)
        own = self.shared
        if sorted(params) != sorted(own):
            raise ckpt.CheckpointError(f"{ckpt_dir}: shared params {sorted(params)} != model {sorted(own)}")
        for n, p in own.items():
            p.set_data(mx.nd.array(params[n], ctx=self.ctx))
        set_momentum(self.shared_trainer, momentum, self.ctx)
        branches, extras = ckpt.read_branches(ckpt_dir, [self.domains[d].name for d in self.owned])
        for d in self.owned:
            b = branches[self.domains[d].name]
            head = self.model.branches[d]
            head.weight.set_data(mx.nd.array(b["weight"], ctx=self.ctx))
            head.bias.set_data(mx.nd.array(b["bias"], ctx=self.ctx))
            set_momentum(self.branch_trainers[d], {head.weight.name: b["momentum_weight"],
                                                   head.bias.name: b["momentum_bias"]}, self.ctx)
        step = int(meta["step"])
        if meta["world_size"] == self.world.size:
            self.start_step = step
        else:
            # Another world size has another cycle length: continue at the same training progress
            # (in cycles), which is what the lr schedule is defined on.
            progress = step / meta["steps_per_cycle"]
            self.start_step = int(round(progress * self.steps_per_cycle))
        # Epoch counters and times are sums over ranks: the saved totals live on rank 0 from now on
        # (end_epoch divides the summed time by the world size, hence the rescale).
        if self.world.is_main:
            self.counters = extras["counters"].copy()
            self.epoch_time = float(extras["epoch_time_s"]) * self.world.size / meta["world_size"]
        self.info(f"resume: {ckpt_dir} (step {step} of {meta['world_size']} rank(s)) -> starting at step "
                  f"{self.start_step} of {self.total_steps} on {self.world.size} rank(s)")

    # ======================================================================== data

    def _make_batch(self, step: int):
        # Runs in a worker thread: a pure function of (seed, rank, step).
        d = self.planner.domain(step)
        rng = np.random.default_rng([self.cfg.seed, self.world.rank, step, _DATA_STREAM])
        return prepare_step(self.domains[d], step, rng, self.cfg.sampling, self.n_neg_prepared, self.spec)

    # ======================================================================== the step

    def set_lr(self, step: int, d: int) -> float:
        f = lr_factor((step + 1) / self.steps_per_cycle, self.cfg.train.cycles, self.cfg.schedule)
        lr = self.cfg.optim.lr * f
        self.shared_trainer.set_learning_rate(lr * self.lr_scale)
        self.branch_trainers[d].set_learning_rate(lr)
        return lr

    def run_step(self, step: int) -> dict:
        cfg = self.cfg
        t0 = time.perf_counter()
        wait0 = self.prefetch.wait_s
        batch = self.prefetch.get(step)
        t_wait = self.prefetch.wait_s - wait0
        d = batch.domain

        # Hard negative mining: score the pool with the current weights in inference mode (no
        # autograd recording, so dropout is off), keep the hardest.
        t1 = time.perf_counter()
        if cfg.mining.enabled:
            pool_scores = self.model.score(batch.neg, d, cfg.mining.batch)
            hard = select_hardest(pool_scores[:, 1], cfg.sampling.neg)
            neg, neg_frame = batch.neg[hard], batch.neg_frame[hard]
        else:
            neg, neg_frame = batch.neg, batch.neg_frame
        t2 = time.perf_counter()

        n_pos = len(batch.pos)
        x = to_input(np.concatenate([batch.pos, neg]), self.ctx)
        labels = np.concatenate([np.ones(n_pos), np.zeros(len(neg))])
        y = mx.nd.array(labels, ctx=self.ctx)
        lr = self.set_lr(step, d)
        mx.random.seed(step_seed(cfg.seed, self.world.rank, step, _DROPOUT_STREAM))  # dropout masks
        with autograd.record():
            scores = self.model(x, d)
            loss = gluon.loss.SoftmaxCrossEntropyLoss()(scores, y).mean()
        loss.backward()
        mx.nd.waitall()
        t3 = time.perf_counter()
        # Horovod: average the shared gradients over ranks (inside SharedTrainer), then clip the
        # averaged ones only -- identical on every rank, so every rank applies the same update.
        self.shared_trainer.allreduce_grads()
        grads = [self.shared[n].grad() for n in sorted(self.shared)]
        if cfg.optim.clip_norm > 0:
            gnorm = gluon.utils.clip_global_norm(grads, cfg.optim.clip_norm, check_isfinite=True)
        else:
            gnorm = float(np.sqrt(sum(float((g * g).sum().asscalar()) for g in grads)))
        self.grad_norms.append(gnorm)
        self.shared_trainer.update(1)  # loss is a mean already
        self.branch_trainers[d].update(1)  # only the active branch: the others stay untouched
        out = scores.asnumpy()
        mx.nd.waitall()
        t4 = time.perf_counter()

        frame = np.concatenate([batch.pos_frame, neg_frame])
        self.counters += M.count(out, labels, frame, cfg.val.topk)
        timing = (t4 - t0, t_wait, t2 - t1, t3 - t2 + t4 - t3, t4 - t3, batch.prep_s)
        self.step_times.append(timing)
        self.epoch_time += t4 - t0
        return {"lr": lr, "domain": d}

    # ======================================================================== loop + hooks

    def run(self) -> dict:
        cfg = self.cfg
        step = self.start_step
        t_last, s_last = time.perf_counter(), step
        try:
            while step < self.stop_step:
                info = self.run_step(step)
                step += 1
                if cfg.train.log_every and step % cfg.train.log_every == 0 and self.world.is_main:
                    now = time.perf_counter()
                    rate = (step - s_last) * (cfg.sampling.pos + cfg.sampling.neg) / max(now - t_last, 1e-9)
                    t_last, s_last = now, step
                    recent = np.mean(self.step_times[-cfg.train.log_every:], axis=0)
                    cur = M.summarize(self.counters)
                    self.log.info(f"step {step}/{self.total_steps} epoch {(step - 1) // self.steps_per_cycle} "
                                  f"lr {info['lr']:.3g} loss {cur['Loss']:.4f} shared grad norm "
                                  f"{np.mean(self.grad_norms[-cfg.train.log_every:]):.3g} | rank 0: {rate:.1f} samples/s, "
                                  f"step {recent[0]:.3f}s = wait {recent[1]:.3f} + mining {recent[2]:.3f} "
                                  f"+ net {recent[3]:.3f} (allreduce+update {recent[4]:.3f})")
                if step % self.steps_per_cycle == 0:
                    self.end_epoch(step // self.steps_per_cycle - 1, step)
                if (cfg.checkpoint.every_steps and step % cfg.checkpoint.every_steps == 0) \
                        or step == self.stop_step:
                    self.save_checkpoint(step)
        finally:
            self.prefetch.close()
        timing = self.finish(step)
        return timing

    def end_epoch(self, epoch: int, step: int) -> None:
        # Horovod: sum the counters (and the samples) of all ranks; then ratios on the totals.
        vec = np.concatenate([self.counters, [self.epoch_time]])
        total = dist.allreduce_sum_np(vec, "metrics.train")
        counters, time_sum = total[:-1], total[-1]
        wall = time_sum / self.world.size  # mean over ranks of the epoch's training time
        samples = counters[M.COUNTERS.index("samples")]
        train = M.summarize(counters)
        record = {"epoch": epoch, "phase": "train", "step": step, **M.json_safe(train),
                  "time_s": wall, "samples": samples, "samples_per_s": samples / max(wall, 1e-9)}
        if self.world.is_main:
            for line in M.mxnet_lines(epoch, "Train", train):
                self.log.info(line)
            self.log.info(f"Epoch[{epoch}] Time cost={wall:.3f}")
            self.log.info(f"Epoch[{epoch}] Train-Speed={record['samples_per_s']:.1f} samples/sec "
                          f"({self.world.size} rank(s))")
            self._jsonl(record)
        self.counters = M.zeros()
        self.epoch_time = 0.0
        last = step >= self.total_steps
        if self.cfg.val.enabled and ((epoch + 1) % self.cfg.val.every_cycles == 0 or last):
            self.validate(epoch, step)

    def validate(self, epoch: int, step: int) -> dict:
        """Score held-out frames of this rank's domains with their own branch, inference mode."""
        cfg = self.cfg
        t0 = time.perf_counter()
        counters = M.zeros()
        limit = cfg.val.max_domains or len(self.domains)
        for d in self.owned:
            if d >= limit:
                continue
            # Same samples every epoch (seeded by the domain, not the step or rank): comparable.
            rng = np.random.default_rng([cfg.seed, d, _VAL_STREAM])
            vs = validation_samples(self.domains[d], rng, cfg.sampling, cfg.val, self.spec)
            if vs is None:
                continue
            scores = self.model.score(vs.crops, d, cfg.mining.batch)
            counters += M.count(scores, vs.label, vs.frame, cfg.val.topk,
                                sampled=vs.kind < 2, ranked=vs.kind == 2, in_loss=vs.kind < 2)
        elapsed = time.perf_counter() - t0
        total = dist.allreduce_sum_np(np.concatenate([counters, [elapsed]]), "metrics.val")  # Horovod: sums
        counters, wall = total[:-1], total[-1] / self.world.size
        val = M.summarize(counters)
        samples = counters[M.COUNTERS.index("samples")]
        if self.world.is_main:
            for line in M.mxnet_lines(epoch, "Validation", val):
                self.log.info(line)
            self.log.info(f"Epoch[{epoch}] Validation-Speed={samples / max(wall, 1e-9):.1f} samples/sec "
                          f"({int(samples)} samples, {wall:.2f}s)")
            self._jsonl({"epoch": epoch, "phase": "validation", "step": step, **M.json_safe(val),
                         "time_s": wall, "samples": samples, "samples_per_s": samples / max(wall, 1e-9)})
        return val

    def _jsonl(self, record: dict) -> None:
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")

    # ======================================================================== checkpoints

    def save_checkpoint(self, step: int) -> None:
        ckpt_dir = self.out / ckpt.CKPT_DIR / ckpt.ckpt_name(step)
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        branches = {}
        for d in self.owned:
            head = self.model.branches[d]
            mom = get_momentum(self.branch_trainers[d])
            branches[self.domains[d].name] = {
                "weight": head.weight.data().asnumpy(), "bias": head.bias.data().asnumpy(),
                "momentum_weight": mom[head.weight.name], "momentum_bias": mom[head.bias.name]}
        ckpt.write_branches(ckpt_dir, self.world.rank, branches, step,
                            {"counters": self.counters, "epoch_time_s": self.epoch_time})
        if self.world.is_main:
            params = {n: p.data().asnumpy() for n, p in self.shared.items()}
            ckpt.write_shared(ckpt_dir, params, get_momentum(self.shared_trainer), step)
        # Horovod: meta.json (which completes the checkpoint) only after every rank's file exists.
        dist.barrier("ckpt.barrier")
        if self.world.is_main:
            meta = {
                "world_size": self.world.size, "steps_per_cycle": self.steps_per_cycle,
                "total_steps": self.total_steps, "cycle": step / self.steps_per_cycle,
                "files": [ckpt.SHARED] + [ckpt.branch_file(r) for r in range(self.world.size)],
                "branch_files": [ckpt.branch_file(r) for r in range(self.world.size)],
                "domains": [d.name for d in self.domains],
                "shards": {str(r): [self.domains[i].name for i in s] for r, s in enumerate(self.shards)},
                "datasets": list(self.cfg.data.roots),
                "model": {"conv_channels": list(self.spec.conv_channels), "fc_width": self.spec.fc_width},
                "spec": {"input_size": self.spec.input_size, "padding": self.spec.padding,
                         "mean": self.spec.mean, "dropout": self.spec.dropout, "lrn": list(self.spec.lrn)},
                "seed": self.cfg.seed,
                "rng": "stateless: data of rank r at step s from numpy default_rng([seed, r, s, 1]); dropout "
                       "from mx.random.seed(SeedSequence([seed, r, s, 2])); branch init from "
                       "default_rng([seed, domain, 0xFC6]); validation from default_rng([seed, domain, 0x7A1])",
                "config": config_to_dict(self.cfg),
            }
            ckpt.write_meta(self.out, step, meta)
            removed = ckpt.prune(self.out, self.cfg.checkpoint.keep)
            self.log.info(f"checkpoint: {ckpt_dir} (step {step})"
                          + (f"; removed {len(removed)} older" if removed else ""))

    # ======================================================================== end

    def finish(self, step: int) -> dict:
        """Timing summary over ranks (steady state: the first steps warm up caches and graphs)."""
        times = np.asarray(self.step_times, dtype=np.float64).reshape(-1, 6)
        skip = min(len(times) // 5, 5)
        steady = times[skip:] if len(times) > skip else times
        local = np.concatenate([[len(steady)], steady.sum(axis=0)]) if len(steady) else np.zeros(7)
        # Horovod: per-rank sums -> totals; means are per rank-step.
        total = dist.allreduce_sum_np(local, "timing.final")
        n = max(total[0], 1.0)
        mean = total[1:] / n
        step_s = mean[0]
        spp = self.cfg.sampling.pos + self.cfg.sampling.neg
        timing = {
            "world_size": self.world.size, "steps_done": step, "steps_timed_per_rank": int(total[0] / self.world.size),
            "samples_per_step": spp, "mining_pool": self.cfg.mining.pool if self.cfg.mining.enabled else 0,
            "step_s": step_s, "data_wait_s": mean[1], "mining_s": mean[2], "net_s": mean[3],
            "allreduce_update_s": mean[4], "prep_worker_s": mean[5],
            "samples_per_s_per_rank": spp / step_s if step_s > 0 else float("nan"),
            "data_fraction": mean[1] / step_s if step_s > 0 else float("nan"),
            "mining_fraction": mean[2] / step_s if step_s > 0 else float("nan"),
            "net_fraction": mean[3] / step_s if step_s > 0 else float("nan"),
        }
        if self.world.is_main:
            (self.out / "timing.json").write_text(json.dumps(timing, indent=1, sort_keys=True))
            self.log.info("timing (steady state, mean per rank-step): " + ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in timing.items()))
        if self.cfg.runtime.debug_dump:
            self._debug_dump()
        return timing

    def _debug_dump(self) -> None:
        out = self.out / "debug"
        out.mkdir(parents=True, exist_ok=True)
        arrays = {f"shared:{n}": p.data().asnumpy() for n, p in self.shared.items()}
        for d in self.owned:
            head = self.model.branches[d]
            arrays[f"branch:{self.domains[d].name}:weight"] = head.weight.data().asnumpy()
            arrays[f"branch:{self.domains[d].name}:bias"] = head.bias.data().asnumpy()
        np.savez(out / f"rank{self.world.rank}.npz", **arrays)
