"""Checkpoints: plain arrays in HDF5 plus a JSON manifest, written so a crash never corrupts one.

Layout under the run directory:

    checkpoints/ckpt-00001200/shared.h5          rank 0: /params/<name>, /momentum/<name> (conv1..fc5)
    checkpoints/ckpt-00001200/branches-rank0.h5  every rank: its fc6 branches, keyed by domain name:
                                                 names, weight (M,2,W), bias (M,2), momentum_weight,
                                                 momentum_bias; attrs: epoch counters of that rank
    checkpoints/ckpt-00001200/meta.json          rank 0, written LAST: step, world size, files,
                                                 domains, seed, resolved config, time
    checkpoints/latest                           name of the newest complete checkpoint

Every file is written to a temporary name in the same folder, fsynced and renamed (os.replace is
atomic on POSIX), so a reader sees the old file or the whole new one. A checkpoint is complete only
once its meta.json exists, and meta.json is written only after every rank has finished its branch
file (a barrier), so a job killed at any point leaves the previous complete checkpoint as `latest`;
`latest` is a convenience: `find_latest` also checks that the checkpoint it names is complete and
otherwise falls back to the newest complete one. No pickle anywhere (h5py arrays, JSON).

Randomness needs no saved generator state: every step draws from generators seeded by
(seed, rank, step), so the step number is the whole state (meta.json records the scheme).
"""
from __future__ import annotations

import dataclasses
import json
import re
import shutil
import time
from dataclasses import dataclass, field
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
_NAME = re.compile(r"ckpt-(\d{8,})$")


class CheckpointError(ValueError):
    """No usable checkpoint, or one that does not fit this run; the message says which and why."""


def ckpt_name(step: int) -> str:
    return f"ckpt-{step:08d}"


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
        from online.network import NetSpec
        return NetSpec.from_dict(self.spec)

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
        return cls(**{k: v for k, v in raw.items() if k in names})


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
    atomic_write(Path(ckpt_dir) / SHARED, write)


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
    atomic_write(Path(ckpt_dir) / branch_file(rank), write)


def write_meta(run_dir: Path, meta: CheckpointMeta) -> Path:
    """Rank 0, after every rank wrote its files: meta.json (completes the checkpoint), then latest."""
    ckpt_dir = Path(run_dir) / CKPT_DIR / ckpt_name(meta.step)
    meta = dataclasses.replace(meta, written=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    for f in meta.files:
        if not (ckpt_dir / f).is_file():
            raise CheckpointError(f"{ckpt_dir}: {f} is missing; refusing to mark the checkpoint complete")
    atomic_write_text(ckpt_dir / META, meta.to_json())
    atomic_write_text(Path(run_dir) / CKPT_DIR / LATEST, ckpt_name(meta.step) + "\n")
    return ckpt_dir


def prune(run_dir: Path, keep: int) -> list[Path]:
    """Delete all but the newest `keep` complete checkpoints, and incomplete ones older than them."""
    root = Path(run_dir) / CKPT_DIR
    entries = sorted(((int(m.group(1)), p) for p in root.iterdir()
                      if p.is_dir() and (m := _NAME.match(p.name))), key=lambda t: t[0])
    complete = [(s, p) for s, p in entries if (p / META).is_file()]
    if not complete:
        return []
    kept = {p for _, p in complete[-keep:]}
    newest = complete[-1][0]
    removed = []
    for s, p in entries:
        # An incomplete folder newer than the newest complete one may be being written: leave it.
        complete_here = (p / META).is_file()
        if (complete_here and p not in kept) or (not complete_here and s < newest):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


# ---------------------------------------------------------------------------------- reading

def is_complete(ckpt_dir: Path) -> bool:
    ckpt_dir = Path(ckpt_dir)
    meta_path = ckpt_dir / META
    if not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return all((ckpt_dir / f).is_file() for f in meta.get("files", []))


def find_latest(path) -> Path:
    """The newest complete checkpoint: `path` is a checkpoint folder, or a run folder."""
    path = Path(path)
    if _NAME.match(path.name):
        if not is_complete(path):
            raise CheckpointError(f"{path}: incomplete checkpoint (no {META} or a listed file missing)")
        return path
    root = path / CKPT_DIR
    if not root.is_dir():
        raise CheckpointError(f"{path}: neither a checkpoint folder (ckpt-NNNNNNNN) nor a run folder "
                              f"with {CKPT_DIR}/")
    pointer = root / LATEST
    if pointer.is_file():
        cand = root / pointer.read_text().strip()
        if is_complete(cand):
            return cand
    complete = sorted((p for p in root.iterdir() if p.is_dir() and _NAME.match(p.name) and is_complete(p)),
                      key=lambda p: p.name)
    if not complete:
        raise CheckpointError(f"{root}: no complete checkpoint")
    return complete[-1]


def read_meta(ckpt_dir: Path) -> CheckpointMeta:
    path = Path(ckpt_dir) / META
    return CheckpointMeta.from_json(path.read_text(), path)


def read_shared(ckpt_dir: Path) -> tuple[dict, dict]:
    """(params, momentum), name -> float32 array."""
    with h5py.File(Path(ckpt_dir) / SHARED, "r") as f:
        params = {n: d[()] for n, d in f["params"].items()}
        momentum = {n: d[()] for n, d in f["momentum"].items()}
    return params, momentum


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
        with h5py.File(Path(ckpt_dir) / fname, "r") as f:
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["names"][()]]
            for k in ("counters", "epoch_time_s"):
                if k in f.attrs:
                    v = np.asarray(f.attrs[k], np.float64)
                    extras[k] = v if k not in extras else extras[k] + v
            arrays = {k: f[k][()] for k in ("weight", "bias", "momentum_weight", "momentum_bias")}
            for i, n in enumerate(names):
                if wanted is None or n in wanted:
                    out[n] = {k: a[i] for k, a in arrays.items()}
    if wanted is not None:
        missing = sorted(wanted - set(out))
        if missing:
            raise CheckpointError(f"{ckpt_dir}: no branch for domain(s) {missing[:10]}"
                                  + (f" (+{len(missing) - 10} more)" if len(missing) > 10 else "")
                                  + "; the checkpoint was trained on other sequences")
    return out, extras
