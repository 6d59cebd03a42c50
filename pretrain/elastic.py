"""Elastic pretraining: workers may leave (killed, spot instance reclaimed) or join while the job runs.

    horovodrun -np 2 --min-np 1 --max-np 4 --host-discovery-script cluster/discover-hosts.sh \
        --blacklist-cooldown-range 10 300 mdnet-pretrain --elastic --config X.yaml --out runs/x

Built on Horovod's elastic driver (Gloo): when a worker dies, the others' next collective fails
(RankStopped); when the discovery script lists new slots, the driver starts workers there and
tells the running ones, who see it at their next commit (HostsChanged). Either way every worker
leaves the old world (hvd.shutdown) and joins the new one (hvd.init) in-process, and training goes
on from the last COMMIT.

Commit = checkpoint. Every `checkpoint.every_steps` steps the Checkpointer writes a complete
checkpoint (shared weights, momentum, every rank's fc6 branches, step), then every rank calls
Horovod's `State.commit()` (pretrain/distributed.py: agree on host updates). Why not the usual
in-memory commit (copy the weights to host memory, broadcast from rank 0 on reset): the fc6
branches live on one rank each, so a dead rank takes its branches with it, and only a file has
them; and a reset that goes through the checkpoint is exactly a `--resume` (same code, same
re-sharding of the branches by name over the new world, same rule for the step when the world size
changes, learning-rate scaling for the new size, seeds per (seed, rank, step)), so the
bit-identity of resume carries over. The cost: the steps since the last checkpoint are redone
after a failure (as with Horovod's own commit), and a host change waits for the next checkpoint.

Every (re)start, fresh processes included, begins with one allgather ("elastic.start"): workers
that were already training tell the newest checkpoint they committed, so a worker that joins
resumes from it (and never clears or refuses the run folder, whatever its command line says),
while at the very first start every worker applies the usual --resume / --force rules.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

from pretrain import checkpoint as ckpt
from pretrain import distributed as dist
from pretrain import hooks as H


class ElasticCommit(H.HookBase):
    """After each checkpoint (registered right after the Checkpointer, on every rank): Horovod's
    commit, which raises HostsChanged on every rank at once when the driver added or removed hosts.
    Not at the stop step: the run is over, a new host would have nothing to do."""
    collectives = ("elastic.hosts (checkpoint steps)",)

    def __init__(self, state, every: int, committed: dict):
        self.state, self.every, self.committed = state, every, committed

    def after_step(self, trainer, stats) -> None:
        s = stats.step_done
        if not (self.every and s % self.every == 0) or s == trainer.stop_step:
            return
        path = str(trainer.last_checkpoint)  # the Checkpointer (registered before) just wrote it
        try:
            dist.elastic_commit(self.state)
        except dist.HostsChanged:
            # The commit's broadcast completed, so rank 0 had written meta.json: complete.
            self.committed["path"] = path
            raise
        self.committed["path"] = path


def agree(mine: dict):
    """One allgather of every worker's start record {started, committed, generation}. None when no
    worker was training yet (the first start); else {"resume_from": newest committed checkpoint or
    None, "generation": the workers' generation}."""
    records = dist.allgather_json(mine, "elastic.start")
    running = [r for r in records if r["started"]]
    if not running:
        return None
    paths = {r["committed"] for r in running if r["committed"]}
    # By training progress, not step number (ranks that committed in different worlds).
    newest = max(paths, key=lambda p: ckpt.read_meta(p).cycle) if paths else None
    if newest is not None:
        newest = str(ckpt.find_latest(newest))  # verified (size + SHA-256): it is what we resume from
    return {"resume_from": newest, "generation": max(r["generation"] for r in running)}


def describe_world(world, generation: int, resume_from) -> str:
    peers = dist.peers() or [(os.environ.get("HOROVOD_HOSTNAME") or platform.node(), platform.node(), os.getpid())]
    ranks = ", ".join(f"rank {r} on {host} pid {pid}" for r, (host, _node, pid) in enumerate(peers))
    return (f"elastic: generation {generation}: world of {world.size} rank(s): {ranks}; "
            + (f"resuming from {resume_from}" if resume_from else "starting from the config's initialisation"))


def run(cfg, world, out: Path, make_log, seed, resume_from=None, generation: int = 0) -> dict:
    """Train until the end whatever happens to the world in between. make_log(world) -> logger for
    that world (rank 0 writes log.txt); seed(world) seeds the global generators per rank."""
    from pretrain.trainer import Pretrainer

    if cfg.checkpoint.every_steps <= 0:
        raise ValueError("--elastic needs checkpoint.every_steps > 0: a commit is a checkpoint")
    state = dist.elastic_state()
    committed = {"path": str(resume_from) if resume_from else None}
    while True:
        log = make_log(world)
        seed(world)
        if world.is_main:
            log.info(describe_world(world, generation, committed["path"]))
        trainer = Pretrainer(cfg, world, out, log, resume_from=Path(committed["path"]) if committed["path"] else None,
                             elastic=True, debug_kill=generation == 0)
        hooks = trainer.default_hooks()
        at = next(i for i, h in enumerate(hooks) if isinstance(h, H.Checkpointer)) + 1
        hooks.insert(at, ElasticCommit(state, cfg.checkpoint.every_steps, committed))
        trainer.register_hooks(hooks)
        try:
            trainer.setup()
            return trainer.run()
        except dist.RankStopped as e:
            why = f"a rank stopped ({e})"
        except dist.HostsChanged as e:
            why = f"the driver reported {e}"
        step = getattr(trainer, "step", 0)
        log.warning(f"elastic: rank {world.rank} of {world.size}: {why} at step {step}; re-forming the world, "
                    f"then resuming from {committed['path'] or 'the initialisation (no checkpoint yet)'}")
        generation += 1
        world = dist.elastic_reset()  # Horovod: shutdown + init with the driver's current workers
        agreed = agree({"started": True, "committed": committed["path"], "generation": generation})
        committed["path"], generation = agreed["resume_from"], agreed["generation"]
