"""mdnet-pretrain: multi-domain MDNet pretraining, one process per rank under horovodrun, or alone.

    horovodrun -np 4 -H localhost:4 mdnet-pretrain --config cluster/configs/vot-otb.yaml --out runs/vot-otb
    mdnet-pretrain --config cluster/configs/demo.yaml --out runs/demo          # one process
    horovodrun -np 2 -H localhost:2 mdnet-pretrain --out runs/vot-otb --resume # continue (any -np)
    mdnet-pretrain --config X.yaml --set train.cycles=10 --set optim.lr=2e-4   # overrides
    horovodrun -np 2 --min-np 1 --max-np 4 --host-discovery-script cluster/discover-hosts.sh \
        --blacklist-cooldown-range 10 300 mdnet-pretrain --elastic --config X.yaml  # pretrain/elastic.py

Writes OUT/config.yaml (resolved config), OUT/log.txt, OUT/metrics.jsonl (one JSON object per
epoch and phase), OUT/timing.json and OUT/checkpoints/ (see pretrain/checkpoint.py). Only rank 0
writes logs and shared files; every rank writes its own branch file in each checkpoint.

Runs never mix: an OUT that already holds a run (checkpoints, metrics) is refused unless --resume
continues it or --force deletes its run files first. OUT is checked writable before anything else;
a write that fails later (folder made read-only, disk full) stops the run with the file named.
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
from pathlib import Path

# No mxnet import at module level: the thread count must be in the environment before MXNet
# starts its OpenMP pool (see _set_threads).


def build_parser() -> argparse.ArgumentParser:
    from online.config import describe_config
    from pretrain.config import PretrainConfig

    p = argparse.ArgumentParser(
        prog="mdnet-pretrain",
        description="Multi-domain MDNet pretraining (run it under horovodrun -np N, or alone).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Config keys (for the YAML file and --set):\n  " + "\n  ".join(describe_config(PretrainConfig)))
    p.add_argument("--config", default=None,
                   help="experiment YAML (e.g. cluster/configs/demo.yaml); with --resume and no --config, "
                        "OUT/config.yaml is used")
    p.add_argument("--out", default=None, help="run folder (default: runs/<config name>)")
    p.add_argument("--resume", nargs="?", const="latest", default=None, metavar="CHECKPOINT",
                   help="continue from the latest complete checkpoint in OUT (or from the given checkpoint "
                        "folder); the number of ranks may differ from the original run")
    p.add_argument("--force", action="store_true",
                   help="OUT already holds a run (checkpoints, metrics): delete that run's files and start "
                        "afresh (without --force or --resume such an OUT is refused, so runs never mix)")
    p.add_argument("--elastic", action="store_true",
                   help="under an elastic horovodrun (--min-np/--max-np/--host-discovery-script): keep training "
                        "when workers leave or join, from the last checkpoint (docs/reliability.md: Elastic pretraining)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.cycles=10 (repeatable; value parsed as YAML)")
    return p


# What a run writes into OUT. Any of the first three means OUT holds a run that a new one would
# mix with (metrics appended to the old, checkpoints of two runs side by side).
RUN_MARKERS = ("checkpoints", "metrics.jsonl", "timing.json")
RUN_FILES = RUN_MARKERS + ("log.txt", "config.yaml", "debug")


def existing_run(out: Path) -> list[str]:
    """The run files already in `out` that mark a previous run (empty when none)."""
    return [name for name in RUN_MARKERS if (out / name).exists()]


def clear_run(out: Path) -> list[str]:
    """Delete a previous run's files from `out` (only those a run writes; anything else stays)."""
    import shutil
    removed = []
    for name in RUN_FILES:
        path = out / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(name)
    return removed


def check_out_folder(out: Path) -> None:
    """Create OUT and prove it writable now, not at the first checkpoint hours later."""
    from pretrain.checkpoint import RunFolderError, write_failed
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {out}: is a file, expected a run folder")
    probe = out / f".write-test-{os.getpid()}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe.write_text("")
        probe.unlink()
    except OSError as e:  # read-only, a parent that is a file, disk full
        raise write_failed(e.filename or out, e) from None


class _RunLogHandler(logging.FileHandler):
    """OUT/log.txt. logging's default prints a traceback on a failed write and carries on; a run
    whose log cannot be written (folder made read-only, disk full) stops with an error naming it."""

    def handleError(self, record):
        import sys as _sys
        from pretrain.checkpoint import write_failed
        e = _sys.exc_info()[1]
        if isinstance(e, OSError):
            raise write_failed(self.baseFilename, e) from None
        super().handleError(record)


