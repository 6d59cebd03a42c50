"""Everything distributed, in one module: Horovod when launched by horovodrun/mpirun, else one process.

No other module imports horovod. Without a launcher (plain `python -m pretrain.cli`) or without
Horovod installed, the world is one rank and every collective is a no-op, so the same training code
runs either way. Lines that talk to other ranks are marked `# Horovod:`.

Why the collectives go through one flat buffer instead of handing Horovod the parameters' own
arrays: on CPU, MKLDNN keeps some arrays in its blocked layout (conv weights right after an
inference forward, e.g. hard-negative mining), and Horovod cannot read those ("We can't generate
TBlob for MKLDNN data"). `reshape` + `concat` always produce a plain-layout copy, MKLDNN stays on
for the compute (turning it off costs ~2.4x), and one fused collective per step is also cheaper
than one per parameter. The copies cost ~20 ms per step for full VGG-M widths (4.4 M floats).

Rules every caller follows, because Horovod matches collectives across ranks by name and order:
the same calls, in the same order, with the same names, on every rank.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import mxnet as mx
import numpy as np
from mxnet import gluon

# Environment variables that launchers set for every rank (horovodrun with Gloo; Open MPI; MPICH /
# Intel MPI / Slurm's PMI). Their presence is what "launched distributed" means.
_LAUNCHER_RANK_VARS = ("HOROVOD_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK")
_LAUNCHER_SIZE_VARS = ("HOROVOD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")

_hvd = None  # the horovod.mxnet module once initialised with more than one rank


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1
    backend: str = "single-process"

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_size() -> int:
    """World size the launcher announced through the environment (1 when there is none)."""
    for var in _LAUNCHER_SIZE_VARS:
        if var in os.environ:
            return int(os.environ[var])
    return 1


def launched_local_size() -> int:
    for var in ("HOROVOD_LOCAL_SIZE", "OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS"):
        if var in os.environ:
            return int(os.environ[var])
    return 1


def init() -> World:
    """Start Horovod when a launcher started us; otherwise the single-process world."""
    global _hvd
    launched = any(v in os.environ for v in _LAUNCHER_RANK_VARS)
    if not launched:
        return World()
    try:
        import horovod.mxnet as hvd  # Horovod: the only import of horovod in the project
    except ImportError as e:
        if launched_size() > 1:
            raise RuntimeError(f"launched as one of {launched_size()} ranks but horovod.mxnet cannot be "
                               f"imported ({e}); install it with `make install`") from e
        return World()
    # Horovod's background thread negotiates every HOROVOD_CYCLE_TIME ms (default 1 ms), which
    # burns measurable CPU on small CPU nodes; we issue one fused allreduce per ~1 s step, so a
    # 10 ms cycle costs no latency that matters. An explicit setting (or --cycle-time-ms) wins.
    os.environ.setdefault("HOROVOD_CYCLE_TIME", "10")
    hvd.init()  # Horovod: initialise (Gloo or MPI, whichever the launcher set up)
    if hvd.size() == 1:
        return World(backend="horovod (1 rank)")
    _hvd = hvd
    backend = "horovod/gloo" if hvd.gloo_enabled() else "horovod/mpi"
    return World(rank=hvd.rank(), size=hvd.size(), local_rank=hvd.local_rank(),  # Horovod: rank/size
                 local_size=hvd.local_size(), backend=backend)


def _flat(arrays) -> mx.nd.NDArray:
    # Plain-layout copy of all arrays, back to back (see the module docstring for why).
    return mx.nd.concat(*[a.reshape((-1,)) for a in arrays], dim=0)


def _unflat(flat: mx.nd.NDArray, arrays) -> None:
    offset = 0
    for a in arrays:
        n = a.size
        a[:] = flat[offset:offset + n].reshape(a.shape)
        offset += n


def allreduce_average_(arrays, name: str) -> None:
    """Average `arrays` (NDArrays, any layout) over all ranks, in place."""
    if _hvd is None or not arrays:
        return
    flat = _flat(arrays)
    _hvd.allreduce_(flat, average=True, name=name)  # Horovod: one fused allreduce
    _unflat(flat, arrays)


def broadcast_(arrays, name: str, root_rank: int = 0) -> None:
    """Overwrite `arrays` on every rank with root_rank's values, in place."""
    if _hvd is None or not arrays:
        return
    flat = _flat(arrays)
    _hvd.broadcast_(flat, root_rank=root_rank, name=name)  # Horovod: broadcast from root
    _unflat(flat, arrays)


def broadcast_parameters(params: dict, prefix: str, root_rank: int = 0) -> None:
    """Broadcast Gluon parameters (name -> Parameter), in sorted-name order so all ranks agree."""
    names = sorted(params)
    broadcast_([params[n].data() for n in names], name=f"{prefix}bcast", root_rank=root_rank)


def allreduce_sum_np(values: np.ndarray, name: str) -> np.ndarray:
    """Sum a float64 vector over all ranks (metric counters, timings); returns a new array."""
    values = np.asarray(values, dtype=np.float64)
    if _hvd is None:
        return values.copy()
    t = mx.nd.array(values, dtype=np.float64)
    _hvd.allreduce_(t, average=False, name=name)  # Horovod: sum of per-rank counters
    return t.asnumpy()


def barrier(name: str = "barrier") -> None:
    """Wait until every rank got here (a tiny allreduce; Horovod's MXNet API has no barrier)."""
    if _hvd is not None:
        allreduce_sum_np(np.zeros(1), name)


class SharedTrainer(gluon.Trainer):
    """A gluon.Trainer for the shared parameters whose allreduce averages over ranks with Horovod.

    Use it as `allreduce_grads()` -> clip the (now identical) gradients -> `update(batch_size)`:
    the clipping then sees the averaged gradient, the same on every rank, so every rank applies
    the same update and the shared weights stay bit-identical. (`step()` = allreduce + update
    works too, without clipping.) It plays the role of `hvd.DistributedTrainer`, whose own
    allreduce hands Horovod the parameters' arrays (MKLDNN layout breaks it on CPU) and, on builds
    without NCCL averaging, sums the gradients and divides in the optimizer, so a clip threshold
    would see N times the averaged gradient. The parameters are taken in sorted-name order so the
    flat buffer has the same layout on every rank.
    """

    def __init__(self, params: dict, optimizer, optimizer_params=None, prefix: str = "shared."):
        ordered = {n: params[n] for n in sorted(params)}
        super().__init__(ordered, optimizer, optimizer_params, kvstore=None)
        self._hvd_name = f"{prefix}grads"

    def _allreduce_grads(self):
        grads = [p.list_grad()[0] for p in self._params if p.grad_req != "null"]
        allreduce_average_(grads, self._hvd_name)  # Horovod: average shared gradients over ranks


def pin_to_cores(world: World, threads: int) -> list[int]:
    """Restrict this process to `threads` cores of its own (local_rank-th block); returns them."""
    cores = sorted(os.sched_getaffinity(0))
    start = (world.local_rank * threads) % max(len(cores), 1)
    mine = [cores[(start + i) % len(cores)] for i in range(threads)]
    # sched_setaffinity(0) pins only the calling thread; pin every thread that exists (MXNet's
    # engine and OpenMP threads may already run), later ones inherit it.
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), mine)
        except OSError:
            pass  # a thread that just ended
    return mine
