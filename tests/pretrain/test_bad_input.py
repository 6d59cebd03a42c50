"""Bad input and bad environments for the pretraining half: project errors naming the file or key,
runs that never mix, damaged checkpoints skipped with a warning. Real files broken in tmp_path."""
from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from online.config import ConfigError
from online.readers import read_sequence
from online.sequence import DataError
from pretrain import checkpoint as ckpt
from pretrain import config as pconfig
from pretrain.cli import _RunLogHandler, build_parser, main
from pretrain.config import DataConfig
from pretrain.domains import Domain, check_domain, find_domains
from pretrain.hooks import _jsonl
from tests.helpers import write_real_otb_sequence


def _main(*argv):
    return main(build_parser().parse_args([str(a) for a in argv]))


# ------------------------------------------------------------------------------- config

@pytest.mark.parametrize("override, key", [
    ("optim.lr=-1e-4", "optim.lr"), ("optim.lr=0", "optim.lr"), ("optim.momentum=1.5", "optim.momentum"),
    ("optim.lr_mult_fc=-10", "optim.lr_mult_fc"), ("sampling.frames=0", "sampling.frames"),
    ("sampling.pos=-1", "sampling.pos"), ("sampling.overlap_pos=1.5", "sampling.overlap_pos"),
    ("sampling.scale_neg=0", "sampling.scale_neg"), ("mining.pool=0", "mining.pool"),
    ("data.max_domains=-1", "data.max_domains"), ("data.workers=0", "data.workers"),
    ("outliers.min_inside=2", "outliers.min_inside"), ("schedule.final_factor=1.5", "schedule.final_factor"),
    ("val.candidates=0", "val.candidates"), ("checkpoint.every_steps=-5", "checkpoint.every_steps"),
    ("train.cycles=0", "train.cycles"), ("model.dropout=1", "model.dropout"),
])
def test_config_ranges_name_the_key(override, key):
    with pytest.raises(ConfigError, match=rf"^{key}: .*must be"):
        pconfig.load(None, [override])


