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

When a rank stops (killed, crashed, its node lost), the others learn it one of two ways: the next
collective fails (Horovod shuts down and MXNet raises "Horovod has been shut down"; the wrappers
below turn that into `RankStopped`), or the launcher sends them SIGTERM (horovodrun stops every
rank when one exits non-zero, then SIGKILLs after 5 s; Slurm and Kubernetes stop jobs the same
way). `on_sigterm` reacts to the signal at once, from a helper thread, even while the main thread
sits in a long MXNet call. `peer_status` says which ranks are gone, as far as this machine can see
(ranks on the same node, by pid; a rank that ends because of another one leaves a note first, so
it is not mistaken for the one that stopped). pretrain/trainer.py turns all of it into one line with the resume
command and exit code `RANK_STOPPED_EXIT`.

Debug switch (tests use it; never set it in a real run):
    MDNET_DEBUG_KILL="RANK:STEP"   rank RANK sends itself SIGKILL right before step STEP (0-based:
                                   after STEP steps are done), like a node or OOM killer would.
                                   Unset it before running the printed --resume command.
"""
from __future__ import annotations

import json
import os
import platform
import signal
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import mxnet as mx
import numpy as np
from mxnet import gluon

# Environment variables that launchers set for every rank (horovodrun with Gloo; Open MPI; MPICH /
# Intel MPI / Slurm's PMI). Their presence is what "launched distributed" means.
_LAUNCHER_RANK_VARS = ("HOROVOD_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK")
_LAUNCHER_SIZE_VARS = ("HOROVOD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")

_hvd = None  # the horovod.mxnet module once initialised with more than one rank
_hvd_module = None  # horovod.mxnet once initialised at all (also one rank: elastic resets need it)
# Every rank's (launch host name, node name, pid), gathered once by init(): how to start the same
# world again (horovodrun -H) and which ranks' processes are gone when one stops.
_peers: list = []

# Exit status of a rank that stopped because another rank stopped (or the launcher stopped it):
# sysexits' EX_TEMPFAIL, "try again" -- the run continues with --resume.
RANK_STOPPED_EXIT = 75


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
    """Start Horovod when a launcher started us; otherwise the single-process world. With more than
    one rank, every rank then issues one allgather ("init.peers": host and pid of every rank, for
    the report when a rank stops)."""
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
    return _joined(hvd)


def _joined(hvd) -> World:
    # The World of a freshly initialised Horovod (at start, and after every elastic reset).
    global _hvd, _hvd_module
    _hvd_module = hvd
    if hvd.size() == 1:
        _hvd = None  # one rank: every collective is a no-op
        return World(backend="horovod (1 rank)")
    _hvd = hvd
    _gather_peers()
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


class RankStopped(RuntimeError):
    """A collective failed because Horovod shut down: another rank stopped (or exited early)."""


def is_horovod_shutdown(exc: BaseException) -> bool:
    """True for Horovod's "a rank is gone" errors, however they reach Python: HorovodInternalError,
    or MXNet re-raising the failed asynchronous collective as MXNetError."""
    if isinstance(exc, RankStopped) or type(exc).__name__ == "HorovodInternalError":
        return True
    text = str(exc)
    return "Horovod has been shut down" in text or "Horovod background loop" in text


@contextmanager
def _collective(name: str):
    try:
        yield
    except Exception as e:  # noqa: BLE001 - re-raised unless it is Horovod's shutdown
        if is_horovod_shutdown(e) and not isinstance(e, RankStopped):
            raise RankStopped(f"Horovod shut down during collective {name!r}") from e
        raise


def allreduce_average_(arrays, name: str) -> None:
    """Average `arrays` (NDArrays, any layout) over all ranks, in place."""
    if _hvd is None or not arrays:
        return
    flat = _flat(arrays)
    with _collective(name):
        _hvd.allreduce_(flat, average=True, name=name)  # Horovod: one fused allreduce
        # MXNet runs the collective asynchronously; wait here so a failure surfaces as
        # RankStopped at this call, not later from whichever array happens to be read first.
        flat.wait_to_read()
    _unflat(flat, arrays)


def broadcast_(arrays, name: str, root_rank: int = 0) -> None:
    """Overwrite `arrays` on every rank with root_rank's values, in place."""
    if _hvd is None or not arrays:
        return
    flat = _flat(arrays)
    with _collective(name):
        _hvd.broadcast_(flat, root_rank=root_rank, name=name)  # Horovod: broadcast from root
        flat.wait_to_read()
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
    with _collective(name):
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


# ------------------------------------------------------------------------------ when a rank stops