def _set_threads(cfg) -> int:
    """OMP_NUM_THREADS for this rank: the config's value, else an explicit environment value, else
    the host's cores divided by the ranks on this host (N ranks x all cores would oversubscribe)."""
    from pretrain.distributed import launched_local_size
    if cfg.runtime.threads > 0:
        threads = cfg.runtime.threads
    elif os.environ.get("OMP_NUM_THREADS", "").isdigit():
        threads = int(os.environ["OMP_NUM_THREADS"])
    else:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = max(1, cores // max(1, launched_local_size()))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if cfg.model.mode == "fast":
        # Fast mode's region batches change shape from step to step: cuDNN autotuning (MXNet's
        # default, read when each conv is created) would re-tune for every new shape on a GPU.
        os.environ.setdefault("MXNET_CUDNN_AUTOTUNE_DEFAULT", "0")
        # The same on a CPU: MXNet keeps one oneDNN primitive (with its workspaces) per layer and
        # input shape, unbounded by default. The real-cpu recipe's rank grew to 10.7 GB by step
        # 300 and was OOM-killed; a bounded cache (entries per op, least recently used out) keeps
        # it flat. MXNet reads it once, at import: set here, before that.
        os.environ.setdefault("MXNET_MKLDNN_CACHE_NUM", str(FAST_MODE_DNNL_CACHE))
    return threads


FAST_MODE_DNNL_CACHE = 64  # MXNET_MKLDNN_CACHE_NUM in fast mode (see _set_threads' comment)


def _logger(world, out: Path) -> logging.Logger:
    log = logging.getLogger("mdnet-pretrain")
    log.handlers.clear()
    log.propagate = False
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    h = logging.StreamHandler(sys.stdout)
    h.setFormatter(fmt)
    log.addHandler(h)
    if world.is_main:
        fh = _RunLogHandler(out / "log.txt")
        fh.setFormatter(fmt)
        log.addHandler(fh)
        log.setLevel(logging.INFO)
    else:
        log.setLevel(logging.WARNING)  # other ranks: only problems
    return log


def _environment(world, threads: int, pinned) -> list[str]:
    import cv2
    import h5py
    import mxnet as mx
    import numpy as np
    try:
        import importlib.metadata as md
        hvd_version = md.version("horovod")
    except Exception:  # noqa: BLE001 - horovod is optional for a single process
        hvd_version = "not installed"
    feats = mx.runtime.Features()
    return [
        f"env: python {platform.python_version()}, mxnet {mx.__version__} (MKLDNN "
        f"{'on' if feats.is_enabled('MKLDNN') else 'off'}, CUDA {'on' if feats.is_enabled('CUDA') else 'off'}), "
        f"horovod {hvd_version}, numpy {np.__version__}, opencv {cv2.__version__}, h5py {h5py.__version__}",
        f"env: host {platform.node()}, {os.cpu_count()} cpus; world {world.size} rank(s) via {world.backend}, "
        f"{world.local_size} on this host; OMP_NUM_THREADS={threads} per rank"
        + (f", pinned to cores {pinned}" if pinned else "")
        + f", MXNET_CPU_WORKER_NTHREADS={os.environ.get('MXNET_CPU_WORKER_NTHREADS', '1 (default)')}",
    ]


def main(args: argparse.Namespace) -> int:
    from online.config import ConfigError, save_config
    from pretrain import config as pconfig

    out = Path(args.out) if args.out else Path("runs") / (Path(args.config).stem if args.config else "pretrain")
    config_path = args.config
    if args.resume and config_path is None:
        config_path = out / "config.yaml"
        if not config_path.is_file():
            print(f"mdnet-pretrain: --resume without --config needs {config_path}", file=sys.stderr)
            return 2
    if config_path is None:
        print("mdnet-pretrain: --config is required (e.g. --config cluster/configs/demo.yaml)", file=sys.stderr)
        return 2
    try:
        cfg = pconfig.load(config_path, args.overrides)
    except ConfigError as e:
        print(f"mdnet-pretrain: config error: {e}", file=sys.stderr)
        return 2
    if args.resume and args.force:
        # --resume wins: it deletes nothing. A resume command printed after a failure repeats the
        # original arguments, --force included, and must not wipe the run it is meant to continue.
        print("mdnet-pretrain: warning: --force is ignored with --resume (nothing is deleted)", file=sys.stderr)
        args.force = False
    found = existing_run(out) if out.is_dir() else []
    refuse = None
    if found and not args.resume and not args.force:
        refuse = (f"mdnet-pretrain: {out} already holds a run ({', '.join(found)}); use --resume to continue "
                  f"it or --force to delete it and start again (or another --out)")
        # --elastic: a worker the driver starts later finds the running job's files here; whether
        # it joins that job or is refused is known only after it meets the others (below).
        if not args.elastic:
            print(refuse, file=sys.stderr)
            return 2
    from pretrain.checkpoint import RunFolderError
    try:
        check_out_folder(out)
    except RunFolderError as e:
        print(f"mdnet-pretrain: {e}", file=sys.stderr)
        return 2
    threads = _set_threads(cfg)

    import random

    import mxnet as mx
    import numpy as np

    from online.sequence import DataError
    from pretrain import checkpoint as ckpt
    from pretrain import distributed as dist
    from pretrain.trainer import Pretrainer

    world = dist.init()  # Horovod: init (single-process world without a launcher)
    joined = None
    if args.elastic:
        if not dist.elastic_launched():
            print("mdnet-pretrain: warning: --elastic without an elastic horovodrun (--min-np, --max-np, "
                  "--host-discovery-script): the world is fixed", file=sys.stderr)
            args.elastic = False
        else:
            from pretrain import elastic
            # Horovod: one allgather; workers already training tell what a joining worker resumes from.
            joined = elastic.agree({"started": False, "committed": None, "generation": 0})
        if joined is not None:
            refuse, args.force = None, False  # joining the running job: its files are ours
        if refuse:
            print(refuse, file=sys.stderr)
            return 2
    pinned = dist.pin_to_cores(world, threads) if cfg.runtime.pin_cores else None
    try:
        # Rank 0 only; the others write nothing into OUT before the first checkpoint, which comes
        # after setup's collectives (so after this).
        cleared = clear_run(out) if args.force and world.is_main and found else []
        log = _logger(world, out)
    except OSError as e:
        print(f"mdnet-pretrain: cannot prepare {out}: {e.filename or out}: {e.strerror or e}", file=sys.stderr)
        return 2
    if cleared:
        log.info(f"--force: deleted the previous run in {out} ({', '.join(cleared)})")
    if world.is_main:
        for line in _environment(world, threads, pinned):
            log.info(line)
    def seed(world):
        # Seed with seed + rank: anything random outside the per-step generators differs per rank.
        random.seed(cfg.seed + world.rank)
        np.random.seed(cfg.seed + world.rank)
        mx.random.seed(cfg.seed + world.rank)
    seed(world)

    resume_from = None
    if joined is not None:
        resume_from = Path(joined["resume_from"]) if joined["resume_from"] else None
    elif args.resume:
        def warn(msg):  # a damaged latest checkpoint: say so on every rank's console, use the previous
            print(f"mdnet-pretrain: warning: {msg}", file=sys.stderr)
            if world.is_main:
                log.warning(f"warning: {msg}")
        try:
            resume_from = ckpt.find_latest(out if args.resume == "latest" else args.resume, warn=warn)
        except ckpt.CheckpointError as e:
            print(f"mdnet-pretrain: cannot resume: {e}", file=sys.stderr)
            return 2
    try:
        if world.is_main:
            try:
                save_config(cfg, out / "config.yaml")
            except OSError as e:
                raise ckpt.write_failed(out / "config.yaml", e) from None
            log.info(f"config: {config_path}" + (f" with {' '.join(args.overrides)}" if args.overrides else "")
                     + f" -> {out / 'config.yaml'}")
        if args.elastic:
            from pretrain import elastic
            elastic.run(cfg, world, out, lambda w: _logger(w, out), seed, resume_from=resume_from,
                        generation=joined["generation"] if joined else 0)
        else:
            trainer = Pretrainer(cfg, world, out, log, resume_from=resume_from)
            trainer.setup()
            trainer.run()
    except (DataError, ckpt.CheckpointError, ckpt.RunFolderError, ConfigError, ValueError) as e:
        # Under horovodrun one rank failing makes the others hang in a collective until the
        # launcher kills them; say clearly what happened on the rank that knows.
        print(f"mdnet-pretrain: rank {world.rank}: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # a write the run folder's own errors do not cover
        print(f"mdnet-pretrain: rank {world.rank}: {e.filename or out}: {e.strerror or e}", file=sys.stderr)
        return 2
    return 0


def run(argv=None):
    sys.exit(main(build_parser().parse_args(argv)))


if __name__ == "__main__":
    run()
