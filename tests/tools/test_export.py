"""mdnet-export: checkpoint -> the tracker's weight file."""
import numpy as np
import pytest

from online.network import NetSpec, Trunk, init_trunk
from online.weights import build_trunk, load_weights, params_from_trunk
from pretrain import checkpoint as ckpt
from tools.weights.export import main as export_main, build_parser

SPEC = NetSpec(conv_channels=(8, 16, 16), fc_width=32)


def _checkpoint(run, step=6, complete=True):
    trunk = Trunk(SPEC)
    init_trunk(trunk, seed=step)
    params = params_from_trunk(trunk)
    d = run / ckpt.CKPT_DIR / ckpt.ckpt_name(step, 1, 3)
    d.mkdir(parents=True)
    ckpt.write_shared(d, params, {k: np.zeros_like(v) for k, v in params.items()}, step)
    ckpt.write_branches(d, 0, {}, step, {})
    if complete:
        ckpt.write_meta(run, ckpt.CheckpointMeta(
            step=step, world_size=1, steps_per_cycle=3, total_steps=6, domains=["a", "b"], shards={},
            datasets=["data/x"], spec=SPEC.to_dict(), seed=5, config={"seed": 5, "train": {"cycles": 2}}))
    return d, params


def _export(*argv):
    return export_main(build_parser().parse_args([str(a) for a in argv]))


def test_export_run_folder_latest(tmp_path):
    _checkpoint(tmp_path, 3)
    _, params = _checkpoint(tmp_path, 6)
    _checkpoint(tmp_path, 9, complete=False)  # killed mid-write: not exported
    out = tmp_path / "w.h5"
    assert _export(tmp_path, "--out", out) == 0
    wf = load_weights(out)
    assert wf.spec == SPEC
    for n, v in params.items():
        assert np.array_equal(wf.params[n], v), n
    p = wf.provenance
    assert p["source"] == "mdnet-pretrain" and p["steps"] == 6 and p["cycles"] == 2.0
    assert p["datasets"] == ["data/x"] and p["config"]["seed"] == 5 and p["domains"] == 2
    assert "exported" in p and p["checkpoint"].endswith(ckpt.ckpt_name(6, 1, 3))
    # The tracker's loader accepts it and builds the same widths.
    trunk, prov = build_trunk(str(out))
    assert trunk.spec == SPEC and prov["provenance"]["steps"] == 6


def test_export_one_checkpoint_and_random_baseline(tmp_path):
    d, params = _checkpoint(tmp_path, 6)
    assert _export(d, "--out", tmp_path / "a.h5") == 0
    assert np.array_equal(load_weights(tmp_path / "a.h5").params["fc4_weight"], params["fc4_weight"])
    assert _export(tmp_path, "--out", tmp_path / "r.h5", "--random-init", 0) == 0
    r = load_weights(tmp_path / "r.h5")
    assert r.spec == SPEC and r.provenance["source"] == "random-init" and r.provenance["seed"] == 0
    assert not np.array_equal(r.params["fc4_weight"], params["fc4_weight"])


def test_export_errors(tmp_path, capsys):
    assert _export(tmp_path, "--out", tmp_path / "w.h5") == 2
    assert "neither a checkpoint folder" in capsys.readouterr().err
    d, _ = _checkpoint(tmp_path, 6, complete=False)
    assert _export(d, "--out", tmp_path / "w.h5") == 2
    assert "incomplete checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "w.h5").exists()


def test_export_writes_the_training_manifest(tmp_path, capsys):
    run = tmp_path / "run"
    _checkpoint(run, 6)  # domains a, b
    shared = tmp_path / "MANIFEST.tsv"  # ../shared/pool's layout: the commit after @ in source_path
    shared.write_text("dir\tbenchmark\tframes\tgt_lines\tresolution\tsize\tsource_repo\tsource_path\ttruncated_to\tnotes\n"
                      "OTB/A\tOTB-100\t100\t100\t1x1\t1\tu/r\tseq/A@" + "1" * 40 + "\t\tx\n")
    ours = tmp_path / "sources.tsv"  # this project's layout: a commit column
    ours.write_text("dir\tbenchmark\tsource_repo\tsource_path\tcommit\tframes\tgt_lines\ttruncated_to\tnotes\n"
                    "VOT2018/b\tVOT2018\tv/w\tsequences/b\t" + "2" * 40 + "\t300\t300\t300\ty\n")
    out = tmp_path / "m.h5"
    assert _export(run, "--out", out, "--sources", shared, "--sources", ours) == 0
    text = (tmp_path / "m.manifest.tsv").read_text()
    rows = [line.split("\t") for line in text.splitlines()]
    assert rows[0][:6] == ["sequence", "benchmark", "source_repo", "source_path", "commit", "frames"]
    assert rows[1][:7] == ["a", "OTB-100", "u/r", "seq/A", "1" * 40, "100", "80"]  # val_fraction 0.2 default
    assert rows[2][:7] == ["b", "VOT2018", "v/w", "sequences/b", "2" * 40, "300", "240"]
    assert load_weights(out).provenance["training_manifest"] == text
    assert "training manifest (2 domains)" in capsys.readouterr().out
    # A trained domain that no manifest names: refused, nothing shipped without its source.
    assert _export(run, "--out", tmp_path / "n.h5", "--sources", ours) == 2
    err = capsys.readouterr().err
    assert "1 trained domain(s) in none of the manifests" in err and err.rstrip().endswith(": a")
    assert not (tmp_path / "n.manifest.tsv").exists()
