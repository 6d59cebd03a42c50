"""Checkpoints: plain arrays in HDF5 plus a JSON manifest, written so a crash never corrupts one.

Layout under the run directory (CKPT = ckpt-c000002.250000-w2-s00000009, see below):

    checkpoints/CKPT/shared.h5          rank 0: /params/<name>, /momentum/<name> (conv1..fc5)
    checkpoints/CKPT/branches-rank0.h5  every rank: its fc6 branches, keyed by domain name:
                                        names, weight (M,2,W), bias (M,2), momentum_weight,
                                        momentum_bias; attrs: epoch counters of that rank
    checkpoints/CKPT/meta.json          rank 0, written LAST: step, world size, files and
                                        their size + SHA-256, domains, seed, resolved config, time
    checkpoints/latest                  name of the newest complete checkpoint

Folder names carry the training progress, not just the step number, because a step number
belongs to a world size (3 steps per cycle on 2 ranks of 6 domains, 6 on 1; resume on another
number of ranks, elastic jobs): `ckpt-c<cycles done, 6 decimals, rounded down>-w<world size>-
s<step>`, e.g. 2.25 cycles = step 9 of 4-step cycles on 2 ranks is ckpt-c000002.250000-w2-s00000009.
Names sort by progress as text; (world size, step) makes them unique for a given run (the cycle
length is a function of the world size and the data, which a resume may not change). A checkpoint
is never written into a folder that already holds a complete one: a run resumed from an older
checkpoint that reaches an existing name again writes `<name>-r1` (`-r2`, ...) beside it.
Folders named by step only (`ckpt-00001200`, written before) are still found, ordered and pruned.

Every file is written to a temporary name in the same folder, fsynced and renamed (os.replace is
atomic on POSIX), so a reader sees the old file or the whole new one. A checkpoint is complete only
once its meta.json exists, and meta.json is written only after every rank has finished its branch
file (a barrier), so a job killed at any point leaves the previous complete checkpoint as `latest`;
`latest` is a convenience: `find_latest` takes the newest complete checkpoint. meta.json records
the size and SHA-256 of every file it lists (`checksums`); `find_latest` verifies them, and on a run
folder skips a damaged checkpoint (a truncated copy, a disk that filled up, a file edited by hand)
with a warning naming the damaged file, falling back to the previous complete one. Checkpoints
written before checksums were recorded are checked for completeness only. No pickle anywhere
(h5py arrays, JSON).

Randomness needs no saved generator state: every step draws from generators seeded by
(seed, rank, step), so the step number is the whole state (meta.json records the scheme).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import h5py
import numpy as np

from online.atomic import atomic_write, atomic_write_text

CKPT_DIR = "checkpoints"
LATEST = "latest"
META = "meta.json"
SHARED = "shared.h5"
FORMAT = "mdnet-pretrain-checkpoint"
FORMAT_VERSION = 1
# ckpt-c000002.250000-w2-s00000009[-r1]; the old ckpt-00001200 (step only) is still read.
_NAME = re.compile(r"ckpt-(?:c(?P<whole>\d{6,})\.(?P<frac>\d{6})-w(?P<world>\d+)-s(?P<step>\d{8,})"
                   r"(?:-r(?P<rerun>\d+))?|(?P<legacy>\d{8,}))$")
_MICRO = 1_000_000  # cycles are named in millionths


class CheckpointError(ValueError):
    """No usable checkpoint, or one that does not fit this run; the message says which and why."""


class RunFolderError(ValueError):
    """A file of the run folder (log, metrics, checkpoint) cannot be written; the message names it."""


def write_failed(path, e: OSError) -> RunFolderError:
    """The project error for an OSError while writing `path` (read-only folder, disk full, ...)."""
    return RunFolderError(f"cannot write {path}: {e.strerror or e}")


def ckpt_name(step: int, world_size: int, steps_per_cycle: int, rerun: int = 0) -> str:
    """The folder name of the checkpoint after `step` steps of `steps_per_cycle`-step cycles on
    `world_size` ranks (module docstring); `rerun` k > 0 appends -r<k>."""
    if world_size < 1 or steps_per_cycle < 1 or step < 0:
        raise ValueError(f"checkpoint name: step {step}, world size {world_size}, {steps_per_cycle} "
                         f"steps per cycle")
    micro = step * _MICRO // steps_per_cycle  # rounded down: never shows a cycle not yet done
    name = f"ckpt-c{micro // _MICRO:06d}.{micro % _MICRO:06d}-w{world_size}-s{step:08d}"
    return name + (f"-r{rerun}" if rerun else "")


def new_checkpoint_dir(run_dir: Path, step: int, world_size: int, steps_per_cycle: int) -> Path:
    """Where to write the checkpoint after `step`: its name (`ckpt_name`), or the first `-r<k>`
    variant whose folder does not hold a complete checkpoint. An existing complete checkpoint is
    never written into: a run resumed from an older checkpoint may reach the same (world size,
    step) again with other weights (it went through another world size in between, or a config
    change), and rewriting the folder in place would leave, for a while or after a crash, a folder
    whose name and contents disagree. An incomplete folder of that name (a write killed before its
    meta.json) is reused.

    Every rank calls this before writing its file and gets the same answer: meta.json of the new
    checkpoint is written only after the barrier that follows every rank's file, so no rank can
    see the folder completed by this very save."""
    root = Path(run_dir) / CKPT_DIR
    k = 0
    while (root / ckpt_name(step, world_size, steps_per_cycle, k) / META).exists():
        k += 1
    return root / ckpt_name(step, world_size, steps_per_cycle, k)


def is_checkpoint_name(name: str) -> bool:
    """A checkpoint folder's name (this naming or the older ckpt-<step>)."""
    return _NAME.match(name) is not None


