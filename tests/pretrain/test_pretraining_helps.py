"""End to end on synthetic data: a short real 2-rank pretraining learns something that holds on
HELD-OUT frames, and its exported weights drive the tracker on held-out sequences.

What is asserted, and why (numbers measured on the 2-core CI machine, seed 3, these settings):

- Held-out validation improves from the first validated epoch (epoch 4) to the last (epoch 29):
  TrackTopKAcc 0.057 -> 0.313 (+0.26) and Validation-Loss 0.681 -> 0.604 (-0.077; the class prior
  of 16 pos / 32 neg alone gives 0.637, so the end value is below what a prior-only net reaches).
  The test asks for +0.15 and -0.03: well inside the measured change, well outside the
  epoch-to-epoch noise of this small validation set (16 frames; TopK moved by up to 0.1 between
  neighbouring validations).
- The exported weights (and a random-init file of the same widths) track two held-out sequences
  through `mdnet-track`, giving finite, non-trivial results. The AUCs are printed, NOT compared:
  see below.

Not asserted: "pretrained beats random init on held-out tracking". With the first demo settings
(24 domains x ~20 visits, 240 steps per rank) the pretrained trunk tracked held-out synthetic
sequences worse than random init (0.47-0.55 vs 0.60-0.61 success AUC). With the current demo
settings (8 domains x ~60 visits, conv lr x0.1; cluster/configs/demo.yaml) it was better, but only
by +0.01 to +0.03 AUC over 2 tracker seeds, from one pretraining run, while single sequences swing
by more than 0.1 between tracker seeds. A threshold from that would assert noise; the margin is
printed here and by `make demo` instead.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from online.metrics import overlaps, success_auc
from online.readers import discover

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def _env():
    return dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                PATH=str(BIN) + os.pathsep + os.environ.get("PATH", ""), OMP_NUM_THREADS="1")


def test_short_pretraining_learns_and_exports_a_tracker(tmp_path, tiny_config, run_pretrain):
    from tools.synth import synthesize
    synthesize(tmp_path / "train", sequences=8, frames=30, size=(96, 72), seed=21)
    synthesize(tmp_path / "test", sequences=2, frames=20, size=(96, 72), seed=22)
    cfg = tiny_config(tmp_path / "cfg.yaml", [tmp_path / "train"],
                      train={"cycles": 30, "log_every": 0},
                      val={"every_cycles": 5, "frames_per_domain": 2, "candidates": 32},
                      checkpoint={"every_steps": 0, "keep": 1},
                      runtime={"threads": 1, "debug_dump": False})
    run = tmp_path / "run"
    run_pretrain(2, "--config", cfg, "--out", run, timeout=400)

    val = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
           if r["phase"] == "validation"]
    assert [r["epoch"] for r in val] == [4, 9, 14, 19, 24, 29]
    first, last = val[0], val[-1]
    print(f"validation TrackTopKAcc {first['TrackTopKAcc']:.3f} -> {last['TrackTopKAcc']:.3f}, "
          f"loss {first['Loss']:.3f} -> {last['Loss']:.3f}")
    assert last["TrackTopKAcc"] >= first["TrackTopKAcc"] + 0.15
    assert last["Loss"] <= first["Loss"] - 0.03

    for name, extra in (("pretrained", []), ("random", ["--random-init", "3"])):
        subprocess.run([sys.executable, "-m", "tools.export", str(run), "--out", str(tmp_path / f"{name}.h5"), *extra],
                       cwd=REPO, env=_env(), check=True, capture_output=True)
    # Both weight files at once, one tracker process per core.
    procs = {name: subprocess.Popen([sys.executable, "-m", "online.cli", "--weights", str(tmp_path / f"{name}.h5"),
                                     str(tmp_path / "test"), "--out-dir", str(tmp_path / f"res-{name}"),
                                     "--seed", "0", "--quiet"],
                                    cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name in ("pretrained", "random")}
    aucs = {}
    for name, p in procs.items():
        out, _ = p.communicate(timeout=400)
        assert p.returncode == 0, f"mdnet-track ({name}) failed:\n{out[-3000:]}"
        aucs[name] = []
        for seq in discover(tmp_path / "test"):
            pred = np.loadtxt(tmp_path / f"res-{name}" / f"{seq.name}.txt", delimiter=",")
            assert pred.shape == (len(seq), 4) and np.all(np.isfinite(pred))
            aucs[name].append(success_auc(overlaps(pred, seq.boxes, seq.absent)))
    print("held-out success AUC:", {k: np.round(v, 3).tolist() for k, v in aucs.items()})
    assert np.mean(aucs["pretrained"]) > 0.2  # it tracks (a lost tracker scores ~0.05)
