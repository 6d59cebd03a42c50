"""CPU threads for MXNet's OpenMP pool, decided before mxnet is imported (it reads them once).

MXNet 1.9.1 takes half the cores by default on the machines measured here (2-core EPYC: one thread,
CPU time = wall time); `OMP_NUM_THREADS=2` halves a trunk forward. The tools therefore use every
core the process may run on unless told otherwise (`--threads N`, or OMP_NUM_THREADS set by the
caller, which wins over the default but not over an explicit --threads).
"""
from __future__ import annotations

import os
import sys


def usable_cores() -> int:
    """Cores this process may run on (its affinity mask; all cores where that is unknown)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_threads(requested: int | None = None) -> int:
    """Set OMP_NUM_THREADS: `requested`, else the caller's environment value, else every usable core.
    Returns the thread count; warns when mxnet was already imported (then it has no effect)."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if requested is not None and requested > 0:
        threads = int(requested)
    elif env.isdigit() and int(env) > 0:
        threads = int(env)
    else:
        threads = usable_cores()
    if "mxnet" in sys.modules and env != str(threads):
        print(f"warning: mxnet already imported; OMP_NUM_THREADS={threads} may not take effect", file=sys.stderr)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    return threads


def threads_arg(p) -> None:
    """The --threads option of mdnet-track / mdnet-bench track."""
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help=f"CPU threads for MXNet (default: OMP_NUM_THREADS if set, else every core this "
                        f"process may use: {usable_cores()} here)")
