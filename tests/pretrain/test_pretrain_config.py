"""The pretraining config and the shipped experiment configs."""
from pathlib import Path

import pytest

from online.config import ConfigError
from pretrain import config as pconfig
from pretrain.optim import lr_factor, world_lr_scale

CONFIGS = Path(__file__).resolve().parents[2] / "cluster" / "configs"
SHIPPED = ["demo", "bench", "vot-otb", "otb-vot", "imagenet-vid", "got10k"]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_load(name):
    cfg = pconfig.load(CONFIGS / f"{name}.yaml")
    if name == "bench":  # mdnet-bench pretrain sets the data root
        assert cfg.sampling.frames == 8 and cfg.sampling.pos == 32 and cfg.sampling.neg == 96
        return
    assert cfg.data.roots
    if name != "demo":
        # Full VGG-M widths and the paper's recipe.
        assert cfg.model.conv_channels == (96, 256, 512) and cfg.model.fc_width == 512
        assert cfg.train.cycles == 100 and cfg.sampling.pos == 32 and cfg.sampling.neg == 96
        assert cfg.optim.lr == 1e-4 and cfg.optim.lr_mult_fc == 10 and cfg.optim.momentum == 0.9
        assert cfg.optim.weight_decay == 5e-4 and cfg.data.val_fraction == 0.2


def test_unknown_keys_and_bad_values_are_rejected():
    with pytest.raises(ConfigError, match="valid keys"):
        pconfig.load(None, ["optim.lrr=1"])
    with pytest.raises(ConfigError, match="lr_scaling"):
        pconfig.load(None, ["optim.lr_scaling=quadratic"])
    with pytest.raises(ConfigError, match="mining.pool"):
        pconfig.load(None, ["mining.pool=10"])
    cfg = pconfig.load(None, ["train.cycles=3", "optim.lr=2e-4", "data.roots=[a, b]"])
    assert (cfg.train.cycles, cfg.optim.lr, cfg.data.roots) == (3, 2e-4, ("a", "b"))


def test_lr_scaling_and_schedules():
    assert world_lr_scale("none", 8) == 1 and world_lr_scale("linear", 8) == 8
    assert world_lr_scale("sqrt", 4) == 2
    s = pconfig.ScheduleConfig(kind="step", milestones=(10.0, 20.0), gamma=0.1)
    assert [lr_factor(p, 30, s) for p in (5, 10, 25)] == pytest.approx([1, 0.1, 0.01])
    c = pconfig.ScheduleConfig(kind="cosine", final_factor=0.1, warmup_cycles=1.0)
    assert lr_factor(0.5, 10, c) == pytest.approx(0.5 * (0.1 + 0.9 * 0.5 * (1 + __import__("math").cos(__import__("math").pi * 0.05))))
    assert lr_factor(10, 10, c) == pytest.approx(0.1)
