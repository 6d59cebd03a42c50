"""`mdnet-eval run`: parallel workers, results + JSON + plots, resume (deleted and truncated
results are redone, complete ones kept), a failing sequence reported by name, VOT protocol, and
the checks made before any worker starts. Tiny random trunks and few frames keep it fast."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tests.online.test_tracker import FAST, TINY_WIDTHS
from tools.eval.cli import main, parse_args
from tools.eval.run import default_name, result_complete


def run_cli(out, roots, *extra, capsys):
    argv = ["run", *map(str, roots), "--weights", "random:0", "--widths", TINY_WIDTHS, "--out-dir", str(out),
            "--frames", "5", "--quiet", *extra]
    for o in FAST:
        argv += ["--set", o]
    rc = main(parse_args(argv))
    return rc, capsys.readouterr()


def test_parallel_run_then_resume(shared_data, tmp_path, capsys):
    roots = [shared_data / "OTB" / "Crossing", shared_data / "OTB" / "Skiing", shared_data / "VOT" / "bag"]
    out = tmp_path / "runs"
    rc, cap = run_cli(out, roots, "--jobs", "2", capsys=capsys)
    assert rc == 0, cap.err
    assert "3 to track (15 frames) with 2 worker(s) x 1 thread(s)" in cap.out
    res = out / "random-0"
    for name in ("Crossing", "Skiing", "bag"):
        assert f"] {name}: 5 frames, AUC" in cap.out
        rows = [line.split(",") for line in (res / f"{name}.txt").read_text().splitlines()]
        assert len(rows) == 5 and all(len(r) == 4 for r in rows)
        assert len((res / f"{name}_time.txt").read_text().split()) == 5
    report = json.loads((out / "eval.json").read_text())
    t = report["trackers"]["random-0"]
    assert t["sequences_scored"] == 3 and t["frames"] == 15  # scored on the 5 tracked frames each
    assert t["fps"] > 0 and all(r["fps"] > 0 for r in t["sequences"].values())
    assert not report["warnings"]
    for kind in ("success", "precision"):
        assert (out / "plots" / f"{kind}_OPE.png").stat().st_size > 1000
    # A killed run: one result never written, one left truncated (not by us: ours are atomic).
    (res / "bag.txt").unlink()
    (res / "Skiing.txt").write_text("".join((res / "Skiing.txt").read_text().splitlines(True)[:2]))
    kept = (res / "Crossing.txt").stat().st_mtime_ns
    rc, cap = run_cli(out, roots, "--jobs", "1", capsys=capsys)
    assert rc == 0, cap.err
    assert "3 sequence(s), 1 already done, 2 to track (10 frames)" in cap.out
    assert "Crossing:" not in cap.out and "] Skiing: 5 frames" in cap.out and "] bag: 5 frames" in cap.out
    assert (res / "Crossing.txt").stat().st_mtime_ns == kept
    assert result_complete(res / "Skiing.txt", 5) and result_complete(res / "bag.txt", 5)
    # Another configuration under the same name is refused before any worker starts.
    rc, cap = run_cli(out, roots[:1], "--seed", "1", capsys=capsys)
    assert rc == 2 and "holds results of another configuration (differs in: seed)" in cap.err


def test_vot_run_reports_a_failing_sequence_and_scores_the_rest(shared_data, tmp_path, capsys):
    # A copy of bag whose 4th frame is corrupt: it fails mid-sequence in its worker.
    broken = tmp_path / "data" / "broken"
    (broken / "img").mkdir(parents=True)
    gt = (shared_data / "VOT" / "bag" / "groundtruth.txt").read_text().splitlines(True)
    (broken / "groundtruth.txt").write_text("".join(gt[:8]))
    for f in sorted((shared_data / "VOT" / "bag" / "img").iterdir())[:8]:
        shutil.copy(f, broken / "img" / f.name)
    sorted((broken / "img").iterdir())[3].write_bytes(b"not a jpeg")
    out = tmp_path / "runs"
    rc, cap = run_cli(out, [shared_data / "VOT" / "bag", broken], "--jobs", "2", "--protocol", "vot",
                      "--name", "MDNetTiny", capsys=capsys)
    assert rc == 1
    assert "broken: FAILED" in cap.out and "unreadable or corrupt image" in cap.out
    assert "1 sequence(s) failed: broken" in cap.err
    res = out / "MDNetTiny"
    assert not (res / "broken.txt").exists() and not list(res.glob(".*tmp"))
    lines = (res / "bag.txt").read_text().splitlines()
    assert len(lines) == 5 and lines[0] == "1"
    report = json.loads((out / "eval.json").read_text())
    t = report["trackers"]["MDNetTiny"]
    assert {"accuracy", "failures", "robustness", "fps"} <= set(t)
    assert set(t["sequences"]) == {"bag"} and t["missing"] == ["broken"]
    assert {"accuracy", "failures", "robustness", "fps"} <= set(t["sequences"]["bag"])
    assert any(line.split()[:2] == ["MDNetTiny", "bag"] for line in cap.out.splitlines())  # the table


def test_checks_before_any_worker(tmp_path, capsys, shared_data):
    seq = shared_data / "OTB" / "Crossing"
    rc, cap = run_cli(tmp_path, [seq], "--set", "no_such_key=1", capsys=capsys)
    assert rc == 2 and "config error" in cap.err
    rc, cap = run_cli(tmp_path, [seq], "--set", "trunk_dtype=fp16", capsys=capsys)  # fp16: GPUs only
    assert rc == 2 and "config error" in cap.err and "trunk_dtype=fp16 runs on a GPU only" in cap.err
    rc = main(parse_args(["run", str(seq), "--weights", str(tmp_path / "w.h5"), "--out-dir", str(tmp_path)]))
    assert rc == 2 and "no such weight file" in capsys.readouterr().err
    rc = main(parse_args(["run", str(seq), "--weights", "random:x", "--out-dir", str(tmp_path)]))
    assert rc == 2 and "bad weights" in capsys.readouterr().err
    assert default_name("random:3") == "random-3" and default_name("/w/mdnet_vid.h5") == "mdnet_vid"


def test_result_complete(tmp_path):
    p = tmp_path / "r.txt"
    assert not result_complete(p, 3)
    p.write_text("1\n2,2,2,2\n0\n\n")
    assert result_complete(p, 3) and not result_complete(p, 4)
    p.write_bytes(np.arange(3).tobytes())
    assert not result_complete(p, 3)


def test_help(capsys):
    from tools.eval.cli import run

    with pytest.raises(SystemExit) as e:
        run(["run", "--help"])
    assert e.value.code == 0 and "--jobs N" in capsys.readouterr().out
