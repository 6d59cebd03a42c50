"""Checkpoint files: atomic writes, completeness, latest pointer, pruning, no pickle."""
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from pretrain import checkpoint as ckpt


def _meta(step: int, world: int = 2, per_cycle: int = 4) -> ckpt.CheckpointMeta:
    return ckpt.CheckpointMeta(step=step, world_size=world, steps_per_cycle=per_cycle, total_steps=10 * per_cycle,
                               domains=["seq00"],
                               shards={}, datasets=[], spec={}, seed=0, config={})


def _write(run: Path, step: int, world: int = 2, complete: bool = True, per_cycle: int = 4):
    d = ckpt.new_checkpoint_dir(run, step, world, per_cycle)
    d.mkdir(parents=True, exist_ok=True)
    params = {"conv1_weight": np.full((2, 3), step, np.float32), "fc5_bias": np.arange(3, dtype=np.float32)}
    ckpt.write_shared(d, params, {k: v * 0.5 for k, v in params.items()}, step)
    for r in range(world):
        branches = {f"seq{r}{k}": {"weight": np.full((2, 4), r, np.float32), "bias": np.zeros(2, np.float32),
                                   "momentum_weight": np.ones((2, 4), np.float32),
                                   "momentum_bias": np.ones(2, np.float32)} for k in range(2)}
        ckpt.write_branches(d, r, branches, step, {"counters": np.arange(3.0) + r, "epoch_time_s": 1.5})
    if complete:
        ckpt.write_meta(run, _meta(step, world, per_cycle), d)
    return d


def test_latest_and_prune_follow_training_progress_not_step_numbers(tmp_path):
    # A run continued on twice the ranks: 8 steps per cycle on 1 rank, 4 on 2. 1-rank step 12 is
    # 1.5 cycles; 2-rank step 8 is 2 cycles, so it is the newer one despite its smaller number.
    _write(tmp_path, 12, world=1, per_cycle=8)
    newer = _write(tmp_path, 8, world=2, per_cycle=4)
    assert ckpt.find_latest(tmp_path) == newer
    _write(tmp_path, 10, world=2, per_cycle=4)  # 2.5 cycles
    ckpt.prune(tmp_path, keep=2)
    left = sorted(p.name for p in (tmp_path / ckpt.CKPT_DIR).iterdir() if p.is_dir())
    assert left == [ckpt.ckpt_name(8, 2, 4), ckpt.ckpt_name(10, 2, 4)]  # the 1-rank step 12 (1.5 cycles) went


def test_roundtrip_and_resharding(tmp_path):
    d = _write(tmp_path, 10)
    assert ckpt.find_latest(tmp_path) == d
    params, mom = ckpt.read_shared(d)
    assert np.array_equal(params["conv1_weight"], np.full((2, 3), 10))
    assert np.array_equal(mom["conv1_weight"], np.full((2, 3), 5))
    # Any rank can read the branches it now owns from all files, whoever wrote them.
    branches, extras = ckpt.read_branches(d, ["seq01", "seq10"])
    assert sorted(branches) == ["seq01", "seq10"]
    assert branches["seq10"]["weight"][0, 0] == 1
    assert np.array_equal(extras["counters"], np.arange(3.0) * 2 + 1)  # summed over the two files
    assert float(extras["epoch_time_s"]) == 3.0
    with pytest.raises(ckpt.CheckpointError, match="no branch for domain"):
        ckpt.read_branches(d, ["nope"])


def test_missing_meta_never_becomes_latest(tmp_path):
    good = _write(tmp_path, 10)
    _write(tmp_path, 20, complete=False)  # killed before meta.json: all data files, no meta
    assert ckpt.find_latest(tmp_path) == good
    assert (tmp_path / ckpt.CKPT_DIR / ckpt.LATEST).read_text().strip() == good.name
    # Even a `latest` pointing at the incomplete one (e.g. edited by hand) falls back.
    (tmp_path / ckpt.CKPT_DIR / ckpt.LATEST).write_text(ckpt.ckpt_name(20, 2, 4))
    assert ckpt.find_latest(tmp_path) == good
    with pytest.raises(ckpt.CheckpointError, match="incomplete"):
        ckpt.find_latest(tmp_path / ckpt.CKPT_DIR / ckpt.ckpt_name(20, 2, 4))


