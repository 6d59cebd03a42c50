"""`mdnet-data pool-rebuild`: a pool rebuilt from git snapshots of its source repositories, byte for
byte, cut where the manifest says; clear errors for a missing mirror, a missing commit and a count
that does not match. The source repository here is a real git repository holding real frames."""
from __future__ import annotations

import shutil
import subprocess

import pytest

from online.readers import discover
from tools.data.cli import build_parser, main
from tools.data.pool import COLUMNS, RebuildError, rebuild


def _git(cwd, *args):
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                          capture_output=True, text=True).stdout.strip()


@pytest.fixture
def mirror(tmp_path, shared_data):
    """A repository owner/demo with sequences/bag (8 real VOT frames, polygon ground truth, a
    Thumbs.db), laid out as fetch lays out /work/.mirror: MIRRORS/owner+demo/repo/.git."""
    repo = tmp_path / "mirrors" / "owner+demo" / "repo"
    seq = repo / "sequences" / "bag"
    (seq / "color").mkdir(parents=True)
    src = shared_data / "VOT" / "bag"
    for f in sorted((src / "img").iterdir())[:8]:
        shutil.copy(f, seq / "color" / f.name)
    (seq / "groundtruth.txt").write_bytes(b"".join((src / "groundtruth.txt").read_bytes().splitlines(True)[:8]))
    (seq / "Thumbs.db").write_bytes(b"junk")
    _git(repo, "init", "-q")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "data")
    return repo, _git(repo, "rev-parse", "HEAD")


def _manifest(path, commit, frames=5, gt=5, cut="5", repo="owner/demo"):
    row = ["VOT2015/bag", "VOT2015", repo, "sequences/bag", commit, str(frames), str(gt), cut, "test"]
    path.write_text("\t".join(COLUMNS) + "\n" + "\t".join(row) + "\n")
    return path


def test_rebuild_cuts_and_copies_bytes(tmp_path, mirror):
    repo, commit = mirror
    out = tmp_path / "pool"
    lines = rebuild(_manifest(tmp_path / "m.tsv", commit), tmp_path / "mirrors", out)
    assert lines == [f"VOT2015/bag: 5 frames, 5 gt lines from owner/demo@{commit[:12]}:sequences/bag"]
    got = out / "VOT2015" / "bag"
    frames = sorted((got / "color").iterdir())
    assert [f.name for f in frames] == sorted(f.name for f in (repo / "sequences/bag/color").iterdir())[:5]
    for f in frames:
        assert f.read_bytes() == (repo / "sequences/bag/color" / f.name).read_bytes()
    assert (got / "groundtruth.txt").read_bytes() == b"".join(
        (repo / "sequences/bag/groundtruth.txt").read_bytes().splitlines(True)[:5])
    assert not (got / "Thumbs.db").exists()
    seq = discover(got)[0]  # the project's readers take the copy
    assert len(seq) == 5 and seq.annotated == 5


def test_rebuild_errors_name_the_problem(tmp_path, mirror):
    _, commit = mirror
    mirrors = tmp_path / "mirrors"
    with pytest.raises(RebuildError, match="other/missing: no mirror"):
        rebuild(_manifest(tmp_path / "a.tsv", commit, repo="other/missing"), mirrors, tmp_path / "o1")
    with pytest.raises(RebuildError, match="commit 0{40} is not in the mirror"):
        rebuild(_manifest(tmp_path / "b.tsv", "0" * 40), mirrors, tmp_path / "o2")
    with pytest.raises(RebuildError, match="gives 8 frames, the manifest row VOT2015/bag says 5"):
        rebuild(_manifest(tmp_path / "c.tsv", commit, cut=""), mirrors, tmp_path / "o3")
    bad = tmp_path / "d.tsv"
    bad.write_text("dir\tbenchmark\n")
    with pytest.raises(RebuildError, match="d.tsv: the header must be"):
        rebuild(bad, mirrors, tmp_path / "o4")


def test_cli(tmp_path, mirror, capsys):
    _, commit = mirror
    m = _manifest(tmp_path / "m.tsv", commit)
    argv = ["pool-rebuild", "--manifest", str(m), "--mirrors", str(tmp_path / "mirrors"), "--out", str(tmp_path / "p")]
    assert main(build_parser().parse_args(argv)) == 0
    assert "1 sequences written" in capsys.readouterr().out
    assert main(build_parser().parse_args(argv)) == 1  # never into a filled folder
    assert "already exists and is not empty" in capsys.readouterr().err


def test_shipped_manifest_is_well_formed():
    from pathlib import Path

    from tools.data.pool import read_manifest

    manifest = Path(__file__).resolve().parents[2] / "cluster" / "configs" / "pool-sources.tsv"
    rows = read_manifest(manifest)
    assert len(rows) >= 6 and all(r.frames >= 30 for r in rows)
    # The training-data rules: VOT, GOT-10k, LaSOT, ImageNet-VID, TrackingNet only; the evaluation
    # benchmarks never, and never a sequence named like one of ../shared/data.
    allowed = ("VOT", "GOT-10k", "LaSOT", "ImageNet-VID", "TrackingNet")
    eval_names = {p.name.lower() for p in (manifest.parents[3] / "shared" / "data").glob("*/*")}
    for line in manifest.read_text().splitlines()[1:]:
        cells = line.split("\t")
        assert cells[1].startswith(allowed), cells[:2]
        assert not any(b in cells[1] for b in ("OTB", "TC-128", "UAV", "DTB")), cells[:2]
        assert Path(cells[0]).name.lower() not in eval_names, cells[0]