def _name_key(name: str) -> tuple:
    """(progress in millionths of a cycle or None for old names, step, rerun) from a folder name."""
    m = _NAME.match(name)
    if m.group("legacy") is not None:
        return None, int(m.group("legacy")), 0
    return (int(m.group("whole")) * _MICRO + int(m.group("frac")), int(m.group("step")),
            int(m.group("rerun") or 0))


def branch_file(rank: int) -> str:
    return f"branches-rank{rank}.h5"


RNG_SCHEME = ("stateless: data of rank r at step s from numpy default_rng([seed, r, s, 1]); dropout from "
              "mx.random.seed(SeedSequence([seed, r, s, 2])); branch init from default_rng([seed, domain, "
              "0xFC6]); validation from default_rng([seed, domain, 0x7A1])")


@dataclass(frozen=True)
class CheckpointMeta:
    """meta.json: what a checkpoint holds and the run state needed to continue it.

    The step number is the whole random state (RNG_SCHEME); epoch counters live in the branch
    files. `spec` is NetSpec.to_dict(); `shards` maps rank -> domain names it owned.
    """
    step: int
    world_size: int
    steps_per_cycle: int
    total_steps: int
    domains: list
    shards: dict
    datasets: list
    spec: dict
    seed: int
    config: dict
    rng: str = RNG_SCHEME
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    written: str = ""
    code_commit: str = ""  # online.shipped.code_commit() of the code that wrote it ("" before it was recorded)
    # file name -> {"size": bytes, "sha256": hex} of every file in `files`, filled by write_meta;
    # {} in checkpoints written before it was recorded (then only completeness is checked).
    checksums: dict = field(default_factory=dict)
    # Derived from world_size; stored so readers (is_complete) need no code.
    files: list = field(default_factory=list)
    branch_files: list = field(default_factory=list)

    def __post_init__(self):
        branch = [branch_file(r) for r in range(self.world_size)]
        object.__setattr__(self, "branch_files", branch)
        object.__setattr__(self, "files", [SHARED] + branch)

    @property
    def cycle(self) -> float:
        return self.step / self.steps_per_cycle

    def net_spec(self):
        from online import trunks
        try:
            return trunks.spec_from_dict(self.spec)
        except KeyError as e:
            raise CheckpointError(f"{META}: key 'spec' lacks {e}") from None
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{META}: key 'spec' is malformed ({e})") from None

    def to_json(self) -> str:
        return json.dumps(dict(dataclasses.asdict(self), cycle=self.cycle), indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, where) -> "CheckpointMeta":
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as e:
            raise CheckpointError(f"{where}: not valid JSON ({e})") from None
        if not isinstance(raw, dict) or raw.get("format") != FORMAT:
            got = raw.get("format") if isinstance(raw, dict) else type(raw).__name__
            raise CheckpointError(f"{where}: format {got!r}, expected {FORMAT!r}")
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - set(raw))
        if missing:
            raise CheckpointError(f"{where}: missing keys {missing}")
        for key, kinds in _META_TYPES.items():
            if key in raw and (not isinstance(raw[key], kinds) or isinstance(raw[key], bool)):
                raise CheckpointError(f"{where}: key {key!r} is {raw[key]!r}, expected "
                                      f"{' or '.join(k.__name__ for k in kinds)}")
        for key in ("world_size", "steps_per_cycle"):
            if raw[key] < 1:
                raise CheckpointError(f"{where}: key {key!r} is {raw[key]}, expected >= 1")
        return cls(**{k: v for k, v in raw.items() if k in names})


