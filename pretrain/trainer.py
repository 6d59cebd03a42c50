"""The pretraining job on one rank: setup (data, shards, model, optimizers, restore), the thin
training step, and the loop that calls the hooks (pretrain/hooks.py) between steps.

`run_step`: batch -> mine -> forward/backward -> allreduce -> clip -> update, returning a small
`StepStats`. `model.mode` picks how samples become features: exact (a 107x107 crop per sample) or
fast (RoIs pooled from one region per frame: the pool is mined on the regions' whole conv3 maps,
then the training pass recomputes conv1-3 under autograd on the windows its RoIs read, see
pretrain/windows.py). The collectives, checkpoints and metrics are the same in both modes. Logging, epoch metrics, validation, checkpoints and timing are hooks; which
collectives each issues, and in which order, is declared there and printed at start.

Collectives, in the order every rank issues them (Horovod needs the same sequence everywhere):
setup: one allreduce of outlier counts, then broadcasts of the shared weights and momentum;
each step: one allreduce of the shared gradients; then the hooks' (see `describe_collectives`).

When a rank stops (killed, crashed, node lost), setup and the loop do not end in Horovod's
traceback: the surviving rank 0 (or, when rank 0 itself is gone, the lowest surviving rank on its
node) prints ONE line naming the rank that stopped (when this node can see it), the step, the last
complete checkpoint and the exact command that continues the run with --resume, and every
survivor exits with status 75 (`dist.RANK_STOPPED_EXIT`) within seconds. The same happens on
SIGTERM (horovodrun sends it to the others when one rank fails; Slurm and Kubernetes to cancel).
Tests make a rank kill itself with MDNET_DEBUG_KILL="RANK:STEP" (pretrain/distributed.py).
"""
from __future__ import annotations

import logging
import os
import shlex
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import autograd

from online.config import config_to_dict
from online.head import mdnet_loss
from online.mining import select_hardest
from online.sequence import DataError
from online.shipped import code_commit
from pretrain import checkpoint as ckpt
from pretrain import distributed as dist
from pretrain import hooks as H
from pretrain.domains import check_domain, find_domains, prepare_domain
from pretrain.minibatch import prepare_step
from pretrain.model import MultiDomainNet, to_input
from pretrain.optim import (branch_trainer, get_momentum, lr_factor, set_momentum, shared_trainer,
                            world_lr_scale)
from pretrain.outliers import RULES, describe_counts
from pretrain.prefetch import Prefetcher
from pretrain.sharding import StepPlanner, describe_shards, shard_domains, steps_per_cycle

# Streams of the per-step generators: default_rng([seed, rank, step, STREAM]).
_DATA_STREAM, _DROPOUT_STREAM = 1, 2

# The main thread (a failed collective) and the SIGTERM helper thread may both report a stop.
_STOP_LOCK = threading.Lock()


def resume_command(argv, resume: bool, launcher=()) -> str:
    """The command line that starts this run again: the launcher words, this process's program and
    arguments with any --resume [CHECKPOINT] replaced by a plain --resume (when `resume`). --force
    is dropped when resuming (a resume never wipes the run it continues) and added when starting
    again (the folder now holds this run's files, which a plain start refuses)."""
    prog = Path(argv[0])
    if prog.name == "cli.py" and prog.parent.name == "pretrain":  # started as `python -m pretrain.cli`
        words = [sys.executable, "-m", "pretrain.cli"]
    else:
        words = [argv[0]]
    args, rest = [], list(argv[1:])
    while rest:
        a = rest.pop(0)
        if a == "--resume":
            if rest and not rest[0].startswith("-"):
                rest.pop(0)  # its checkpoint argument
            continue
        if a.startswith("--resume=") or a == "--force":
            continue
        args.append(a)
    return shlex.join([*launcher, *words, *args, *(["--resume"] if resume else ["--force"])])


def step_seed(seed: int, rank: int, step: int, stream: int) -> int:
    """A 31-bit seed for MXNet's RNG derived from (seed, rank, step, stream)."""
    return int(np.random.SeedSequence([seed, rank, step, stream]).generate_state(1)[0] & 0x7FFFFFFF)