def test_interrupted_file_write_leaves_old_file(tmp_path, monkeypatch):
    d = _write(tmp_path, 10)
    before = (d / ckpt.SHARED).read_bytes()

    class Killed(Exception):
        pass

    real_create = h5py.Group.create_dataset
    calls = {"n": 0}

    def dying_create(self, *a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise Killed()  # "killed" half way through writing the file
        return real_create(self, *a, **kw)

    monkeypatch.setattr(h5py.Group, "create_dataset", dying_create)
    with pytest.raises(Killed):
        ckpt.write_shared(d, {"conv1_weight": np.zeros((2, 3)), "fc5_bias": np.zeros(3)}, {}, 11)
    monkeypatch.undo()
    assert (d / ckpt.SHARED).read_bytes() == before  # the old complete file, untouched
    assert not [p for p in os.listdir(d) if p.endswith(".tmp")]  # temp file cleaned up
    assert ckpt.find_latest(tmp_path) == d


def test_meta_refuses_missing_files(tmp_path):
    d = _write(tmp_path, 10, complete=False)
    os.remove(d / ckpt.branch_file(1))  # one rank never finished
    with pytest.raises(ckpt.CheckpointError, match="missing"):
        ckpt.write_meta(tmp_path, _meta(10, world=2), d)
    assert not (d / ckpt.META).exists()


def test_prune_keeps_last_k_complete(tmp_path):
    for s in (10, 20, 30, 40):
        _write(tmp_path, s)
    _write(tmp_path, 25, complete=False)  # stale partial, older than the newest complete
    _write(tmp_path, 50, complete=False)  # newer partial: might be in progress, keep it
    removed = ckpt.prune(tmp_path, keep=2)
    left = sorted(p.name for p in (tmp_path / ckpt.CKPT_DIR).iterdir() if p.is_dir())
    assert left == [ckpt.ckpt_name(s, 2, 4) for s in (30, 40, 50)]
    assert len(removed) == 3


def test_files_are_plain_hdf5_and_json(tmp_path):
    d = _write(tmp_path, 10)
    meta = json.loads((d / ckpt.META).read_text())
    assert meta["step"] == 10 and meta["format"] == ckpt.FORMAT
    assert ckpt.read_meta(d) == ckpt.CheckpointMeta.from_json((d / ckpt.META).read_text(), "x")
    assert ckpt.read_meta(d).step == 10 and ckpt.read_meta(d).files == [ckpt.SHARED] + [ckpt.branch_file(r) for r in (0, 1)]


def test_meta_errors_name_the_problem(tmp_path):
    d = _write(tmp_path, 10)
    (d / ckpt.META).write_text("{not json")
    with pytest.raises(ckpt.CheckpointError, match="not valid JSON"):
        ckpt.read_meta(d)
    raw = json.loads(_meta(10).to_json())
    del raw["step"]
    (d / ckpt.META).write_text(json.dumps(raw))
    with pytest.raises(ckpt.CheckpointError, match=r"missing keys \['step'\]"):
        ckpt.read_meta(d)
    with h5py.File(d / ckpt.branch_file(0), "r") as f:
        # Strings as HDF5 strings, arrays as float32 datasets: nothing object-typed / pickled.
        for key in ("weight", "bias", "momentum_weight", "momentum_bias"):
            assert f[key].dtype == np.float32
        assert h5py.check_string_dtype(f["names"].dtype) is not None


def test_folder_names_carry_progress_and_world_size():
    # 2.25 cycles: step 9 of 4-step cycles on 2 ranks; the same step on 1 rank (8-step cycles) is
    # another folder, and names sort by progress as text.
    assert ckpt.ckpt_name(9, 2, 4) == "ckpt-c000002.250000-w2-s00000009"
    assert ckpt.ckpt_name(9, 1, 8) == "ckpt-c000001.125000-w1-s00000009"
    assert ckpt.ckpt_name(2, 3, 3) == "ckpt-c000000.666666-w3-s00000002"  # rounded down
    assert ckpt.ckpt_name(9, 2, 4, rerun=1) == "ckpt-c000002.250000-w2-s00000009-r1"
    assert ckpt.ckpt_name(9, 1, 8) < ckpt.ckpt_name(9, 2, 4) < ckpt.ckpt_name(12, 1, 4)
    for name in (ckpt.ckpt_name(9, 2, 4), ckpt.ckpt_name(9, 2, 4, 3), "ckpt-00000009"):
        assert ckpt.is_checkpoint_name(name)
    assert not ckpt.is_checkpoint_name("ckpt-9") and not ckpt.is_checkpoint_name(ckpt.LATEST)


def _files(run: Path) -> dict:
    return {p.name: {f.name: f.read_bytes() for f in sorted(p.iterdir())}
            for p in sorted((run / ckpt.CKPT_DIR).iterdir()) if p.is_dir()}


def test_resume_on_fewer_ranks_never_rewrites_an_existing_checkpoint(tmp_path):
    # 6 domains: 3 steps per cycle on 2 ranks, 6 on 1. The 2-rank run checkpoints at steps 2..12;
    # resumed from its step 2 (0.67 cycles) on 1 rank, it starts at step 4 and checkpoints at
    # steps 6, 8, 10, 12: by step number those were the 2-rank folders, rewritten in place.
    for s in (2, 4, 6, 8, 10, 12):
        _write(tmp_path, s, world=2, per_cycle=3)
    before = _files(tmp_path)
    for s in (6, 8, 10, 12):
        _write(tmp_path, s, world=1, per_cycle=6)
    after = _files(tmp_path)
    assert {k: after[k] for k in before} == before  # every existing folder byte for byte
    assert sorted(set(after) - set(before)) == [ckpt.ckpt_name(s, 1, 6) for s in (6, 8, 10, 12)]
    for name in after:
        m = ckpt.read_meta(tmp_path / ckpt.CKPT_DIR / name)
        assert name == ckpt.ckpt_name(m.step, m.world_size, m.steps_per_cycle)
    # The most progress wins: the 2-rank step 12 (4 cycles), not the 1-rank step 12 (2 cycles).
    assert ckpt.find_latest(tmp_path).name == ckpt.ckpt_name(12, 2, 3)


def test_same_world_and_step_again_gets_a_rerun_folder(tmp_path):
    # Resumed from an older checkpoint, a run may reach an existing (world size, step) again with
    # other weights (another world size in between): written beside it, never into it.
    first = _write(tmp_path, 6, world=1, per_cycle=6)
    before = _files(tmp_path)
    again = _write(tmp_path, 6, world=1, per_cycle=6)
    assert again.name == ckpt.ckpt_name(6, 1, 6, rerun=1) and _files(tmp_path)[first.name] == before[first.name]
    assert ckpt.find_latest(tmp_path) == again  # equal progress: the later one
    assert (tmp_path / ckpt.CKPT_DIR / ckpt.LATEST).read_text().strip() == again.name
    with pytest.raises(ckpt.CheckpointError, match="already holds a complete checkpoint"):
        ckpt.write_meta(tmp_path, _meta(6, 1, 6), first)
    # An incomplete folder (a write killed before meta.json) is reused, not skipped.
    partial = _write(tmp_path, 8, world=1, per_cycle=6, complete=False)
    assert ckpt.new_checkpoint_dir(tmp_path, 8, 1, 6) == partial


def test_step_named_checkpoints_of_older_runs_are_still_found_and_pruned(tmp_path):
    old = tmp_path / ckpt.CKPT_DIR / "ckpt-00000004"  # 1 rank, 4-step cycles: 1 cycle
    old.mkdir(parents=True)
    params = {"conv1_weight": np.zeros((2, 3), np.float32)}
    ckpt.write_shared(old, params, params, 4)
    ckpt.write_branches(old, 0, {}, 4, {"counters": np.zeros(3), "epoch_time_s": 1.0})
    ckpt.write_meta(tmp_path, _meta(4, 1, 4), old)
    assert ckpt.find_latest(tmp_path) == old and ckpt.find_latest(old) == old
    newer = _write(tmp_path, 6, world=1, per_cycle=4)  # 1.5 cycles
    assert ckpt.find_latest(tmp_path) == newer
    ckpt.prune(tmp_path, keep=1)
    assert not old.exists() and newer.is_dir()
