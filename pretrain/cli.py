"""mdnet-pretrain: multi-domain MDNet pretraining, one process per rank under horovodrun, or alone.

    horovodrun -np 4 -H localhost:4 mdnet-pretrain --config cluster/configs/vot-otb.yaml --out runs/vot-otb
    mdnet-pretrain --config cluster/configs/demo.yaml --out runs/demo          # one process
    horovodrun -np 2 -H localhost:2 mdnet-pretrain --out runs/vot-otb --resume # continue (any -np)
    mdnet-pretrain --config X.yaml --set train.cycles=10 --set optim.lr=2e-4   # overrides

Writes OUT/config.yaml (resolved config), OUT/log.txt, OUT/metrics.jsonl (one JSON object per
epoch and phase), OUT/timing.json and OUT/checkpoints/ (see pretrain/checkpoint.py). Only rank 0
writes logs and shared files; every rank writes its own branch file in each checkpoint.
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
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.cycles=10 (repeatable; value parsed as YAML)")
    return p


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
    return threads


def _logger(world, out: Path) -> logging.Logger:
    log = logging.getLogger("mdnet-pretrain")
    log.handlers.clear()
    log.propagate = False
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    h = logging.StreamHandler(sys.stdout)
    h.setFormatter(fmt)
    log.addHandler(h)
    if world.is_main:
        fh = logging.FileHandler(out / "log.txt")
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
    threads = _set_threads(cfg)

    import random

    import mxnet as mx
    import numpy as np

    from online.sequence import DataError
    from pretrain import checkpoint as ckpt
    from pretrain import distributed as dist
    from pretrain.trainer import Pretrainer

    world = dist.init()  # Horovod: init (single-process world without a launcher)
    pinned = dist.pin_to_cores(world, threads) if cfg.runtime.pin_cores else None
    out.mkdir(parents=True, exist_ok=True)
    log = _logger(world, out)
    if world.is_main:
        for line in _environment(world, threads, pinned):
            log.info(line)
    # Seed with seed + rank: anything random outside the per-step generators differs per rank.
    random.seed(cfg.seed + world.rank)
    np.random.seed(cfg.seed + world.rank)
    mx.random.seed(cfg.seed + world.rank)

    resume_from = None
    if args.resume:
        try:
            resume_from = ckpt.find_latest(out if args.resume == "latest" else args.resume)
        except ckpt.CheckpointError as e:
            print(f"mdnet-pretrain: cannot resume: {e}", file=sys.stderr)
            return 2
    if world.is_main:
        save_config(cfg, out / "config.yaml")
        log.info(f"config: {config_path}" + (f" with {' '.join(args.overrides)}" if args.overrides else "")
                 + f" -> {out / 'config.yaml'}")
    try:
        trainer = Pretrainer(cfg, world, out, log, resume_from=resume_from)
        trainer.setup()
        trainer.run()
    except (DataError, ckpt.CheckpointError, ConfigError, ValueError) as e:
        # Under horovodrun one rank failing makes the others hang in a collective until the
        # launcher kills them; say clearly what happened on the rank that knows.
        print(f"mdnet-pretrain: rank {world.rank}: {e}", file=sys.stderr)
        return 2
    return 0


def run(argv=None):
    sys.exit(main(build_parser().parse_args(argv)))


if __name__ == "__main__":
    run()
