"""Real 2-rank Horovod runs (Gloo on CPU): identical shared weights, per-rank branches, exact resume,
resume on another number of ranks, and the single-process fallback. The bit-identical, resume and
logs/metrics tests also run in fast mode (model.mode=fast: RoIs pooled from region maps)."""
import json
import shutil

import numpy as np
import pytest

from pretrain import checkpoint as ckpt


def _dump(run, rank):
    with np.load(run / "debug" / f"rank{rank}.npz") as z:
        return {k: z[k] for k in z.files}


MODES = ("exact", "fast")


def _straight_run(tmp_path_factory, synth_root, tiny_config, run_pretrain, mode):
    d = tmp_path_factory.mktemp(f"straight-{mode}")
    cfg = tiny_config(d / "cfg.yaml", [synth_root], model={"mode": mode})
    run_pretrain(2, "--config", cfg, "--out", d / "run")
    return d / "run"


@pytest.fixture(scope="module")
def straight(tmp_path_factory, synth_root, tiny_config, run_pretrain):
    """2 ranks, 2 cycles (6 domains -> 3 steps per cycle -> 6 steps), uninterrupted."""
    return _straight_run(tmp_path_factory, synth_root, tiny_config, run_pretrain, "exact")


@pytest.fixture(scope="module")
def straight_fast(tmp_path_factory, synth_root, tiny_config, run_pretrain):
    """The same run in fast mode."""
    return _straight_run(tmp_path_factory, synth_root, tiny_config, run_pretrain, "fast")


def _run_of(request, mode):
    return request.getfixturevalue("straight" if mode == "exact" else "straight_fast")


@pytest.mark.parametrize("mode", MODES)
def test_shared_weights_bit_identical_across_ranks(request, mode):
    straight = _run_of(request, mode)
    r0, r1 = _dump(straight, 0), _dump(straight, 1)
    shared = sorted(k for k in r0 if k.startswith("shared:"))
    assert len(shared) == 10  # conv1..fc5 weight + bias
    for k in shared:
        assert np.array_equal(r0[k], r1[k]), k
    # Training moved them (not identical merely because nothing happened).
    start = ckpt.read_shared(straight / "checkpoints" / ckpt.ckpt_name(2, 2, 3))[0]
    assert not np.array_equal(start["fc4_weight"], r0["shared:fc4_weight"])


def test_each_rank_has_its_own_branches(straight):
    b0 = {k.split(":")[1] for k in _dump(straight, 0) if k.startswith("branch:")}
    b1 = {k.split(":")[1] for k in _dump(straight, 1) if k.startswith("branch:")}
    assert b0 and b1 and not (b0 & b1)
    assert len(b0 | b1) == 6
    log = (straight / "log.txt").read_text()
    assert "sharding: rank 0: 3 domains" in log and "sharding: rank 1: 3 domains" in log


@pytest.mark.parametrize("mode", MODES)
def test_logs_and_metrics_files(request, mode):
    straight = _run_of(request, mode)
    log = (straight / "log.txt").read_text()
    assert f"model: {mode} mode" in log
    for name in ("Loss", "PR", "RR", "TrackTopKAcc", "PosAcc", "NegAcc"):
        assert f"Epoch[1] Train-{name}=" in log and f"Epoch[1] Validation-{name}=" in log
    assert "Epoch[1] Time cost=" in log and "world 2 rank(s) via horovod" in log
    records = [json.loads(l) for l in (straight / "metrics.jsonl").read_text().splitlines()]
    assert [(r["epoch"], r["phase"]) for r in records] == [(0, "train"), (0, "validation"),
                                                          (1, "train"), (1, "validation")]
    # 2 ranks x 3 steps x 48 samples per epoch, counted over both ranks.
    assert records[2]["samples"] == 2 * 3 * 48
    timing = json.loads((straight / "timing.json").read_text())
    assert timing["world_size"] == 2 and 0 <= timing["data_fraction"] < 1


