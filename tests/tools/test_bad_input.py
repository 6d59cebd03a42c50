"""Bad input to the tools: mdnet-export on damaged checkpoints, mdnet-data index on truncated
frames. One-line errors naming the right file, warned fallbacks, no tracebacks."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from online.weights import load_weights
from pretrain import checkpoint as ckpt
from tests.helpers import write_real_otb_sequence
from tests.tools.test_export import _checkpoint as write_checkpoint, _export
from tools.data.cli import build_parser as data_parser, main as data_main

def _checkpoint(run: Path, step: int) -> Path:
    return write_checkpoint(run, step)[0]


def _forget_checksums(d: Path) -> None:
    # As a checkpoint written before checksums were recorded.
    raw = json.loads((d / ckpt.META).read_text())
    del raw["checksums"]
    (d / ckpt.META).write_text(json.dumps(raw))


def test_corrupt_shared_h5_is_blamed_not_the_output(tmp_path, capsys):
    d = _checkpoint(tmp_path / "run", 3)
    (d / ckpt.SHARED).write_bytes((d / ckpt.SHARED).read_bytes()[:500])
    out = tmp_path / "w.h5"
    assert _export(d, "--out", out) == 2  # with checksums: found before reading
    err = capsys.readouterr().err
    assert f"{d / ckpt.SHARED}: damaged" in err and str(out) not in err
    _forget_checksums(d)
    assert _export(d, "--out", out) == 2  # without: HDF5 fails, the file is still named
    err = capsys.readouterr().err
    assert f"{d / ckpt.SHARED}: damaged checkpoint file" in err and str(out) not in err and "Traceback" not in err
    assert not out.exists()


def test_shared_h5_missing_a_parameter_is_blamed(tmp_path, capsys):
    import h5py
    d = _checkpoint(tmp_path / "run", 3)
    _forget_checksums(d)
    with h5py.File(d / ckpt.SHARED, "a") as f:
        del f["params/fc5_bias"]
    assert _export(d, "--out", tmp_path / "w.h5") == 2
    err = capsys.readouterr().err
    assert f"{d / ckpt.SHARED}: missing parameters fc5_bias" in err


def test_run_folder_with_damaged_latest_exports_the_previous(tmp_path, capsys):
    run = tmp_path / "run"
    _checkpoint(run, 3)
    latest = _checkpoint(run, 6)
    (latest / ckpt.branch_file(0)).write_bytes(b"\0" * 10)
    out = tmp_path / "w.h5"
    assert _export(run, "--out", out) == 0
    err = capsys.readouterr().err
    assert f"mdnet-export: warning: {latest / ckpt.branch_file(0)}: damaged" in err
    assert load_weights(out).provenance["steps"] == 3


def test_meta_problems_are_named(tmp_path, capsys):
    d = _checkpoint(tmp_path / "run", 3)
    meta = d / ckpt.META
    raw = json.loads(meta.read_text())
    meta.write_text("{oops")
    assert _export(d, "--out", tmp_path / "w.h5") == 2
    err = capsys.readouterr().err
    assert f"{meta}: not valid JSON" in err and "incomplete" not in err
    del raw["step"]
    meta.write_text(json.dumps(raw))
    assert _export(d, "--out", tmp_path / "w.h5") == 2
    assert f"{meta}: missing keys ['step']" in capsys.readouterr().err
    assert _export(tmp_path / "nope", "--out", tmp_path / "w.h5") == 2
    assert f"{tmp_path / 'nope'}: does not exist" in capsys.readouterr().err


def test_random_init_seed_must_be_non_negative(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        _export(tmp_path, "--out", tmp_path / "w.h5", "--random-init", "-1")
    assert e.value.code == 2
    assert "--random-init: expected a non-negative integer seed, got -1" in capsys.readouterr().err


def test_export_out_that_is_a_folder(tmp_path, capsys):
    d = _checkpoint(tmp_path / "run", 3)
    assert _export(d, "--out", tmp_path) == 2
    assert f"--out {tmp_path}: is a folder" in capsys.readouterr().err


def test_index_reports_a_truncated_frame_for_its_sequence(tmp_path):
    for name in ("good", "broken"):
        write_real_otb_sequence(tmp_path, name, frames=3)
    bad = tmp_path / "broken" / "img" / "0002.jpg"  # a middle frame: decoding first and last misses it
    bad.write_bytes(bad.read_bytes()[:4000])
    out = io.StringIO()
    rc = data_main(data_parser().parse_args(["index", str(tmp_path), "--json"]), out=out)
    assert rc == 1
    rows = {r["name"]: r for r in json.loads(out.getvalue())}
    assert "error" not in rows["good"]
    assert rows["broken"]["error"].startswith(f"{bad}: corrupt image: truncated JPEG")
