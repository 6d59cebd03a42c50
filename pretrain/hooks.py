"""What runs between pretraining steps, one small class per job (detectron2's hooks).

Every hook declares the collectives it issues (`collectives`) and whether it exists on every rank
or on rank 0 only (`every_rank`). Horovod needs every rank to issue the same collectives in the
same order, so:
- a hook that issues a collective is registered on EVERY rank, in the same order, and decides
  whether to run from the step number alone (which all ranks share);
- a hook that only writes files or logs and issues no collective exists on rank 0 only;
- `Pretrainer.run` calls hooks in registration order; `describe_collectives` prints that order.

Per step, after `run_step`: count metrics, progress log, epoch end (+ validation), checkpoint;
at the end: timing. The step itself (pretrain/trainer.py) knows none of them.
"""
from __future__ import annotations

import json
import time

import numpy as np

from pretrain import checkpoint as ckpt
from pretrain import distributed as dist
from pretrain import metrics as M
from pretrain.minibatch import validation_samples
from pretrain.optim import get_momentum

_VAL_STREAM = 0x7A1  # validation samples: default_rng([seed, domain, _VAL_STREAM])


class HookBase:
    collectives: tuple = ()  # names of the collectives this hook may issue, in order
    every_rank: bool = True  # False: registered on rank 0 only (must issue no collective)

    def before_train(self, trainer) -> None:
        pass

    def after_step(self, trainer, stats) -> None:
        pass

    def after_train(self, trainer) -> None:
        pass


def describe_collectives(hooks) -> str:
    parts = [f"{type(h).__name__}: {', '.join(h.collectives)}" for h in hooks if h.collectives]
    return "; ".join(parts) or "none"


def _jsonl(trainer, record: dict) -> None:
    path = trainer.out / "metrics.jsonl"
    try:
        with open(path, "a") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
    except OSError as e:
        # The run folder became read-only or the disk filled: stop with the file named (a
        # traceback would bury it, and carrying on would leave the metrics silently incomplete).
        raise ckpt.write_failed(path, e) from None


def _write_text(path, text: str) -> None:
    try:
        path.write_text(text)
    except OSError as e:
        raise ckpt.write_failed(path, e) from None


# ------------------------------------------------------------------------------- metrics

class EpochMetrics(HookBase):
    """Counts every step's scored samples (no collective); `EpochEnd` turns them into the epoch's
    metrics. Its counters are saved in checkpoints and restored on resume."""

    def __init__(self, counters=None, epoch_time: float = 0.0):
        self.counters = M.zeros() if counters is None else counters
        self.epoch_time = epoch_time  # training seconds of the current epoch so far (resumable)

    def state(self) -> dict:
        """Saved in every rank's branch file, restored on resume (sums over ranks)."""
        return {"counters": self.counters, "epoch_time_s": self.epoch_time}

    def after_step(self, trainer, stats) -> None:
        self.counters += M.count(stats.scores, stats.labels, stats.frames, trainer.cfg.val.topk)
        self.epoch_time += stats.step_s