def choose_device(kind: str, local_rank: int, local_size: int, gpus: int, share_gpus: bool = False):
    """The device of one rank as ("gpu", index) or ("cpu", 0): a pure function of the numbers, so
    the decision is testable without GPUs.

    GPU local_rank when there are GPUs (and not told cpu), else the CPU. More ranks on a host than
    GPUs would put several ranks on one GPU (each with its own copy of the model and its own
    cuDNN workspace: out-of-memory or a silent slowdown), so that is an error unless
    `runtime.share_gpus` (or MDNET_SHARE_GPUS=1) asks for it; then ranks share GPUs round-robin.
    """
    if kind == "gpu" and gpus == 0:
        raise ValueError("runtime.device=gpu but MXNet sees no GPU (is mxnet-cu112 installed?)")
    if kind == "gpu" or (kind == "auto" and gpus > 0):
        if local_size > gpus and not share_gpus:
            raise ValueError(
                f"local rank {local_rank}: {local_size} ranks on this host but MXNet sees {gpus} GPU(s): "
                f"ranks would share GPUs. Start at most {gpus} rank(s) per host (horovodrun -H host:{gpus}), "
                f"run on the CPU (runtime.device=cpu), or allow sharing on purpose with "
                f"--set runtime.share_gpus=true (or MDNET_SHARE_GPUS=1)")
        return ("gpu", local_rank % gpus)  # Horovod: pin one GPU per local rank
    return ("cpu", 0)


def share_gpus_allowed(cfg_value: bool, environ=os.environ) -> bool:
    """runtime.share_gpus, or MDNET_SHARE_GPUS=1 in the environment (launch scripts)."""
    return bool(cfg_value) or environ.get("MDNET_SHARE_GPUS", "").strip().lower() in ("1", "true", "yes")


def device_for(kind: str, world: dist.World, share_gpus: bool = False):
    """One device per rank (choose_device with the GPUs MXNet sees)."""
    dev, index = choose_device(kind, world.local_rank, world.local_size, mx.context.num_gpus(),
                               share_gpus_allowed(share_gpus))
    return mx.gpu(index) if dev == "gpu" else mx.cpu()


@dataclass
class StepStats:
    """What one step returns: its numbers for the hooks. Times in seconds."""
    step_done: int  # steps completed after this one (= step index + 1)
    domain: int
    lr: float
    grad_norm: float  # shared gradient norm before clipping (allreduced, identical on all ranks)
    scores: np.ndarray  # (N, 2) training-mode fc6 outputs of the minibatch
    labels: np.ndarray  # (N,) 1 positive, 0 negative
    frames: np.ndarray  # (N,) frame slot of each sample (TrackTopKAcc)
    step_s: float
    data_wait_s: float  # blocked waiting for the prefetched batch
    mining_s: float
    net_s: float  # forward/backward + allreduce + update
    allreduce_update_s: float
    prep_worker_s: float  # worker time that made the batch (hidden when data_wait_s ~ 0)