@pytest.mark.parametrize("mode", MODES)
def test_resume_after_stop_is_bit_identical(request, mode, tmp_path, synth_root, tiny_config, run_pretrain):
    straight = _run_of(request, mode)
    cfg = tiny_config(tmp_path / "cfg.yaml", [synth_root], model={"mode": mode})
    run = tmp_path / "run"
    run_pretrain(2, "--config", cfg, "--out", run, "--set", "train.stop_at_step=3")  # stops mid-cycle 1
    assert ckpt.find_latest(run).name == ckpt.ckpt_name(3, 2, 3)
    assert not (run / "checkpoints" / ckpt.ckpt_name(6, 2, 3)).exists()
    proc = run_pretrain(2, "--out", run, "--resume")
    assert "starting at step 3" in proc.stdout and f"model: {mode} mode" in proc.stdout
    for rank in (0, 1):
        a, b = _dump(straight, rank), _dump(run, rank)
        assert sorted(a) == sorted(b)
        for k in a:
            assert np.array_equal(a[k], b[k]), (rank, k)


def test_resume_on_another_number_of_ranks(straight, tmp_path, run_pretrain):
    # Continue the 2-rank run's step-4 checkpoint as ONE plain process (no horovodrun): the
    # single-process fallback, and branches re-sharded by domain name from both rank files.
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copytree(straight / "checkpoints" / ckpt.ckpt_name(4, 2, 3), run / "checkpoints" / ckpt.ckpt_name(4, 2, 3))
    shutil.copy(straight / "config.yaml", run / "config.yaml")
    proc = run_pretrain(1, "--out", run, "--resume", "--set", "runtime.debug_dump=true")
    # Step 4 of 3-step cycles on 2 ranks = 1.33 cycles = step 8 of 6-step cycles on 1 rank.
    assert "step 4 of 2 rank(s)) -> starting at step 8 of 12 on 1 rank(s)" in proc.stdout
    final = ckpt.find_latest(run)
    meta = ckpt.read_meta(final)
    assert meta.world_size == 1 and meta.step == 12
    branches, _ = ckpt.read_branches(final)
    assert len(branches) == 6
    dump = _dump(run, 0)
    assert len([k for k in dump if k.startswith("branch:")]) == 12
    assert all(np.all(np.isfinite(v)) for v in dump.values())


def test_resume_on_fewer_ranks_never_rewrites_a_checkpoint(straight, tmp_path, run_pretrain):
    # The 2-rank run checkpointed at steps 2, 4, 6 (3-step cycles). Its step 2 (0.67 cycles)
    # resumed as one rank (6-step cycles) starts at step 4 and checkpoints at step 6: under
    # step-number folder names that was the 2-rank step 6 (2 cycles), rewritten in place.
    run = tmp_path / "run"
    shutil.copytree(straight / "checkpoints", run / "checkpoints")
    shutil.copy(straight / "config.yaml", run / "config.yaml")

    def files():
        return {p.name: {f.name: f.read_bytes() for f in sorted(p.iterdir())}
                for p in sorted((run / "checkpoints").iterdir()) if p.is_dir()}
    before = files()
    assert sorted(before) == [ckpt.ckpt_name(s, 2, 3) for s in (2, 4, 6)]
    proc = run_pretrain(1, "--out", run, "--resume", run / "checkpoints" / ckpt.ckpt_name(2, 2, 3),
                        "--set", "train.stop_at_step=6")
    assert "(step 2 of 2 rank(s)) -> starting at step 4 of 12 on 1 rank(s)" in proc.stdout
    after = files()
    assert {k: after[k] for k in before} == before  # byte for byte
    assert sorted(set(after) - set(before)) == [ckpt.ckpt_name(6, 1, 6)]
    assert ckpt.read_meta(run / "checkpoints" / ckpt.ckpt_name(6, 1, 6)).world_size == 1


def test_fast_checkpoint_exports_a_tracker_weight_file(straight_fast, tmp_path):
    # The same shared parameters as exact mode: the weight file loads like any other; its
    # provenance records the mode the trunk was trained in.
    from online.weights import load_weights
    from tools.weights.export import export
    export(straight_fast, tmp_path / "w.h5")
    wf = load_weights(tmp_path / "w.h5")
    dump = _dump(straight_fast, 0)
    assert sorted(wf.params) == sorted(k.split(":")[1] for k in dump if k.startswith("shared:"))
    for n, v in wf.params.items():
        assert np.array_equal(v, dump[f"shared:{n}"]), n
    assert wf.provenance["config"]["model"]["mode"] == "fast"