def test_yaml_errors_name_the_file_or_the_set(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  lr: 1e-4\n lr_scaling: linear\n")  # wrong indent
    assert _main("--config", bad, "--out", tmp_path / "r") == 2
    err = capsys.readouterr().err
    assert f"config error: {bad}: not valid YAML (line 3" in err and "Traceback" not in err
    good = tmp_path / "good.yaml"
    good.write_text("seed: 1\n")
    assert _main("--config", good, "--out", tmp_path / "r", "--set", "optim.lr=[1") == 2
    assert "--set 'optim.lr=[1': the value is not valid YAML" in capsys.readouterr().err


# ------------------------------------------------------------------------------- run folder

def test_out_that_is_a_file(tmp_path, capsys, tiny_config):
    cfg = tiny_config(tmp_path / "cfg.yaml", [tmp_path / "data"])
    out = tmp_path / "run"
    out.write_text("")
    assert _main("--config", cfg, "--out", out) == 2
    assert f"--out {out}: is a file" in capsys.readouterr().err


def test_existing_run_refused_without_resume_or_force(tmp_path, capsys, tiny_config):
    cfg = tiny_config(tmp_path / "cfg.yaml", [tmp_path / "nowhere"])
    out = tmp_path / "run"
    (out / ckpt.CKPT_DIR / "ckpt-00000002").mkdir(parents=True)
    (out / "metrics.jsonl").write_text('{"old": 1}\n')
    (out / "log.txt").write_text("OLD RUN\n")
    (out / "notes.md").write_text("mine")
    assert _main("--config", cfg, "--out", out) == 2
    err = capsys.readouterr().err
    assert f"{out} already holds a run (checkpoints, metrics.jsonl)" in err and "--resume" in err and "--force" in err
    assert (out / "metrics.jsonl").exists()  # nothing touched
    # With --resume, --force deletes nothing (a printed resume command may repeat it).
    assert _main("--config", cfg, "--out", out, "--resume", "--force") == 2
    assert "--force is ignored with --resume" in capsys.readouterr().err and (out / "metrics.jsonl").exists()
    # --force clears the old run first; this config then fails on its missing data root.
    assert _main("--config", cfg, "--out", out, "--force") == 2
    assert "nowhere" in capsys.readouterr().err
    assert not (out / ckpt.CKPT_DIR).exists() and not (out / "metrics.jsonl").exists()
    assert "OLD RUN" not in (out / "log.txt").read_text() and "--force: deleted" in (out / "log.txt").read_text()
    assert (out / "notes.md").read_text() == "mine"  # not a run file: kept


def test_resume_of_a_missing_path_says_it_does_not_exist(tmp_path, capsys, tiny_config):
    cfg = tiny_config(tmp_path / "cfg.yaml", [tmp_path / "data"])
    gone = tmp_path / "run" / ckpt.CKPT_DIR / "ckpt-00000010"
    assert _main("--config", cfg, "--out", tmp_path / "run", "--resume", gone) == 2
    err = capsys.readouterr().err
    assert f"{gone}: does not exist" in err and "incomplete" not in err


def test_metrics_and_log_write_failures_name_the_file(tmp_path):
    # /dev/full fails every write with ENOSPC, as a full disk does (a read-only folder cannot be
    # simulated when the tests run as root).
    run = tmp_path / "run"
    run.mkdir()
    os.symlink("/dev/full", run / "metrics.jsonl")
    with pytest.raises(ckpt.RunFolderError, match=rf"cannot write {run / 'metrics.jsonl'}: No space left"):
        _jsonl(SimpleNamespace(out=run), {"epoch": 0})
    log = logging.getLogger("test-bad-input")
    log.handlers[:] = [_RunLogHandler("/dev/full")]
    log.propagate = False
    with pytest.raises(ckpt.RunFolderError, match="cannot write /dev/full: No space left"):
        log.warning("x")
    handler = log.handlers.pop()
    with contextlib.suppress(OSError):
        handler.close()  # flushing to a full disk may fail once more


# ------------------------------------------------------------------------------- checkpoints

def _checkpoint(run: Path, step: int) -> Path:
    d = run / ckpt.CKPT_DIR / ckpt.ckpt_name(step, 1, 2)
    d.mkdir(parents=True)
    params = {"conv1_weight": np.full((4, 3), step, np.float32)}
    ckpt.write_shared(d, params, params, step)
    ckpt.write_branches(d, 0, {}, step, {"counters": np.zeros(3), "epoch_time_s": 1.0})
    ckpt.write_meta(run, ckpt.CheckpointMeta(step=step, world_size=1, steps_per_cycle=2, total_steps=10,
                                             domains=[], shards={}, datasets=[], spec={}, seed=0, config={}))
    return d


def test_meta_records_size_and_sha256_and_old_metas_still_read(tmp_path):
    d = _checkpoint(tmp_path, 2)
    meta = ckpt.read_meta(d)
    assert set(meta.checksums) == {ckpt.SHARED, ckpt.branch_file(0)}
    assert meta.checksums[ckpt.SHARED]["size"] == (d / ckpt.SHARED).stat().st_size
    raw = json.loads((d / ckpt.META).read_text())
    del raw["checksums"]  # a checkpoint written before checksums were recorded
    (d / ckpt.META).write_text(json.dumps(raw))
    assert ckpt.read_meta(d).checksums == {} and ckpt.find_latest(tmp_path) == d


@pytest.mark.parametrize("damage, why", [
    (lambda p: p.write_bytes(p.read_bytes()[:100]), "damaged: 100 bytes"),
    (lambda p: p.write_bytes(p.read_bytes()[:-1] + bytes([p.read_bytes()[-1] ^ 1])), "damaged: its SHA-256 does not match"),
])
def test_damaged_latest_checkpoint_warns_and_falls_back(tmp_path, damage, why):
    good = _checkpoint(tmp_path, 2)
    latest = _checkpoint(tmp_path, 4)
    damage(latest / ckpt.SHARED)
    warnings: list = []
    assert ckpt.find_latest(tmp_path, warn=warnings.append) == good
    assert len(warnings) == 1 and f"{latest / ckpt.SHARED}: {why}" in warnings[0]
    with pytest.raises(ckpt.CheckpointError, match=rf"{latest / ckpt.SHARED}: {why}"):
        ckpt.find_latest(latest)  # given explicitly: an error, no fallback


def test_meta_not_json_or_missing_step_names_file_and_key(tmp_path):
    good = _checkpoint(tmp_path, 2)
    d = _checkpoint(tmp_path, 4)
    (d / ckpt.META).write_text("{not json")
    with pytest.raises(ckpt.CheckpointError, match=rf"{d / ckpt.META}: not valid JSON"):
        ckpt.find_latest(d)
    warnings: list = []
    assert ckpt.find_latest(tmp_path, warn=warnings.append) == good and "not valid JSON" in warnings[0]
    raw = json.loads((good / ckpt.META).read_text())
    del raw["step"]
    (d / ckpt.META).write_text(json.dumps(raw))
    with pytest.raises(ckpt.CheckpointError, match=rf"{d / ckpt.META}: missing keys \['step'\]"):
        ckpt.find_latest(d)
    raw["step"] = "4"
    (d / ckpt.META).write_text(json.dumps(raw))
    with pytest.raises(ckpt.CheckpointError, match=rf"{d / ckpt.META}: key 'step' is '4', expected int"):
        ckpt.find_latest(d)


def test_truncated_h5_in_an_old_checkpoint_is_a_checkpoint_error(tmp_path):
    d = _checkpoint(tmp_path, 2)
    for name in (ckpt.SHARED, ckpt.branch_file(0)):
        p = d / name
        p.write_bytes(p.read_bytes()[:300])
    with pytest.raises(ckpt.CheckpointError, match=rf"{d / ckpt.SHARED}: damaged checkpoint file"):
        ckpt.read_shared(d)
    with pytest.raises(ckpt.CheckpointError, match=rf"{d / ckpt.branch_file(0)}: damaged checkpoint file"):
        ckpt.read_branches(d)


def test_resume_with_every_checkpoint_damaged(tmp_path, capsys, tiny_config):
    cfg = tiny_config(tmp_path / "cfg.yaml", [tmp_path / "data"])
    run = tmp_path / "run"
    d = _checkpoint(run, 2)
    (d / ckpt.SHARED).write_bytes(b"")
    assert _main("--config", cfg, "--out", run, "--resume") == 2
    err = capsys.readouterr().err
    assert f"warning: {d / ckpt.SHARED}: damaged" in err and "cannot resume" in err and "Traceback" not in err


# ------------------------------------------------------------------------------- domains (C)

def test_truncated_frame_stops_pretraining_before_step_0(tmp_path):
    write_real_otb_sequence(tmp_path / "root", "a")
    b = write_real_otb_sequence(tmp_path / "root", "b")
    frame = b / "img" / "0003.jpg"
    frame.write_bytes(frame.read_bytes()[:5000])
    with pytest.raises(DataError, match=rf"data: sequence 'b' frame 2: {frame}: corrupt image: truncated JPEG"):
        find_domains(DataConfig(roots=(str(tmp_path / "root"),)))
    assert len(find_domains(DataConfig(roots=(str(tmp_path / "root"),), check_frames=False))) == 2


def test_sequences_without_ground_truth_are_warned_about(tmp_path):
    write_real_otb_sequence(tmp_path / "root", "a")
    lost = write_real_otb_sequence(tmp_path / "root", "lost", gt=False)
    first_only = write_real_otb_sequence(tmp_path / "root", "first_only")
    (first_only / "groundtruth_rect.txt").write_text("120,60,40,80\n")  # GOT-10k test style
    logged: list = []
    domains = find_domains(DataConfig(roots=(str(tmp_path / "root"),)), log=logged.append)
    assert [d.name for d in domains] == ["a"]
    warnings = [line for line in logged if "warning" in line]
    assert len(warnings) == 2
    assert any(str(lost) in w and "no ground-truth file" in w for w in warnings)
    assert any(str(first_only) in w and "'first_only' has no ground truth" in w for w in warnings)


def test_usable_box_that_is_not_a_box_names_sequence_and_frame(tmp_path):
    seq = read_sequence(write_real_otb_sequence(tmp_path, "s"))
    seq.boxes[2] = [10, 10, np.nan, 5]  # as a hand-edited pack could hold it, not marked absent
    with pytest.raises(DataError, match=r"data: sequence 's' .* frame 2: box \[10.0, 10.0, nan, 5.0\]"):
        check_domain(Domain(index=0, name="s", sequence=seq, split=3))