_PEER_BYTES = 256  # one rank's JSON record, zero-padded, for a fixed-shape allgather


def _gather_peers() -> None:
    """Every rank's (launch host name, node name, pid), in rank order: one allgather at init, the
    same on every rank. JSON in a fixed-size byte row (no pickle)."""
    global _peers
    me = json.dumps([os.environ.get("HOROVOD_HOSTNAME") or platform.node(), platform.node(), os.getpid()])
    row = np.zeros((1, _PEER_BYTES), np.uint8)
    raw = me.encode()[:_PEER_BYTES]
    row[0, :len(raw)] = np.frombuffer(raw, np.uint8)
    with _collective("init.peers"):
        rows = _hvd.allgather(mx.nd.array(row, dtype=np.uint8), name="init.peers").asnumpy()  # Horovod
    _peers = [tuple(json.loads(bytes(r).rstrip(b"\0").decode())) for r in rows]


def launch_prefix() -> list[str]:
    """The launcher words that start this world again: `horovodrun -np N -H host:slots,...` with
    the hosts in rank order (as horovodrun assigns them), [] for a single process."""
    if _hvd is None or not _peers:
        return []
    slots: dict = {}
    for host, _node, _pid in _peers:
        slots[host] = slots.get(host, 0) + 1
    return ["horovodrun", "-np", str(len(_peers)), "-H", ",".join(f"{h}:{n}" for h, n in slots.items())]


def _pid_gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state in ("Z", "X")  # a killed child its launcher has not reaped yet is a zombie
    except FileNotFoundError:
        return True
    except (OSError, IndexError):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except OSError:
            pass
        return False


def _marker(pid: int) -> Path:
    # Node-local, keyed by pid: only ranks on this node can be checked by pid anyway.
    return Path(tempfile.gettempdir()) / f"mdnet-pretrain-stopping-{pid}"


def mark_stopping() -> None:
    """Leave a note that this process is ending on purpose (it saw another rank stop, or got
    SIGTERM), so that a rank on this node that looks at it later does not report it as the one
    that stopped."""
    if not _peers:
        return  # one process: nobody to tell
    try:
        _marker(os.getpid()).touch()
    except OSError:
        pass


def peer_status(wait_s: float = 1.0) -> dict:
    """rank -> "gone" (process ended without a note: killed, crashed) | "ending" (ending because of
    another rank, see mark_stopping) | "running" | "unknown" (on another node, where a pid here
    says nothing).

    A killed process closes its sockets (which is what makes the others' collective fail) a moment
    before the kernel marks it dead, so look again for up to `wait_s` until one is gone."""
    if not _peers:
        return {}
    here = platform.node()
    deadline = time.monotonic() + wait_s
    while True:
        status = {}
        for r, (_host, node, pid) in enumerate(_peers):
            if node != here:
                status[r] = "unknown"
            elif _marker(pid).exists():
                status[r] = "ending"
            else:
                status[r] = "gone" if _pid_gone(pid) else "running"
        if "gone" in status.values() or time.monotonic() >= deadline:
            return status
        time.sleep(0.05)


def clear_stop_marks() -> None:
    """Remove the notes of this node's ranks (the reporting rank, once it has decided)."""
    here = platform.node()
    for _host, node, pid in _peers:
        if node == here:
            try:
                _marker(pid).unlink()
            except OSError:
                pass


