"""Config strictness: unknown keys, wrong types, overrides, round trip."""
from dataclasses import FrozenInstanceError, dataclass
from typing import Optional, Tuple

import pytest
import yaml

from online.config import (ConfigError, config_to_dict, describe_config, load_config, opt,
                           save_config)


@dataclass(frozen=True)
class Train:
    lr: float = opt(1e-4, "base learning rate")
    steps: int = opt(10, "number of steps")
    mining: bool = opt(True, "hard negative mining on/off")
    layers: Tuple[str, ...] = opt(("conv1", "conv2"), "layers to load")
    weights: Optional[str] = opt(None, "optional weight file")


@dataclass(frozen=True)
class Cfg:
    name: str = opt("demo", "run name")
    train: Train = opt(Train(), "training section")


def write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_defaults_and_file(tmp_path):
    assert load_config(Cfg).train.lr == 1e-4
    cfg = load_config(Cfg, write(tmp_path, "train:\n  lr: 0.5\n  steps: 3\n"))
    assert cfg.train.lr == 0.5 and cfg.train.steps == 3 and cfg.name == "demo"
    with pytest.raises(FrozenInstanceError):
        cfg.name = "x"


def test_unknown_key_names_key_file_and_valid_keys(tmp_path):
    p = write(tmp_path, "train:\n  lrr: 0.5\n")
    with pytest.raises(ConfigError) as e:
        load_config(Cfg, p)
    msg = str(e.value)
    assert "'lrr'" in msg and str(p) in msg and "lr, mining, steps, weights" in msg.replace("layers, ", "")
    with pytest.raises(ConfigError, match="unknown key 'bogus'.*valid keys: name, train"):
        load_config(Cfg, write(tmp_path, "bogus: 1\n"))


def test_wrong_type_names_field(tmp_path):
    with pytest.raises(ConfigError, match="steps.*expected int"):
        load_config(Cfg, write(tmp_path, "train:\n  steps: ten\n"))
    with pytest.raises(ConfigError, match="mining.*expected bool"):
        load_config(Cfg, write(tmp_path, "train:\n  mining: 1\n"))
    with pytest.raises(ConfigError, match="train.*mapping"):
        load_config(Cfg, write(tmp_path, "train: 3\n"))
    with pytest.raises(ConfigError, match="layers.*list"):
        load_config(Cfg, write(tmp_path, "train:\n  layers: conv1\n"))


def test_yaml_float_without_dot_is_accepted(tmp_path):
    # PyYAML reads "1e-4" as a string (YAML 1.1); a float field must still accept it.
    assert load_config(Cfg, write(tmp_path, "train:\n  lr: 1e-4\n")).train.lr == 1e-4


def test_overrides(tmp_path):
    cfg = load_config(Cfg, None, ["train.lr=1e-3", "train.layers=[conv3]", "train.weights=w.h5"])
    assert cfg.train.lr == 1e-3 and cfg.train.layers == ("conv3",) and cfg.train.weights == "w.h5"
    with pytest.raises(ConfigError, match="unknown key 'lrx'"):
        load_config(Cfg, None, ["train.lrx=1"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(Cfg, None, ["train.lr"])
    with pytest.raises(ConfigError, match="steps.*expected int"):
        load_config(Cfg, None, ["train.steps=1.5"])


def test_missing_file_and_bad_top_level(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(Cfg, tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(Cfg, write(tmp_path, "- 1\n- 2\n"))


def test_round_trip_and_describe(tmp_path):
    cfg = load_config(Cfg, None, ["train.steps=7"])
    out = tmp_path / "resolved.yaml"
    save_config(cfg, out)
    assert yaml.safe_load(out.read_text())["train"]["steps"] == 7
    assert load_config(Cfg, out) == cfg
    assert config_to_dict(cfg)["train"]["layers"] == ["conv1", "conv2"]
    lines = describe_config(Cfg)
    assert any(line.startswith("train.lr = 0.0001  # base learning rate") for line in lines)


def test_list_default_rejected():
    with pytest.raises(TypeError):
        opt([1, 2], "mutable default")
