"""What keeps start-up and resume flat in the number of domains (issue 28): the heap sharding gives
the scan's assignment, a pack's /index lists the same sequences as its groups, a resumed rank reads
only its own branch rows, the frame check split over ranks still stops every rank with the same
error, and the scale benchmark's pieces at tiny sizes (the benchmark itself is a command:
`mdnet-bench scale`, minutes)."""
from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from online.readers import find_sequences
from online.readers.pack import INDEX_GROUP, read_pack_entries, verify_sequence
from online.sequence import DataError
from pretrain import checkpoint as ckpt
from pretrain.sharding import shard_domains
from tests.pretrain.conftest import BIN, REPO, run_env
from tools.bench.scale import build_tree, simulate
from tools.data.pack import write_pack


def _scan_shards(sizes, world_size):
    # The rule as first written (every rank scanned per domain), kept as the reference.
    order = sorted(range(len(sizes)), key=lambda i: (-sizes[i], i))
    loads, shards = [0] * world_size, [[] for _ in range(world_size)]
    for i in order:
        r = min(range(world_size), key=lambda k: (loads[k], len(shards[k]), k))
        shards[r].append(i)
        loads[r] += sizes[i]
    return [sorted(s) for s in shards]


@pytest.mark.parametrize("n, world, spread", [(500, 7, 200), (300, 64, 3), (40, 40, 1), (1000, 2, 50)])
def test_heap_sharding_is_the_scan(n, world, spread):
    sizes = np.random.default_rng(n).integers(1, 1 + spread, n).tolist()  # many ties when spread is small
    assert shard_domains(sizes, world) == _scan_shards(sizes, world)


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory):
    from tools.bench.scale import _clips
    work = tmp_path_factory.mktemp("scale")
    return build_tree(work / "got", 12, _clips(work, 6, (64, 48))), work


def test_benchmark_tree_is_read_as_got10k_and_packs_with_an_index(tiny_tree):
    tree, work = tiny_tree
    refs = find_sequences(tree)
    assert len(refs) == 12 and {r.format for r in refs} == {"got10k"}
    pack = work / "got.h5"
    write_pack(pack, [str(tree)], log=lambda line: None)
    fast = read_pack_entries(pack)
    slow_copy = work / "no-index.h5"
    shutil.copyfile(pack, slow_copy)
    with h5py.File(slow_copy, "r+") as f:  # a pack written before /index existed
        del f[INDEX_GROUP]
    slow = read_pack_entries(slow_copy)
    assert [(r, s.name) for r, s in fast] == [(r, s.name) for r, s in slow]
    for (_, a), (_, b) in zip(fast, slow):
        assert np.array_equal(a.boxes, b.boxes) and np.array_equal(a.absent, b.absent)
        assert (a.format, a.problems, a.frames_on_disk, a.has_groundtruth, len(a.frames)) == \
            (b.format, b.problems, b.frames_on_disk, b.has_groundtruth, len(b.frames))
        assert a.image_size == a.frame(0).shape[1::-1] and b.image_size is None
        assert a.frames._frames is not None and b.frames._frames is None  # frame tables from /index
        for i in range(len(a.frames)):
            a.frames.check(i)
            assert np.array_equal(a.frame(i), b.frame(i))
        assert a.frames._index is None  # read and checked without opening its group
        verify_sequence(a)
    # Data moved since packing (h5repack would): the probes see it, groups give the offsets.
    moved = work / "moved.h5"
    shutil.copyfile(pack, moved)
    with h5py.File(moved, "r+") as f:
        f[f"{INDEX_GROUP}/data_offset"][-1] += 7
    last = read_pack_entries(moved)[-1][1]
    assert last.frames._frames is None and np.array_equal(last.frame(3), fast[-1][1].frame(3))
    # An index that disagrees with its group is found by --verify (the group is what is hashed).
    altered = work / "altered.h5"
    shutil.copyfile(pack, altered)
    with h5py.File(altered, "r+") as f:
        f[f"{INDEX_GROUP}/boxes"][2, 0] += 1
    first = read_pack_entries(altered)[0][1]
    with pytest.raises(DataError, match=r"differ from /seq/GOT-10k_Train_000001: the pack's index was altered"):
        verify_sequence(first)


def test_a_resumed_rank_reads_only_its_rows(tmp_path):
    d = tmp_path / ckpt.CKPT_DIR / ckpt.ckpt_name(1, 3, 10)
    d.mkdir(parents=True)
    names = [f"d{i}" for i in range(30)]
    for r in range(3):
        ckpt.write_branches(d, r, {n: {k: np.full((2, 4) if "weight" in k else (2,), i, np.float32)
                                       for k in ("weight", "bias", "momentum_weight", "momentum_bias")}
                                   for i, n in enumerate(names) if i % 3 == r}, 1, {"counters": np.ones(2)})
    ckpt.write_shared(d, {"x": np.zeros(1)}, {"x": np.zeros(1)}, 1)
    meta = ckpt.CheckpointMeta(step=1, world_size=3, steps_per_cycle=10, total_steps=10, domains=names,
                               shards={}, datasets=[], spec={}, seed=0, config={})
    ckpt.write_meta(tmp_path, meta, d)
    want = ["d4", "d5", "d29", "d0"]
    got, extras = ckpt.read_branches(d, want)
    assert sorted(got) == sorted(want)
    assert all(float(got[n]["weight"][0, 0]) == int(n[1:]) for n in want)
    assert extras["counters"].tolist() == [3.0, 3.0]  # every rank's counters, whatever it owned
    every, _ = ckpt.read_branches(d)
    assert len(every) == 30 and np.array_equal(every["d29"]["bias"], got["d29"]["bias"])


def test_simulated_worlds_at_tiny_size(tmp_path):
    rows = simulate(64, [4, 16], fc_width=8, work=tmp_path)
    assert [r["world"] for r in rows] == [4, 16] and rows[1]["steps_per_cycle"] == 4
    assert all(r["load_max_over_mean"] < 1.2 and r["ckpt_mb"] > 0 for r in rows)
    assert not list(tmp_path.iterdir())  # its checkpoints are removed


def test_a_truncated_frame_on_one_rank_stops_both_with_its_name(tmp_path, synth_root, tiny_config):
    import subprocess
    import sys
    root = tmp_path / "data"
    shutil.copytree(synth_root, root)
    # Frame 3 of the last sequence truncated: the rank that owns it finds it, the other repeats the check on that domain after the setup allreduce and names the same frame.
    bad_seq = sorted(p for p in root.iterdir() if p.is_dir())[-1]
    frame = sorted((bad_seq / "img").glob("*.jpg"))[3]
    frame.write_bytes(frame.read_bytes()[:600])
    cfg = tiny_config(tmp_path / "c.yaml", [root])
    cmd = [str(BIN / "horovodrun"), "-np", "2", "-H", "localhost:2", sys.executable, "-m", "pretrain.cli",
           "--config", str(cfg), "--out", str(tmp_path / "run")]
    proc = subprocess.run(cmd, cwd=REPO, env=run_env(), capture_output=True, text=True, timeout=240)
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    want = f"data: sequence '{bad_seq.name}' frame 3: {frame}: corrupt image: truncated JPEG"
    assert f"rank 0: {want}" in text and f"rank 1: {want}" in text, text[-3000:]
