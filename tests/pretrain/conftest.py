"""Fixtures for the pretraining tests: tiny synthetic datasets and a runner for real Horovod jobs."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# Tiny but complete: every feature of the real recipe is on (mining, clipping, lr scaling, a
# schedule, validation, checkpoints), only the sizes are small, so a step takes ~0.1 s on a CPU.
TINY = {
    "seed": 3,
    "data": {"workers": 1, "prefetch": 2, "val_fraction": 0.25},
    "model": {"conv_channels": [8, 16, 16], "fc_width": 32},
    "sampling": {"frames": 4, "pos": 16, "neg": 32},
    "mining": {"enabled": True, "pool": 64, "batch": 64},
    "optim": {"lr": 1.0e-3, "lr_scaling": "linear", "clip_norm": 10.0},
    "schedule": {"kind": "cosine", "warmup_cycles": 0.5, "final_factor": 0.1},
    "train": {"cycles": 2, "log_every": 0},
    "val": {"frames_per_domain": 1, "candidates": 16},
    "checkpoint": {"every_steps": 2, "keep": 10},
    "runtime": {"threads": 1, "debug_dump": True},
}


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    from tools.data.synth import synthesize
    root = tmp_path_factory.mktemp("synth")
    synthesize(root / "train", sequences=6, frames=16, size=(96, 72), seed=11)
    return root / "train"


def write_config(path: Path, roots, **sections) -> Path:
    cfg = {k: dict(v) if isinstance(v, dict) else v for k, v in TINY.items()}
    cfg["data"] = dict(cfg["data"], roots=[str(r) for r in roots])
    for k, v in sections.items():
        cfg[k] = dict(cfg.get(k, {}), **v) if isinstance(v, dict) else v
    path.write_text(yaml.safe_dump(cfg))
    return path


def run_env(**extra) -> dict:
    """The environment of a child pretraining process: this checkout first on PYTHONPATH, this venv's
    bin on PATH, no inherited debug kill switch; `extra` on top."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PATH=str(BIN) + os.pathsep + os.environ.get("PATH", ""))
    env.pop("MDNET_DEBUG_KILL", None)
    env.update(extra)
    return env


def pretrain(np_: int, *args, timeout: int = 240) -> subprocess.CompletedProcess:
    """Run mdnet-pretrain with `np_` ranks under a real horovodrun (Gloo); 1 = plain python."""
    cmd = [sys.executable, "-m", "pretrain.cli", *map(str, args)]
    if np_ > 1:
        cmd = [str(BIN / "horovodrun"), "-np", str(np_), "-H", f"localhost:{np_}"] + cmd
    proc = subprocess.run(cmd, cwd=REPO, env=run_env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="session")
def tiny_config():
    """write_config(path, roots, **section_overrides) -> path of a tiny pretraining config."""
    return write_config


@pytest.fixture(scope="session")
def run_pretrain():
    """run_pretrain(ranks, *cli_args) -> CompletedProcess (raises with the output on failure)."""
    return pretrain
