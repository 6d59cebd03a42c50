"""Smoke run of the real-video recipe (cluster/configs/real-cpu.yaml) as it is, on a small pack
of real pool sequences, under a real horovodrun -np 2: VGG-M widths, fast mode, the evaluation set
excluded. CI does not run the ~1-hour recipe; this checks that the same config, with only the pack,
the length and the validation interval overridden, pretrains from a pack and exports."""
import json

import h5py
import yaml

from tests.pretrain.conftest import REPO
from tools.data.cli import build_parser, main
from tools.weights.export import export

RECIPE = REPO / "cluster" / "configs" / "real-cpu.yaml"


def test_real_recipe_pretrains_from_a_pack_and_exports(shared_pool, run_pretrain, tmp_path):
    pack = tmp_path / "pool.h5"
    roots = [shared_pool / "OTB" / "Deer", shared_pool / "OTB" / "KiteSurf", shared_pool / "UAV123_10fps"]
    assert main(build_parser().parse_args(["pack", *map(str, roots), "--out", str(pack), "--frames", "20"])) == 0

    run = tmp_path / "run"
    proc = run_pretrain(2, "--config", RECIPE, "--out", run, "--set", f"data.packs=[{pack}]",
                        "--set", "train.stop_at_step=2", "--set", "val.every_cycles=1", timeout=300)
    log = proc.stdout + proc.stderr
    assert "sharding: 3 domains over 2 rank(s)" in log, log[-3000:]
    assert "Epoch[0] Validation-" in log, log[-3000:]  # held-out frames of the real sequences were scored  # the held-out frames of the real sequences were scored

    recipe = yaml.safe_load(RECIPE.read_text())
    weights = tmp_path / "w.h5"
    prov = export(run, weights)
    assert prov["steps"] == 2 and prov["world_size"] == 2 and prov["domains"] == 3
    assert prov["config"]["model"]["conv_channels"] == recipe["model"]["conv_channels"] == [96, 256, 512]
    assert prov["config"]["model"]["mode"] == "fast"
    assert prov["config"]["data"]["exclude_overlap"] == ["../shared/data"]
    assert prov["commit"] and prov["commit_source"] == "checkpoint"
    with h5py.File(weights, "r") as f:
        assert json.loads(f.attrs["provenance"])["config"]["sampling"]["frames"] == recipe["sampling"]["frames"]


MBV2_RECIPE = REPO / "cluster" / "configs" / "real-mobilenetv2.yaml"


def test_mobilenetv2_recipe_pretrains_frozen_from_the_imagenet_start(shared_pool, run_pretrain, tmp_path):
    """The default model's recipe as it is (MobileNetV2 from weights/imagenet-mobilenetv2.h5, which
    `make install` imports; trunk frozen; fast mode) on a small real pack under horovodrun -np 2:
    the exported trunk is the ImageNet start bit for bit, fc4/fc5 moved."""
    import numpy as np

    from online.weights import load_weights

    start = REPO / "weights" / "imagenet-mobilenetv2.h5"
    assert start.is_file(), f"{start} missing: `make install` imports it"
    pack = tmp_path / "pool.h5"
    roots = [shared_pool / "OTB" / "Deer", shared_pool / "OTB" / "KiteSurf"]
    assert main(build_parser().parse_args(["pack", *map(str, roots), "--out", str(pack), "--frames", "20"])) == 0
    run = tmp_path / "run"
    proc = run_pretrain(2, "--config", MBV2_RECIPE, "--out", run, "--set", f"data.packs=[{pack}]",
                        "--set", f"init.weights={start}", "--set", "train.stop_at_step=3", timeout=300)
    log = proc.stdout + proc.stderr
    assert "init: convs from" in log and "(78 arrays)" in log, log[-3000:]
    weights = tmp_path / "w.h5"
    prov = export(run, weights)
    assert prov["steps"] == 3 and prov["config"]["model"]["trunk"] == "mobilenetv2"
    got, imagenet = load_weights(weights), load_weights(start)
    assert got.spec == imagenet.spec
    convs = [n for n in imagenet.params if not n.startswith(("fc4", "fc5"))]
    assert len(convs) == 78 and all(np.array_equal(got.params[n], imagenet.params[n]) for n in convs)
    assert not np.array_equal(got.params["fc4_weight"], imagenet.params["fc4_weight"])