# JSON types of meta.json's keys, checked on read: a hand-edited file fails naming the key.
_META_TYPES = {"step": (int,), "world_size": (int,), "steps_per_cycle": (int,), "total_steps": (int,),
               "seed": (int,), "domains": (list,), "shards": (dict,), "datasets": (list,), "spec": (dict,),
               "config": (dict,), "checksums": (dict,)}


# ---------------------------------------------------------------------------------- writing

def write_shared(ckpt_dir: Path, params: dict, momentum: dict, step: int) -> None:
    """Rank 0 only: the shared weights and their momentum (name -> np.ndarray)."""
    def write(tmp):
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["step"] = step
            for group, arrays in (("params", params), ("momentum", momentum)):
                g = f.create_group(group)
                for name in sorted(arrays):
                    g.create_dataset(name, data=np.asarray(arrays[name], np.float32))
    _write_file(Path(ckpt_dir) / SHARED, write)


def _write_file(path: Path, write) -> None:
    # atomic_write, with a full disk or a read-only folder reported as the run's error.
    try:
        atomic_write(path, write)
    except OSError as e:
        raise write_failed(path, e) from None


def write_branches(ckpt_dir: Path, rank: int, branches: dict, step: int, extra: dict) -> None:
    """Every rank: its branches {domain name: {weight, bias, momentum_weight, momentum_bias}}.

    `extra` holds small per-rank arrays (epoch counters, timings) stored as attributes.
    """
    names = sorted(branches)
    def write(tmp):
        with h5py.File(tmp, "w") as f:
            f.attrs["format"] = FORMAT
            f.attrs["step"] = step
            f.attrs["rank"] = rank
            for k, v in extra.items():
                f.attrs[k] = np.asarray(v)
            f.create_dataset("names", data=np.array(names, dtype=object), dtype=h5py.string_dtype())
            for key in ("weight", "bias", "momentum_weight", "momentum_bias"):
                if names:
                    data = np.stack([np.asarray(branches[n][key], np.float32) for n in names])
                else:
                    data = np.zeros((0,), np.float32)
                f.create_dataset(key, data=data)
    _write_file(Path(ckpt_dir) / branch_file(rank), write)


