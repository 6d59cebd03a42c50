"""`mdnet-data`: index over real and crafted data, synth, help text, exit codes."""
from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import write_otb_sequence
from tools.data.cli import build_parser, main, run

REPO = Path(__file__).resolve().parents[2]

# name: (format, frames on disk, annotated)
EXPECTED = {
    "MountainBike6": ("dtb70", 81, 81), "Surfing06": ("dtb70", 106, 106), "Bolt2": ("otb", 293, 293),
    "Couple": ("otb", 140, 140), "Crossing": ("otb", 120, 120), "Diving": ("otb", 231, 215),
    "DragonBaby": ("otb", 113, 113), "Football1": ("otb", 81, 74), "Freeman1": ("otb", 326, 326),
    "Skiing": ("otb", 81, 81), "building5": ("uav123", 161, 161), "wakeboard7": ("uav123", 67, 67),
    "bag": ("vot", 196, 196), "ball1": ("vot", 105, 105),
}


def call(*argv) -> tuple[int, str]:
    out = io.StringIO()
    rc = main(build_parser().parse_args(list(argv)), out=out)
    return rc, out.getvalue()


def test_index_json_on_real_data(shared_data):
    rc, text = call("index", str(shared_data), "--json")
    assert rc == 0
    rows = json.loads(text)
    assert len(rows) == 14
    got = {r["name"]: (r["format"], r["frames"], r["annotated"]) for r in rows}
    assert got == EXPECTED
    for r in rows:
        assert {"name", "format", "frames", "annotated", "absent", "problems", "path", "gt_lines"} <= set(r)
        assert r["absent"] == 0 and "error" not in r
    diving = next(r for r in rows if r["name"] == "Diving")
    assert diving["gt_lines"] == 215 and "215 lines for 231 frames" in diving["problems"][0]


def test_index_table(shared_data):
    rc, text = call("index", str(shared_data / "OTB" / "Football1"), str(shared_data / "VOT"))
    assert rc == 0
    lines = text.splitlines()
    assert lines[0].split()[:5] == ["name", "format", "frames", "annotated", "absent"]
    assert lines[1].split()[:5] == ["Football1", "otb", "81", "74", "0"]
    assert [l.split()[0] for l in lines[2:4]] == ["bag", "ball1"]
    assert lines[-1] == "3 sequences, 382 frames"


def test_index_missing_root(tmp_path, capsys):
    rc, _ = call("index", str(tmp_path / "nope"))
    assert rc == 2
    assert f"{tmp_path / 'nope'}: no such folder" in capsys.readouterr().err


def test_index_reports_bad_sequences_and_goes_on(tmp_path, capsys):
    for name in ("good", "corrupt", "malformed"):
        write_otb_sequence(tmp_path, name, ["1,1,5,5"] * 3, size=(20, 20), value=0)
    (tmp_path / "corrupt" / "img" / "0003.jpg").write_bytes(b"junk")
    (tmp_path / "malformed" / "groundtruth_rect.txt").write_text("1,1,5,5\n1,1,5\n")
    rc, text = call("index", str(tmp_path), "--json")
    assert rc == 1
    rows = {r["name"]: r for r in json.loads(text)}
    assert "error" not in rows["good"]
    assert "0003.jpg" in rows["corrupt"]["error"]
    assert "line 2" in rows["malformed"]["error"]
    assert "2 sequence(s) with errors" in capsys.readouterr().err


def test_synth_then_index(tmp_path):
    rc, text = call("synth", "--out", str(tmp_path), "--sequences", "2", "--frames", "6",
                    "--size", "64x48", "--seed", "5")
    assert rc == 0 and "wrote 2 sequences" in text
    rc, text = call("index", str(tmp_path), "--json")
    rows = json.loads(text)
    assert rc == 0 and [(r["name"], r["frames"], r["annotated"], r["size"]) for r in rows] == \
        [("synth_000", 6, 6, [64, 48]), ("synth_001", 6, 6, [64, 48])]


def test_bad_size_and_missing_command():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["synth", "--out", "x", "--size", "64"])
    with pytest.raises(SystemExit):
        build_parser().parse_args([])


def test_run_exits_with_main_status(tmp_path):
    with pytest.raises(SystemExit) as e:
        run(["index", str(tmp_path / "nope")])
    assert e.value.code == 2


def test_help_as_a_module():
    # The module runs as `python -m tools.data.cli` (what the mdnet-data script calls).
    res = subprocess.run([sys.executable, "-m", "tools.data.cli", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    assert "index" in res.stdout and "synth" in res.stdout
    res = subprocess.run([sys.executable, "-m", "tools.data.cli", "index", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert "--json" in res.stdout and "list.txt" in res.stdout