class Pretrainer:
    def __init__(self, cfg, world: dist.World, out_dir: Path, log: logging.Logger, resume_from=None,
                 elastic: bool = False, debug_kill: bool = True):
        self.cfg, self.world, self.out, self.log = cfg, world, Path(out_dir), log
        self.resume_from = resume_from
        # Elastic (pretrain/elastic.py): a stopped rank is not the end; RankStopped reaches the
        # elastic loop, which re-forms the world, instead of the one-line report and exit 75.
        self.elastic = elastic
        self.debug_kill = debug_kill  # MDNET_DEBUG_KILL applies (elastic: only in the first world)
        self.code_commit = code_commit()  # recorded in every checkpoint, hence in exported weights
        self.spec = cfg.model.spec()
        self.ctx = device_for(cfg.runtime.device, world, cfg.runtime.share_gpus)
        self.n_neg_prepared = cfg.mining.pool if cfg.mining.enabled else cfg.sampling.neg
        self.mode, self.max_region = cfg.model.mode, cfg.model.max_region
        self.metrics_state = {}  # epoch counters restored from a checkpoint (rank 0)
        self.start_step = 0
        self.step = 0
        self.last_checkpoint = None  # folder of the last checkpoint written (hooks.Checkpointer)
        self.hooks: list = []
        # Wall seconds of the parts that grow with the number of domains (setup phases, the last
        # checkpoint write, the last validation), on this rank; Timing puts them in timing.json
        # (mdnet-bench scale reads them there).
        self.phase_s: dict = {}
        self.loop_start_unix = self.first_step_unix = None

    def info(self, msg: str) -> None:
        if self.world.is_main:
            self.log.info(msg)

    # ======================================================================== a rank stopped

    @contextmanager
    def stop_on_rank_failure(self, where: str):
        """Around setup and the loop: a collective failing because a rank stopped, or SIGTERM from
        the launcher, ends this process with one line (see the module docstring)."""
        with dist.on_sigterm(lambda: self._stopped(where, "SIGTERM")):
            try:
                yield
            except Exception as e:  # noqa: BLE001 - anything but Horovod's shutdown is re-raised
                if dist.is_horovod_shutdown(e):
                    if self.elastic:
                        if isinstance(e, dist.RankStopped):
                            raise
                        raise dist.RankStopped(f"Horovod shut down ({where})") from e
                    self._stopped(where, "collective")
                raise

    def _stopped(self, where: str, how: str):
        """Report (on one surviving rank) and exit with RANK_STOPPED_EXIT; never returns."""
        dist.mark_stopping()
        with _STOP_LOCK:
            try:
                status = dist.peer_status()
                me = self.world.rank
                gone = [r for r, s in sorted(status.items()) if s == "gone" and r != me]
                # One line per job: rank 0, or the lowest survivor when every rank below it died.
                if me == 0 or all(status.get(r) == "gone" for r in range(me)):
                    self.log.error(self.stop_line(where, how, gone))
                    dist.clear_stop_marks()
            except BaseException as e:  # noqa: BLE001 - exiting anyway; say why the line is missing
                print(f"mdnet-pretrain: rank {self.world.rank}: stopping ({how}); no report: {e!r}",
                      file=sys.stderr)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                # os._exit: no Horovod shutdown handshake with ranks that are gone, no joins of
                # prefetch threads; files are written atomically, so nothing is left half-written.
                os._exit(dist.RANK_STOPPED_EXIT)

    def stop_line(self, where: str, how: str, gone) -> str:
        if gone:
            who = f"rank{'s' if len(gone) > 1 else ''} {', '.join(map(str, gone))} stopped"
        elif how == "SIGTERM":
            who = ("stopped by SIGTERM (the launcher stops every rank when one fails, or the job was "
                   "cancelled)")
        else:
            who = "a rank stopped (Horovod shut down)"
        total = getattr(self, "total_steps", None)
        when = (f"during setup (before step {self.start_step})" if where == "setup"
                else f"after step {self.step}" + (f" of {total}" if total else ""))
        try:
            latest = ckpt.find_latest(self.out)
            done = f"last complete checkpoint: {latest} (step {ckpt.read_meta(latest).step})"
            resume = True
        except (ckpt.CheckpointError, OSError, ValueError):
            done, resume = "no complete checkpoint yet", False
        cmd = resume_command(sys.argv, resume, dist.launch_prefix())
        return (f"mdnet-pretrain: {who}; rank {self.world.rank} stops {when}; {done}; "
                f"{'resume with' if resume else 'start again with'}: {cmd}")

    # ======================================================================== setup

    def setup(self) -> None:
        with self.stop_on_rank_failure("setup"):
            self._setup()

    def _phase(self, name: str, t0: float) -> float:
        now = time.perf_counter()
        self.phase_s[f"setup_{name}_s"] = now - t0
        return now

    def _setup(self) -> None:
        cfg, world = self.cfg, self.world
        t0 = t_setup = time.perf_counter()
        # The frame check runs below, each rank on its own shard (check_owned), not every frame of
        # every domain on every rank.
        domains = find_domains(cfg.data, log=self.info, check=False)
        t0 = self._phase("domains", t0)
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

        # Frame check (data.check_frames) and outlier filter on the owned domains; per-sequence
        # counts are summed to every rank for the log, with one more column: 1 where the check failed.
        counts = np.zeros((len(domains), len(RULES) + 1))
        t_check = 0.0
        for i in self.owned:
            if cfg.data.check_frames:
                t1 = time.perf_counter()
                try:
                    check_domain(domains[i])
                except DataError:
                    counts[i, -1] = 1  # reported below, by every rank, after the allreduce
                    continue
                finally:
                    t_check += time.perf_counter() - t1
            prepare_domain(domains[i], cfg.outliers)
            counts[i, :-1] = [domains[i].outlier_counts[r] for r in RULES]
            if len(domains[i].train_frames) == 0:
                raise DataError(f"{domains[i].name}: no training frame left after the outlier filter; "
                                f"list it in data.exclude or loosen the outliers.* settings")
        self.phase_s["setup_check_s"] = t_check
        # Horovod: sum the per-domain counts to every rank (each rank filled only its own domains).
        counts = dist.allreduce_sum_np(counts.reshape(-1), "setup.outliers").reshape(counts.shape)
        bad = np.flatnonzero(counts[:, -1])
        if len(bad):
            # Every rank stops with the same error before step 0: the check is a pure function of
            # the files, so each rank repeats it on the first bad domain for the message.
            check_domain(domains[bad[0]])
            raise DataError(f"data: sequence {domains[bad[0]].name!r}: a frame file or box failed the check "
                            f"on the rank that owns it (and passed here: did the file change?)")
        counts = counts[:, :-1]
        if cfg.data.check_frames:
            self.info(f"data: checked {sum(len(d.sequence.frames) for d in domains)} frame files and their "
                      f"boxes in {len(domains)} domains, each rank its own shard ({t_check:.1f} s on rank 0): "
                      f"no truncated frame")
        self._log_outliers(domains, counts)
        t0 = self._phase("outliers", t0)

        # Model: trunk + this rank's branches.
        self.model = MultiDomainNet(self.spec, {i: domains[i].name for i in self.owned}, self.ctx,
                                    frozen_convs=cfg.optim.lr_mult_conv == 0)
        self.model.initialize(cfg.init, cfg.seed, log=self.info)
        self.model.set_lr_mults(cfg.optim.lr_mult_conv, cfg.optim.lr_mult_fc, cfg.optim.lr_mult_branch)
        self.shared = self.model.shared_params()
        if self.mode == "fast":
            self.info(f"model: fast mode: one region per frame (at most {self.max_region} px a side) through "
                      f"conv1-3, every sample pooled from its conv3 map with RoIAlign (online/roi.py)")
        else:
            self.info("model: exact mode: every sample cropped to 107x107 and run through conv1-3")
        self.shared_trainer = shared_trainer(self.shared, cfg.optim)
        self.branch_trainers = {d: branch_trainer(self.model.branch_params(d), cfg.optim) for d in self.owned}
        self.lr_scale = world_lr_scale(cfg.optim.lr_scaling, world.size)  # Horovod: scale the shared lr
        self.info(f"optim: SGD momentum {cfg.optim.momentum}, wd {cfg.optim.weight_decay}, base lr "
                  f"{cfg.optim.lr:g} (conv x{cfg.optim.lr_mult_conv:g}, fc4-5 x{cfg.optim.lr_mult_fc:g}, "
                  f"fc6 branches x{cfg.optim.lr_mult_branch:g}); "
                  f"shared lr x{self.lr_scale:g} (lr_scaling={cfg.optim.lr_scaling}, {world.size} ranks); "
                  f"clip shared grad norm {cfg.optim.clip_norm:g}; schedule {cfg.schedule.kind}")

        t0 = self._phase("model", t0)
        if self.resume_from is not None:
            self._restore(self.resume_from)
            t0 = self._phase("restore", t0)
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
        self._phase("broadcast", t0)
        self.phase_s["setup_s"] = time.perf_counter() - t_setup

    # Per-domain outlier lines: the first domains, then only those that lost frames, up to a cap;
    # a total line always. One line per domain was 10,000 lines per start at GOT-10k's size.
    OUTLIER_LINES = (20, 200)

    def _log_outliers(self, domains, counts) -> None:
        if not self.world.is_main:
            return
        first, more = self.OUTLIER_LINES
        shown = 0
        for i, d in enumerate(domains):
            dropped = counts[i].any()
            if i < first or (dropped and shown < more):
                shown += i >= first
                self.info("outliers: " + describe_counts(d.name, dict(zip(RULES, counts[i].astype(int))), len(d.sequence)))
        if len(domains) > first:
            hit = int(counts.any(axis=1).sum())
            unlisted = hit - int(counts[:first].any(axis=1).sum()) - shown
            total = dict(zip(RULES, counts.sum(axis=0).astype(int)))
            self.info(f"outliers: all {len(domains)} domains: "
                      + describe_counts("frames", total, sum(len(d.sequence) for d in domains))
                      + f"; {hit} domain(s) lost frames" + (f", {unlisted} not listed above" if unlisted else ""))

    def _restore(self, ckpt_dir: Path) -> None:
        meta = ckpt.read_meta(ckpt_dir)
        names = [d.name for d in self.domains]
        saved = meta.domains
        if saved != names:
            missing = sorted(set(saved) - set(names))
            unexpected = sorted(set(names) - set(saved))
            raise ckpt.CheckpointError(
                f"{ckpt_dir}: the checkpoint's domains differ from this config's data: missing here "
                f"{missing[:10] or 'none'}, new here {unexpected[:10] or 'none'}"
                + ("" if missing or unexpected else " (same names, different order)"))
        if meta.net_spec() != self.spec:
            raise ckpt.CheckpointError(f"{ckpt_dir}: saved with network {meta.spec}, the config builds "
                                       f"{self.spec.to_dict()}")
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
            # A copy into the existing arrays (the same float32 values as set_data): set_data costs
            # ~0.5 ms a call in Gluon, 5 s for the 5,000 branches of a rank at 10,000 domains.
            head.weight.data(self.ctx)[:] = np.asarray(b["weight"], np.float32)
            head.bias.data(self.ctx)[:] = np.asarray(b["bias"], np.float32)
            set_momentum(self.branch_trainers[d], {head.weight.name: b["momentum_weight"],
                                                   head.bias.name: b["momentum_bias"]}, self.ctx)
        step = meta.step
        if meta.world_size == self.world.size:
            self.start_step = step
        else:
            # Another world size has another cycle length: continue at the same training progress
            # (in cycles), which is what the lr schedule is defined on.
            self.start_step = int(round(meta.cycle * self.steps_per_cycle))
        # Epoch counters and times are sums over ranks: the saved totals live on rank 0 from now on
        # (the epoch end divides the summed time by the world size, hence the rescale).
        if self.world.is_main:
            self.metrics_state = {"counters": extras["counters"].copy(),
                                  "epoch_time": float(extras["epoch_time_s"]) * self.world.size / meta.world_size}
        self.info(f"resume: {ckpt_dir} (step {step} of {meta.world_size} rank(s)) -> starting at step "
                  f"{self.start_step} of {self.total_steps} on {self.world.size} rank(s)")

    # ======================================================================== data

    def _make_batch(self, step: int):
        # Runs in a worker thread: a pure function of (seed, rank, step).
        d = self.planner.domain(step)
        rng = np.random.default_rng([self.cfg.seed, self.world.rank, step, _DATA_STREAM])
        return prepare_step(self.domains[d], step, rng, self.cfg.sampling, self.n_neg_prepared, self.spec,
                            mode=self.mode, max_region=self.max_region)

    # ======================================================================== the step

    def set_lr(self, step: int, d: int) -> float:
        f = lr_factor((step + 1) / self.steps_per_cycle, self.cfg.train.cycles, self.cfg.schedule)
        lr = self.cfg.optim.lr * f
        self.shared_trainer.set_learning_rate(lr * self.lr_scale)
        self.branch_trainers[d].set_learning_rate(lr)
        return lr

    def run_step(self, step: int) -> StepStats:
        cfg = self.cfg
        t0 = time.perf_counter()
        wait0 = self.prefetch.wait_s
        batch = self.prefetch.get(step)
        t_wait = self.prefetch.wait_s - wait0
        d = batch.domain

        # Hard negative mining: score the pool with the current weights in inference mode (no
        # autograd recording, so dropout is off), keep the hardest. Fast mode: conv1-3 once per
        # region, every pool RoI pooled from the maps.
        t1 = time.perf_counter()
        neg, neg_frame = batch.neg, batch.neg_frame
        if cfg.mining.enabled:
            if batch.fast:
                pool_scores = self.model.score_fast(batch.regions, batch.neg, d, cfg.mining.batch)
            else:
                pool_scores = self.model.score(batch.neg, d, cfg.mining.batch)
            hard = select_hardest(pool_scores[:, 1], cfg.sampling.neg)
            neg, neg_frame = neg[hard], neg_frame[hard]
        t2 = time.perf_counter()

        if batch.fast:
            rois = np.concatenate([batch.pos, neg])

            def forward():
                return self.model.window_scores(batch.regions, rois, d)
        else:
            x = to_input(np.concatenate([batch.pos, neg]), self.ctx)

            def forward():
                return self.model(x, d)
        labels = np.concatenate([np.ones(len(batch.pos)), np.zeros(len(neg))])
        lr = self.set_lr(step, d)
        mx.random.seed(step_seed(cfg.seed, self.world.rank, step, _DROPOUT_STREAM))  # dropout masks
        with autograd.record():
            scores = forward()
            loss = mdnet_loss(mx.nd, scores, mx.nd.array(labels, ctx=self.ctx)).mean()
        loss.backward()
        mx.nd.waitall()
        t3 = time.perf_counter()
        # Horovod: average the shared gradients over ranks (inside SharedTrainer), then clip the
        # averaged ones only -- identical on every rank, so every rank applies the same update.
        self.shared_trainer.allreduce_grads()
        grads = [self.shared[n].grad() for n in sorted(self.shared) if self.shared[n].grad_req != "null"]
        if cfg.optim.clip_norm > 0:
            gnorm = mx.gluon.utils.clip_global_norm(grads, cfg.optim.clip_norm, check_isfinite=True)
        else:
            gnorm = float(np.sqrt(sum(float((g * g).sum().asscalar()) for g in grads)))
        self.shared_trainer.update(1)  # loss is a mean already
        self.branch_trainers[d].update(1)  # only the active branch: the others stay untouched
        out = scores.asnumpy()
        mx.nd.waitall()
        t4 = time.perf_counter()
        return StepStats(step_done=step + 1, domain=d, lr=lr, grad_norm=float(gnorm), scores=out, labels=labels,
                         frames=np.concatenate([batch.pos_frame, neg_frame]), step_s=t4 - t0, data_wait_s=t_wait,
                         mining_s=t2 - t1, net_s=t4 - t2, allreduce_update_s=t4 - t3, prep_worker_s=batch.prep_s)

    # ======================================================================== loop

    def default_hooks(self) -> list:
        """The standard hooks, in the order they run. Collective-issuing hooks are on every rank."""
        cfg = self.cfg
        state = self.metrics_state
        metrics = H.EpochMetrics(state.get("counters"), state.get("epoch_time", 0.0))
        hooks = [metrics, H.ProgressLog(cfg.train.log_every, metrics), H.EpochEnd(metrics),
                 H.Checkpointer(cfg.checkpoint.every_steps, cfg.checkpoint.keep, metrics), H.Timing()]
        if cfg.runtime.debug_dump:
            hooks.append(H.DebugDump())
        return [h for h in hooks if h.every_rank or self.world.is_main]

    def register_hooks(self, hooks) -> None:
        self.hooks.extend(hooks)

    def run(self) -> dict:
        if not self.hooks:
            self.register_hooks(self.default_hooks())
        self.info("hooks: " + ", ".join(type(h).__name__ for h in self.hooks)
                  + " | collectives after each step's gradient allreduce: " + H.describe_collectives(self.hooks))
        for h in self.hooks:
            h.before_train(self)
        self.step = self.start_step
        kill_at = dist.debug_kill_step(self.world.rank) if self.debug_kill else None  # MDNET_DEBUG_KILL: tests
        self.loop_start_unix = time.time()
        with self.stop_on_rank_failure("loop"):
            try:
                while self.step < self.stop_step:
                    if self.step == kill_at:
                        dist.kill_self(self.world.rank, self.step)
                    stats = self.run_step(self.step)
                    self.step += 1
                    if self.first_step_unix is None:
                        self.first_step_unix = time.time()
                    for h in self.hooks:
                        h.after_step(self, stats)
            finally:
                self.prefetch.close()
            for h in self.hooks:
                h.after_train(self)
        timing = [h for h in self.hooks if isinstance(h, H.Timing)]
        return timing[0].result if timing else {}

    def checkpoint_meta(self, step: int) -> ckpt.CheckpointMeta:
        return ckpt.CheckpointMeta(
            step=step, world_size=self.world.size, steps_per_cycle=self.steps_per_cycle,
            total_steps=self.total_steps, domains=[d.name for d in self.domains],
            shards={str(r): [self.domains[i].name for i in s] for r, s in enumerate(self.shards)},
            datasets=list(self.cfg.data.roots) + list(self.cfg.data.packs), spec=self.spec.to_dict(), seed=self.cfg.seed,
            config=config_to_dict(self.cfg), code_commit=self.code_commit)