@contextmanager
def on_sigterm(callback):
    """While inside: SIGTERM calls `callback()` at once from a helper thread (which should end the
    process), even when the main thread is busy inside MXNet and would run a Python signal handler
    only after that call returns, which can be after the launcher's SIGKILL. The signal's C handler
    writes to a pipe (signal.set_wakeup_fd) that the helper thread reads. Only from the main thread;
    elsewhere this does nothing. The previous handler is restored on the way out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    rfd, wfd = os.pipe()
    os.set_blocking(wfd, False)
    old_handler = signal.signal(signal.SIGTERM, lambda signum, frame: None)  # the helper acts
    old_fd = signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
    done = threading.Event()

    def watch():
        while True:
            data = os.read(rfd, 64)
            if done.is_set() or not data:
                return
            if signal.SIGTERM in data:  # the pipe carries the numbers of every handled signal
                try:
                    callback()
                finally:
                    os._exit(RANK_STOPPED_EXIT)

    thread = threading.Thread(target=watch, name="sigterm-watch", daemon=True)
    thread.start()
    try:
        yield
    finally:
        signal.set_wakeup_fd(old_fd)
        signal.signal(signal.SIGTERM, old_handler)
        done.set()
        os.write(wfd, b"\0")
        thread.join(timeout=5)
        os.close(wfd)
        os.close(rfd)


def debug_kill_step(rank: int):
    """The step before which this rank kills itself (MDNET_DEBUG_KILL="RANK:STEP"), else None."""
    spec = os.environ.get("MDNET_DEBUG_KILL", "").strip()
    if not spec:
        return None
    try:
        r, step = (int(x) for x in spec.split(":"))
    except ValueError:
        raise ValueError(f'MDNET_DEBUG_KILL={spec!r}: expected "RANK:STEP", e.g. "1:3"') from None
    return step if r == rank else None


def kill_self(rank: int, step: int) -> None:
    """SIGKILL this process, as an OOM killer or a lost node would: no cleanup, no Python exit."""
    print(f"MDNET_DEBUG_KILL: rank {rank} kills itself before step {step}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)


# ------------------------------------------------------------------------------ elastic (horovodrun --min-np)
#
# Horovod's elastic driver (`horovodrun -np N --min-np A --max-np B --host-discovery-script S`,
# Gloo) keeps the job alive when a worker dies and starts new workers when the discovery script
# lists more slots. In-process, a worker leaves the broken world with hvd.shutdown() and joins the
# new one with hvd.init() (the driver forms it); Horovod 0.28 has no MXNet elastic module, so the
# state object below is built on horovod.common.elastic.State. pretrain/elastic.py is the loop.


class HostsChanged(RuntimeError):
    """The elastic driver added or removed hosts (Horovod's HostsUpdatedInterrupt), seen by every
    rank at the same commit: leave this world and join the new one."""


def elastic_launched() -> bool:
    """Started by an elastic horovodrun (--min-np / --max-np / --host-discovery-script)."""
    return os.environ.get("HOROVOD_ELASTIC") == "1"


def elastic_state():
    """Horovod's elastic State, registered with the worker's notification service (which the driver
    tells about added and removed hosts). save/restore/sync are no-ops on purpose: the committed
    state of this job is its last complete checkpoint on disk (pretrain/elastic.py says why); what
    the object is for is `commit()` -> check_host_updates, which agrees on host changes across
    ranks (one broadcast) and raises on all of them at the same step."""
    from horovod.common.elastic import State, notification_manager  # Horovod: elastic machinery

    class CheckpointState(State):
        def save(self):
            pass

        def restore(self):
            pass

        def sync(self):
            pass

    state = CheckpointState(bcast_object=lambda obj: _hvd_module.broadcast_object(obj, name="elastic.hosts"),
                            get_rank=lambda: _hvd_module.rank())
    notification_manager.init()  # Horovod: listen for the driver's host updates
    notification_manager.register_listener(state)
    return state


def elastic_commit(state) -> None:
    """Every rank, at the same step (after a complete checkpoint): raises HostsChanged when the
    driver reported added or removed hosts, RankStopped when a rank is gone."""
    from horovod.common.exceptions import HostsUpdatedInterrupt
    try:
        with _collective("elastic.hosts"):
            state.commit()  # Horovod: save (no-op) + agree on host updates (one broadcast)
    except HostsUpdatedInterrupt as e:
        raise HostsChanged("hosts removed" if e.skip_sync else "hosts added or removed") from None


def elastic_reset() -> World:
    """Leave the current world (broken, or outgrown by new hosts) and join the one the elastic
    driver forms now; returns the new World (rank and size may both differ)."""
    global _hvd, _peers
    hvd = _hvd_module
    hvd.shutdown()  # Horovod: drop the old communicator
    _hvd, _peers = None, []
    hvd.init()  # Horovod: rendezvous with the driver's current set of workers
    return _joined(hvd)


def allgather_json(obj, name: str, nbytes: int = 4096) -> list:
    """Every rank's JSON-able `obj`, in rank order (one allgather of fixed-size rows, no pickle)."""
    if _hvd is None:
        return [obj]
    raw = json.dumps(obj).encode()
    if len(raw) > nbytes:
        raise ValueError(f"allgather_json {name!r}: {len(raw)} bytes > {nbytes}")
    row = np.zeros((1, nbytes), np.uint8)
    row[0, :len(raw)] = np.frombuffer(raw, np.uint8)
    with _collective(name):
        rows = _hvd.allgather(mx.nd.array(row, dtype=np.uint8), name=name).asnumpy()  # Horovod
    return [json.loads(bytes(r).rstrip(b"\0").decode()) for r in rows]


def peers() -> list:
    """(launch host, node, pid) of every rank, in rank order ([] for one process)."""
    return list(_peers)