class EpochEnd(HookBase):
    """At each epoch end: sums the counters over ranks, logs the MXNet-style lines and a
    metrics.jsonl record (rank 0), then validates when due. The collective order is fixed:
    metrics.train, then metrics.val."""
    collectives = ("metrics.train (epoch end)", "metrics.val (validation epochs)")

    def __init__(self, metrics: EpochMetrics):
        self.metrics = metrics

    def after_step(self, trainer, stats) -> None:
        if stats.step_done % trainer.steps_per_cycle == 0:
            self.end_epoch(trainer, stats.step_done // trainer.steps_per_cycle - 1, stats.step_done)
        elif stats.step_done == trainer.stop_step < trainer.total_steps and trainer.cfg.val.enabled \
                and trainer.cfg.val.at_stop:
            # val.at_stop: a run stopped mid-epoch (train.stop_at_step) validates too; the step
            # number and config decide it, the same on every rank.
            validate(trainer, stats.step_done // trainer.steps_per_cycle, stats.step_done)

    def end_epoch(self, trainer, epoch: int, step: int) -> None:
        world, log = trainer.world, trainer.log
        # Horovod: sum the counters (and the samples) of all ranks; then ratios on the totals.
        total = dist.allreduce_sum_np(np.concatenate([self.metrics.counters, [self.metrics.epoch_time]]), "metrics.train")
        counters, time_sum = total[:-1], total[-1]
        wall = time_sum / world.size  # mean over ranks of the epoch's training time
        samples = counters[M.COUNTERS.index("samples")]
        train = M.summarize(counters)
        if world.is_main:
            for line in M.mxnet_lines(epoch, "Train", train):
                log.info(line)
            log.info(f"Epoch[{epoch}] Time cost={wall:.3f}")
            log.info(f"Epoch[{epoch}] Train-Speed={samples / max(wall, 1e-9):.1f} samples/sec ({world.size} rank(s))")
            _jsonl(trainer, {"epoch": epoch, "phase": "train", "step": step, **M.json_safe(train), "time_s": wall,
                             "samples": samples, "samples_per_s": samples / max(wall, 1e-9)})
        self.metrics.counters = M.zeros()
        self.metrics.epoch_time = 0.0
        val = trainer.cfg.val
        if val.enabled and ((epoch + 1) % val.every_cycles == 0 or step >= trainer.total_steps):
            validate(trainer, epoch, step)


def validate(trainer, epoch: int, step: int) -> dict:
    """Score held-out frames of this rank's domains with their own branch, inference mode, in the
    run's model.mode (fast: every sample pooled from its frame's region map)."""
    cfg, world, log = trainer.cfg, trainer.world, trainer.log
    t0 = time.perf_counter()
    counters = M.zeros()
    limit = cfg.val.max_domains or len(trainer.domains)
    for d in trainer.owned:
        if d >= limit:
            continue
        # Same samples every epoch (seeded by the domain, not the step or rank): comparable.
        rng = np.random.default_rng([cfg.seed, d, _VAL_STREAM])
        vs = validation_samples(trainer.domains[d], rng, cfg.sampling, cfg.val, trainer.spec,
                                mode=cfg.model.mode, max_region=cfg.model.max_region)
        if vs is None:
            continue
        if vs.regions is not None:  # fast mode: scored the way it trains, pooled from region maps
            scores = trainer.model.score_fast(vs.regions, vs.rois, d, cfg.mining.batch)
        else:
            scores = trainer.model.score(vs.crops, d, cfg.mining.batch)
        counters += M.count(scores, vs.label, vs.frame, cfg.val.topk,
                            sampled=vs.kind < 2, ranked=vs.kind == 2, in_loss=vs.kind < 2)
    elapsed = time.perf_counter() - t0
    total = dist.allreduce_sum_np(np.concatenate([counters, [elapsed]]), "metrics.val")  # Horovod: sums
    counters, wall = total[:-1], total[-1] / world.size
    trainer.phase_s["val_s"] = wall
    val = M.summarize(counters)
    samples = counters[M.COUNTERS.index("samples")]
    if world.is_main:
        for line in M.mxnet_lines(epoch, "Validation", val):
            log.info(line)
        log.info(f"Epoch[{epoch}] Validation-Speed={samples / max(wall, 1e-9):.1f} samples/sec "
                 f"({int(samples)} samples, {wall:.2f}s)")
        _jsonl(trainer, {"epoch": epoch, "phase": "validation", "step": step, **M.json_safe(val),
                         "time_s": wall, "samples": samples, "samples_per_s": samples / max(wall, 1e-9)})
    return val


# ------------------------------------------------------------------------------- progress

class ProgressLog(HookBase):
    """Rank 0: a progress line every `train.log_every` steps (rank 0's own numbers)."""
    every_rank = False

    def __init__(self, every: int, metrics: EpochMetrics):
        self.every, self.metrics = every, metrics
        self.recent: list = []
        self.t_last = time.perf_counter()

    def after_step(self, trainer, stats) -> None:
        self.recent.append(stats)
        if not self.every or stats.step_done % self.every:
            return
        now = time.perf_counter()
        spp = trainer.cfg.sampling.pos + trainer.cfg.sampling.neg
        rate = len(self.recent) * spp / max(now - self.t_last, 1e-9)
        mean = {k: float(np.mean([getattr(s, k) for s in self.recent]))
                for k in ("step_s", "data_wait_s", "mining_s", "net_s", "allreduce_update_s", "grad_norm")}
        cur = M.summarize(self.metrics.counters)
        trainer.log.info(
            f"step {stats.step_done}/{trainer.total_steps} epoch {(stats.step_done - 1) // trainer.steps_per_cycle} "
            f"lr {stats.lr:.3g} loss {cur['Loss']:.4f} shared grad norm {mean['grad_norm']:.3g} | rank 0: "
            f"{rate:.1f} samples/s, step {mean['step_s']:.3f}s = wait {mean['data_wait_s']:.3f} + mining "
            f"{mean['mining_s']:.3f} + net {mean['net_s']:.3f} (allreduce+update {mean['allreduce_update_s']:.3f})")
        self.recent, self.t_last = [], now


# ------------------------------------------------------------------------------- checkpoints

class Checkpointer(HookBase):
    """Every `checkpoint.every_steps` steps and at the stop step. Every rank writes its own branch
    file (ranks own different branches); rank 0 writes the shared weights and, after a barrier
    (every rank's file exists), meta.json, which completes the checkpoint."""
    collectives = ("ckpt.barrier",)

    def __init__(self, every: int, keep: int, metrics: EpochMetrics):
        self.every, self.keep, self.metrics = every, keep, metrics

    def after_step(self, trainer, stats) -> None:
        s = stats.step_done
        if (self.every and s % self.every == 0) or s == trainer.stop_step:
            self.save(trainer, s)

    def save(self, trainer, step: int) -> None:
        t0 = time.perf_counter()
        world, model = trainer.world, trainer.model
        # Named by training progress and world size; never an existing complete checkpoint's folder.
        ckpt_dir = ckpt.new_checkpoint_dir(trainer.out, step, world.size, trainer.steps_per_cycle)
        try:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ckpt.write_failed(ckpt_dir, e) from None
        branches = {}
        for d in trainer.owned:
            head = model.branches[d]
            mom = get_momentum(trainer.branch_trainers[d])
            branches[trainer.domains[d].name] = {
                "weight": head.weight.data().asnumpy(), "bias": head.bias.data().asnumpy(),
                "momentum_weight": mom[head.weight.name], "momentum_bias": mom[head.bias.name]}
        ckpt.write_branches(ckpt_dir, world.rank, branches, step, self.metrics.state())
        if world.is_main:
            params = {n: p.data().asnumpy() for n, p in trainer.shared.items()}
            ckpt.write_shared(ckpt_dir, params, get_momentum(trainer.shared_trainer), step)
        # Horovod: meta.json (which completes the checkpoint) only after every rank's file exists.
        dist.barrier("ckpt.barrier")
        if world.is_main:
            ckpt.write_meta(trainer.out, trainer.checkpoint_meta(step), ckpt_dir)
            removed = ckpt.prune(trainer.out, self.keep)
            trainer.log.info(f"checkpoint: {ckpt_dir} (step {step}, {time.perf_counter() - t0:.2f} s)"
                             + (f"; removed {len(removed)} older" if removed else ""))
        trainer.last_checkpoint = ckpt_dir  # every rank: the elastic commit names it
        trainer.phase_s["checkpoint_write_s"] = time.perf_counter() - t0


# ------------------------------------------------------------------------------- timing

# Per-step phase seconds (fields of trainer.StepStats) that Timing averages.
TIMED_PHASES = ("step_s", "data_wait_s", "mining_s", "net_s", "allreduce_update_s", "prep_worker_s")


class Timing(HookBase):
    """Mean per rank-step over all ranks, steady state (the first steps warm up caches and
    graphs); rank 0 writes OUT/timing.json and logs it."""
    collectives = ("timing.final (end)",)

    def __init__(self):
        self.rows: list = []
        self.result: dict = {}

    def after_step(self, trainer, stats) -> None:
        self.rows.append([getattr(stats, k) for k in TIMED_PHASES])

    def after_train(self, trainer) -> None:
        cfg, world = trainer.cfg, trainer.world
        times = np.asarray(self.rows, dtype=np.float64).reshape(-1, len(TIMED_PHASES))
        skip = min(len(times) // 5, 5)
        steady = times[skip:] if len(times) > skip else times
        local = np.concatenate([[len(steady)], steady.sum(axis=0)]) if len(steady) else np.zeros(7)
        # Each rank's peak memory and median step, in its own slot of the same allreduce (a sum
        # of one-hot rows is every rank's value): no extra collective.
        n = len(local)
        per_rank = np.zeros((2, world.size))
        per_rank[0, world.rank] = peak_rss_mb()
        per_rank[1, world.rank] = float(np.median(steady[:, 0])) if len(steady) else np.nan
        # Horovod: per-rank sums -> totals; means are per rank-step.
        total = dist.allreduce_sum_np(np.concatenate([local, per_rank.reshape(-1)]), "timing.final")
        rss, medians = total[n:n + world.size], total[n + world.size:]
        total = total[:n]
        mean = dict(zip(TIMED_PHASES, total[1:] / max(total[0], 1.0)))
        step_s = mean["step_s"]
        spp = cfg.sampling.pos + cfg.sampling.neg

        def frac(k):
            return mean[k] / step_s if step_s > 0 else float("nan")
        self.result = {
            "world_size": world.size, "steps_done": trainer.step, "steps_timed_per_rank": int(total[0] / world.size),
            "samples_per_step": spp, "mining_pool": cfg.mining.pool if cfg.mining.enabled else 0,
            **mean, "samples_per_s_per_rank": spp / step_s if step_s > 0 else float("nan"),
            "data_fraction": frac("data_wait_s"), "mining_fraction": frac("mining_s"), "net_fraction": frac("net_s"),
            # Less sensitive to a busy machine's slow spells than the mean (mdnet-bench scale).
            "step_s_median": float(np.median(medians)),
            "peak_rss_mb_per_rank": [float(v) for v in rss],
            "domains": len(trainer.domains), "domains_on_rank0": len(trainer.shards[0]),
            # Rank 0's wall clock and phase times (setup, checkpoint write, validation).
            "loop_start_unix": trainer.loop_start_unix, "first_step_done_unix": trainer.first_step_unix,
            **{k: float(v) for k, v in sorted(trainer.phase_s.items())},
        }
        if world.is_main:
            _write_text(trainer.out / "timing.json", json.dumps(self.result, indent=1, sort_keys=True))
            trainer.log.info("timing (steady state, mean per rank-step): " + ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in self.result.items()))


def peak_rss_mb() -> float:
    """This process's peak resident memory so far, MB (Linux reports ru_maxrss in KiB)."""
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class DebugDump(HookBase):
    """runtime.debug_dump: every rank writes its final weights to OUT/debug/rank<r>.npz (tests
    compare ranks bit for bit). Writes per-rank files but issues no collective."""

    def after_train(self, trainer) -> None:
        out = trainer.out / "debug"
        arrays = {f"shared:{n}": p.data().asnumpy() for n, p in trainer.shared.items()}
        for d in trainer.owned:
            head = trainer.model.branches[d]
            arrays[f"branch:{trainer.domains[d].name}:weight"] = head.weight.data().asnumpy()
            arrays[f"branch:{trainer.domains[d].name}:bias"] = head.bias.data().asnumpy()
        path = out / f"rank{trainer.world.rank}.npz"
        try:
            out.mkdir(parents=True, exist_ok=True)
            np.savez(path, **arrays)
        except OSError as e:
            raise ckpt.write_failed(path, e) from None