def write_meta(run_dir: Path, meta: CheckpointMeta, ckpt_dir: Path | None = None) -> Path:
    """Rank 0, after every rank wrote its files: meta.json (completes the checkpoint), then latest.

    `ckpt_dir`: the folder the files were written to (new_checkpoint_dir); by default the one
    `new_checkpoint_dir` gives for the meta's step, world size and cycle length."""
    if ckpt_dir is None:
        ckpt_dir = new_checkpoint_dir(run_dir, meta.step, meta.world_size, meta.steps_per_cycle)
    ckpt_dir = Path(ckpt_dir)
    if (ckpt_dir / META).exists():
        raise CheckpointError(f"{ckpt_dir}: already holds a complete checkpoint; refusing to rewrite it")
    meta = dataclasses.replace(meta, written=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    for f in meta.files:
        if not (ckpt_dir / f).is_file():
            raise CheckpointError(f"{ckpt_dir}: {f} is missing; refusing to mark the checkpoint complete")
    # What each file was when complete: a later truncation or bit flip is found on resume/export.
    meta = dataclasses.replace(meta, checksums={f: file_digest(ckpt_dir / f) for f in meta.files})
    for path, text in ((ckpt_dir / META, meta.to_json()),
                       (Path(run_dir) / CKPT_DIR / LATEST, ckpt_dir.name + "\n")):
        try:
            atomic_write_text(path, text)
        except OSError as e:
            raise write_failed(path, e) from None
    return ckpt_dir


def file_digest(path: Path) -> dict:
    """{"size": bytes, "sha256": hex} of a file (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return {"size": size, "sha256": h.hexdigest()}


def _progress(ckpt_dir: Path) -> tuple:
    """Sort key of a checkpoint by training progress: (cycles done, then the newest written).
    Step numbers alone do not order checkpoints once the world size changed (resume on more ranks,
    elastic jobs): 1-rank step 18 is 2-rank step 9. Progress is the exact fraction step /
    steps_per_cycle from meta.json; at equal progress (the same point reached on two world sizes,
    or a re-run `-r<k>` folder) the later meta.json wins. A meta that cannot be read has no known
    progress: it sorts as the newest (by its name among such), so find_latest tries it first and
    warns that it is damaged, and prune keeps it."""
    micro, step, rerun = _name_key(ckpt_dir.name)
    try:
        raw = json.loads((ckpt_dir / META).read_text())
        progress = Fraction(int(raw["step"]), int(raw["steps_per_cycle"]))
        written = (ckpt_dir / META).stat().st_mtime_ns
        return (0, progress, written, rerun, step)
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return (1, Fraction(micro if micro is not None else 0, _MICRO), 0, rerun, step)


def _older(a: Path, b: Path) -> bool:
    """By name alone (no meta.json needed): was checkpoint folder `a` written at less training
    progress than `b`? Old step-only names compare by step (what they carry)."""
    (ma, sa, _), (mb, sb, _) = _name_key(a.name), _name_key(b.name)
    if ma is not None and mb is not None:
        return ma < mb
    return sa < sb


def prune(run_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` complete checkpoints (by training progress), and incomplete
    ones older than them."""
    root = Path(run_dir) / CKPT_DIR
    entries = [p for p in root.iterdir() if p.is_dir() and is_checkpoint_name(p.name)]
    complete = sorted((p for p in entries if (p / META).is_file()), key=_progress)
    if not complete:
        return []
    kept = set(complete[-keep:])
    newest = complete[-1]
    removed = []
    for p in sorted(entries, key=lambda p: p.name):
        # An incomplete folder newer than the newest complete one may be being written: leave it.
        complete_here = (p / META).is_file()
        if (complete_here and p not in kept) or (not complete_here and _older(p, newest)):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


# ---------------------------------------------------------------------------------- reading

def is_complete(ckpt_dir: Path) -> bool:
    """meta.json exists and every file it lists does (no checksums: see `verify`)."""
    ckpt_dir = Path(ckpt_dir)
    meta_path = ckpt_dir / META
    if not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and all((ckpt_dir / f).is_file() for f in meta.get("files", []))


def verify(ckpt_dir: Path) -> CheckpointMeta:
    """The checkpoint's meta if it is complete and undamaged; else CheckpointError naming the file.

    Every listed file must exist and, where meta.json records them, have its recorded size and
    SHA-256 (the size first: a truncated copy is found without hashing).
    """
    ckpt_dir = Path(ckpt_dir)
    if not (ckpt_dir / META).is_file():
        raise CheckpointError(f"{ckpt_dir}: incomplete checkpoint: no {META} (the job stopped before "
                              f"the checkpoint was complete)")
    meta = read_meta(ckpt_dir)
    for name in meta.files:
        path = ckpt_dir / name
        if not path.is_file():
            raise CheckpointError(f"{path}: missing (listed in {META}): incomplete checkpoint")
        want = meta.checksums.get(name)
        if not want:
            continue  # written before checksums were recorded
        size = path.stat().st_size
        if size != want.get("size"):
            raise CheckpointError(f"{path}: damaged: {size} bytes, {META} records {want.get('size')} "
                                  f"(truncated copy?)")
        try:
            got = file_digest(path)["sha256"]
        except OSError as e:
            raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
        if got != want.get("sha256"):
            raise CheckpointError(f"{path}: damaged: its SHA-256 does not match the one in {META}")
    return meta


def _stderr_warning(msg: str) -> None:
    print(f"warning: {msg}", file=sys.stderr)


def find_latest(path, warn=_stderr_warning) -> Path:
    """The newest complete, undamaged checkpoint: `path` is a checkpoint folder, or a run folder.

    A checkpoint folder given explicitly must be usable (CheckpointError naming the damaged file).
    In a run folder, checkpoints without meta.json are skipped silently (killed mid-write, or being
    written) and damaged ones with `warn(message)`, so a run resumes from the previous good one.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: does not exist (expected a run folder or a checkpoint folder "
                              f"{CKPT_DIR}/ckpt-...)")
    if is_checkpoint_name(path.name):
        verify(path)
        return path
    root = path / CKPT_DIR
    if not root.is_dir():
        raise CheckpointError(f"{path}: neither a checkpoint folder (ckpt-...) nor a run folder "
                              f"with {CKPT_DIR}/")
    candidates = sorted((p for p in root.iterdir() if p.is_dir() and is_checkpoint_name(p.name)),
                        key=_progress, reverse=True)
    damaged = []
    for cand in candidates:
        if not (cand / META).is_file():
            continue
        try:
            verify(cand)
        except CheckpointError as e:
            damaged.append(cand.name)
            warn(f"{e}; skipping {cand.name}, trying the previous checkpoint")
            continue
        return cand
    raise CheckpointError(f"{root}: no complete checkpoint"
                          + (f" (damaged: {', '.join(damaged)})" if damaged else ""))


def read_meta(ckpt_dir: Path) -> CheckpointMeta:
    path = Path(ckpt_dir) / META
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (incomplete checkpoint)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path}: cannot read ({e})") from None
    return CheckpointMeta.from_json(text, path)


def _h5_read(path: Path, read):
    """read(h5py.File) with a truncated or altered file reported as a CheckpointError naming it."""
    try:
        with h5py.File(path, "r") as f:
            return read(f)
    except CheckpointError:
        raise
    except KeyError as e:
        raise CheckpointError(f"{path}: damaged checkpoint file: {e.args[0] if e.args else e}") from None
    except (OSError, RuntimeError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path}: damaged checkpoint file, HDF5 cannot read it (truncated "
                              f"copy?): {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None


def _arrays(group, path: Path, key: str) -> dict:
    if not isinstance(group, h5py.Group):
        raise CheckpointError(f"{path}: /{key} is not a group (damaged checkpoint file)")
    out = {}
    for n, d in group.items():
        if not isinstance(d, h5py.Dataset) or d.dtype.kind != "f":
            raise CheckpointError(f"{path}: /{key}/{n} is not a float dataset (damaged checkpoint file)")
        out[n] = d[()]
    return out


def read_shared(ckpt_dir: Path) -> tuple[dict, dict]:
    """(params, momentum), name -> float32 array."""
    path = Path(ckpt_dir) / SHARED
    return _h5_read(path, lambda f: (_arrays(f["params"], path, "params"),
                                     _arrays(f["momentum"], path, "momentum")))


def read_branches(ckpt_dir: Path, wanted=None) -> tuple[dict, dict]:
    """(branches {name: {...}} restricted to `wanted` names (all when None), summed extras).

    Reads every rank's branch file, so it works whatever the number of ranks was when written.
    The per-rank extras (epoch counters, epoch time) are summed over the files: metrics are sums
    over ranks, so after a re-shard the total can live on any one rank.
    """
    meta = read_meta(ckpt_dir)
    wanted = None if wanted is None else set(wanted)
    out: dict = {}
    extras: dict = {}
    for fname in meta.branch_files:
        path = Path(ckpt_dir) / fname

        def read(f):
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["names"][()]]
            found = {k: np.asarray(f.attrs[k], np.float64) for k in ("counters", "epoch_time_s") if k in f.attrs}
            keys = ("weight", "bias", "momentum_weight", "momentum_bias")
            if names and any(f[k].shape[:1] != (len(names),) for k in keys):
                raise CheckpointError(f"{path}: {len(names)} branch names but arrays of other lengths "
                                      f"(damaged checkpoint file)")
            # Only the rows this rank owns from a large file: resuming a 2-rank run of 10,000
            # domains on 64 ranks, each would otherwise read both whole files (~80 MB at fc width
            # 512). A small file (or most of one) is read whole: h5py's row selection costs ~1 ms
            # a dataset, more than reading a few hundred rows (resuming from 256 files: 0.9 s vs 0.2).
            rows = [i for i, n in enumerate(names) if wanted is None or n in wanted]
            if not rows:
                return [], found, {}
            if len(rows) * 2 >= len(names) or len(names) < 1024:
                arrays = {k: f[k][()] for k in keys}
                if len(rows) < len(names):
                    arrays = {k: a[rows] for k, a in arrays.items()}
            else:
                arrays = {k: f[k][rows] for k in keys}
            return [names[i] for i in rows], found, arrays
        names, found, arrays = _h5_read(path, read)
        for k, v in found.items():
            extras[k] = v if k not in extras else extras[k] + v
        for i, n in enumerate(names):
            out[n] = {k: a[i] for k, a in arrays.items()}
    if wanted is not None:
        missing = sorted(wanted - set(out))
        if missing:
            raise CheckpointError(f"{ckpt_dir}: no branch for domain(s) {missing[:10]}"
                                  + (f" (+{len(missing) - 10} more)" if len(missing) > 10 else "")
                                  + "; the checkpoint was trained on other sequences")
    return out, extras
