"""The shipped model (models/mdnet-real-cpu.h5): small enough to ship, says where it came from,
and is what mdnet-track uses when --weights is omitted; it tracks a real sequence out of the box."""
import numpy as np
import yaml

from online import cli
from online.metrics import overlaps as iou_per_frame
from online.readers import read_sequence
from online.shipped import DEFAULT_WEIGHTS
from online.weights import load_weights
from tests.conftest import SHARED_DATA


def test_shipped_model_is_small_and_carries_its_provenance():
    assert DEFAULT_WEIGHTS.is_file(), f"{DEFAULT_WEIGHTS} missing"
    assert DEFAULT_WEIGHTS.stat().st_size <= 25 * 2**20
    wf = load_weights(DEFAULT_WEIGHTS)
    assert wf.spec.conv_channels == (96, 256, 512) and wf.spec.fc_width == 512  # VGG-M widths
    prov = wf.provenance
    assert prov["source"] == "mdnet-pretrain"
    assert prov["config"]["data"]["exclude_overlap"] == ["../shared/data"]  # never trained on the eval set
    assert prov["domains"] == 22 and prov["steps"] > 0 and prov["world_size"] == 2
    assert len(prov["commit"].split("+")[0]) == 40


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
