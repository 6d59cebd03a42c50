"""The shipped models (models/mdnet-mobilenetv2.h5, the default; models/mdnet-vggm-real-cpu.h5, the
paper's VGG-M network): small enough to ship, say where they came from, and the default is what
mdnet-track uses when --weights is omitted; it tracks a real sequence out of the box."""
import numpy as np
import pytest
import yaml

from online import cli
from online.metrics import overlaps as iou_per_frame
from online.readers import read_sequence
from online.shipped import DEFAULT_WEIGHTS, SHIPPED, VGGM_WEIGHTS
from online.weights import load_weights
from tests.conftest import SHARED_DATA


def test_shipped_models_are_small_and_carry_their_provenance():
    for path in SHIPPED:
        assert path.is_file(), f"{path} missing"
        assert path.stat().st_size <= 25 * 2**20
        prov = load_weights(path).provenance
        assert prov["source"] == "mdnet-pretrain"
        assert prov["config"]["data"]["exclude_overlap"] == ["../shared/data"]  # never trained on the eval set
        assert prov["domains"] == 29 and prov["steps"] > 0 and prov["world_size"] == 2
        assert len(prov["commit"].split("+")[0]) == 40
        assert prov["config"]["data"]["packs"] == ["work/pool.h5", "work/extpool.h5"]
    vgg = load_weights(VGGM_WEIGHTS)
    assert vgg.spec.TRUNK == "vggm" and vgg.spec.conv_channels == (96, 256, 512) and vgg.spec.fc_width == 512
    # Trained with the corrected conv1/conv2 gradients (the LRN fix, 373d88a) and its recipe.
    assert vgg.provenance["config"]["optim"]["lr"] == 1.5e-3
    mb = load_weights(DEFAULT_WEIGHTS)
    assert mb.spec.TRUNK == "mobilenetv2" and mb.spec.last_block == 13 and mb.spec.fc_width == 512
    cfg = mb.provenance["config"]
    # The ImageNet start, frozen: only fc4-fc6 were pretrained.
    assert cfg["model"]["trunk"] == "mobilenetv2" and cfg["optim"]["lr_mult_conv"] == 0.0
    assert cfg["init"]["weights"] == "weights/imagenet-mobilenetv2.h5" and cfg["init"]["layers"] == ["convs"]


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_model_names_every_training_sequence(path):
    # The training manifest ships beside the model and inside its provenance: every domain with
    # its benchmark, source repository, path and commit; none from an evaluation benchmark outside
    # ../shared/pool, none named like a sequence of ../shared/data.
    manifest = path.with_name(path.stem + ".manifest.tsv")
    text = manifest.read_text()
    assert load_weights(path).provenance["training_manifest"] == text
    rows = [dict(zip(text.splitlines()[0].split("\t"), line.split("\t"))) for line in text.splitlines()[1:]]
    assert len(rows) == 29
    eval_names = {p.name.lower() for p in SHARED_DATA.glob("*/*")}
    pool_dirs = {line.split("\t")[0] for line in (SHARED_DATA.parent / "pool" / "MANIFEST.tsv").read_text().splitlines()[1:]}
    for r in rows:
        assert len(r["commit"]) == 40 and r["source_repo"].count("/") == 1 and int(r["frames_trained"]) > 0, r
        assert r["sequence"].lower() not in eval_names, r
        if r["pool_dir"] not in pool_dirs:  # fetched: training benchmarks only
            assert r["benchmark"].startswith(("VOT", "GOT-10k", "LaSOT", "ImageNet-VID", "TrackingNet")), r
    # The unseen-video check (docs/data.md) is on OTB-100 clips the model never trained on.
    unseen = (path.parents[1] / "cluster" / "configs" / "unseen-otb-sources.tsv").read_text()
    unseen_names = {line.split("\t")[0].lower() for line in unseen.splitlines()[1:]}
    assert len(unseen_names) == 8 and not unseen_names & {r["sequence"].lower() for r in rows}
    assert not unseen_names & eval_names


def test_mdnet_track_uses_the_shipped_model_by_default(tmp_path, capsys):
    seq = read_sequence(SHARED_DATA / "OTB" / "Crossing")
    out = tmp_path / "out"
    frames = 8
    rc = cli.main(cli.parse_args([str(seq.path), "--out-dir", str(out), "--frames", str(frames),
                                  "--set", "mode=fast", "--quiet"]))
    assert rc == 0, capsys.readouterr().err
    run = yaml.safe_load((out / "mdnet-track.yaml").read_text())
    assert run["weights"] == str(DEFAULT_WEIGHTS)
    assert run["provenance"]["provenance"]["config"]["model"]["mode"] == "fast"
    boxes = np.loadtxt(out / "Crossing.txt", delimiter=",")
    assert boxes.shape == (frames, 4)
    # Crossing is an easy pedestrian: a working model keeps the target on every frame.
    ious = iou_per_frame(boxes, seq.boxes[:frames])
    assert ious.min() > 0.5, ious
