"""Pretraining helps, end to end on synthetic data: a short real 2-rank pretraining learns something
that holds on HELD-OUT frames, and its exported weights track HELD-OUT sequences better than the
very weights the run started from.

The comparison is paired and as clean as this project can make it:
- "random" is `mdnet-export RUN --random-init 3`: the paper init with the run's own seed, i.e. the
  exact trunk the pretraining started from. The only difference between the two weight files is
  the pretraining.
- Both track the same 8 held-out sequences (another synthesis seed than the 64 training ones) with
  the same tracker config and the same 2 tracker seeds; the statistic is the mean over the 16
  (sequence, tracker seed) pairs of AUC(pretrained) - AUC(random).

The recipe is `make demo`'s (cluster/configs/demo.yaml: tiny widths 8,16,16/32, 4 frames, 16 pos
+ 32 hardest of 64 neg, lr 1e-3 with MDNet's multipliers, cosine) on 64 training sequences x 30
frames of 96x72, 30 cycles = 960 steps per rank (~4.5 min on 2 cores).

Measured on this project's 2-core CPU machine with these settings, paired
difference of the mean over 16 pairs +- its standard error, for three pretraining seeds (the
baseline always being that seed's own starting point):

    seed 3 (this test): pretrained 0.653, random init 0.463, difference +0.190 +- 0.046
    seed 4:             pretrained 0.666, random init 0.574, difference +0.092 +- 0.035
    seed 5:             pretrained 0.623, random init 0.533, difference +0.090 +- 0.039

Those three used the earlier samplers (whole boxes clamped inside the image; pretraining samplers
gaussian/uniform with half whole-image negatives). With MDNet's samplers (online/sampling.py:
centres kept in the image; py-MDNet's pretraining samplers, uniform trans 0.1 / scale 1.3 and
uniform trans 2 / scale 1.6), seed 3 measured: pretrained 0.713, random init 0.411, difference
+0.303 +- 0.059 (seeds 4 and 5 not re-measured). All of the above had wrong conv1/conv2 gradients
(MXNet 1.9.1's oneDNN LRN -> pool backward; fixed by ConvStage(trainable=True), see
tests/pretrain/test_lrn_gradient.py). With the true gradients, seed 3: pretrained 0.681, random
init 0.411, difference +0.270 +- 0.049; validation TrackTopKAcc 0.283 -> 0.439, loss 0.593 -> 0.435.

(The same recipe with less: 32 sequences x 30 cycles gave +0.128; 64 x 15 cycles +0.102; 8 x 30
cycles, the previous version of this test, -0.062 +- 0.060: too few domains and steps to generalise.)

Why MARGIN = 0.04: every seed measured cleared it by more than 1.2 standard errors, and seed 3 by
3.2. The run is deterministic on one machine type (samples are seeded per (seed, rank, step), the
2-rank allreduce sums in a fixed order, 1 thread per rank), so CI on this machine type reproduces
+0.270; a CPU with other SIMD kernels (MKLDNN picks them per instruction set) changes the float
rounding, and after ~1000 SGD steps that is a fresh draw from the spread above (lowest +0.090).
A margin closer to those values would turn such a draw into a coin flip; a smaller one would not
show that pretraining helps.

Also asserted: held-out validation (the last 25% of every training sequence's frames, 2 frames per
domain = 128 frames) improves from the first validation (epoch 9) to the last (epoch 29). Measured,
seeds 3 / 4 / 5: TrackTopKAcc +0.137 / +0.297 / +0.174, Validation-Loss -0.180 / -0.170 / -0.175.
Asserted: TrackTopKAcc +0.05 and loss -0.08 (a net that stopped learning moves by neither).
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from online.metrics import overlaps, success_auc
from online.readers import discover

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DEMO_CONFIG = REPO / "cluster" / "configs" / "demo.yaml"
SEED = 3                 # pretraining seed = random-init seed
TRACKER_SEEDS = (0, 1)
MARGIN = 0.04


def _env():
    return dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                PATH=str(BIN) + os.pathsep + os.environ.get("PATH", ""), OMP_NUM_THREADS="1")


def _track_all(weights: dict, test_root: Path, out: Path) -> dict:
    """AUC per (weights name, tracker seed) per held-out sequence; two tracker processes at a time
    (one per core)."""
    jobs = [(name, s) for s in TRACKER_SEEDS for name in weights]
    seqs = discover(test_root)
    aucs, running = {}, []

    def finish(job, proc):
        text, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, f"mdnet-track {job} failed:\n{text[-3000:]}"
        res = out / f"{job[0]}-s{job[1]}"
        per_seq = []
        for seq in seqs:
            pred = np.loadtxt(res / f"{seq.name}.txt", delimiter=",")
            assert pred.shape == (len(seq), 4) and np.all(np.isfinite(pred))
            per_seq.append(success_auc(overlaps(pred, seq.boxes, seq.absent)))
        aucs[job] = np.array(per_seq)

    while jobs or running:
        while jobs and len(running) < 2:
            job = jobs.pop(0)
            cmd = [sys.executable, "-m", "online.cli", "--weights", str(weights[job[0]]), str(test_root),
                   "--out-dir", str(out / f"{job[0]}-s{job[1]}"), "--seed", str(job[1]), "--quiet"]
            running.append((job, subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                                                  stderr=subprocess.STDOUT, text=True)))
        finish(*running.pop(0))
    return aucs


def test_pretraining_beats_its_own_starting_point_on_held_out_sequences(tmp_path, run_pretrain):
    from tools.data.synth import synthesize
    synthesize(tmp_path / "train", sequences=64, frames=30, size=(96, 72), seed=21)
    synthesize(tmp_path / "test", sequences=8, frames=20, size=(96, 72), seed=22)
    # The demo's own recipe (cluster/configs/demo.yaml), with this test's seed and data.
    cfg = yaml.safe_load(DEMO_CONFIG.read_text())
    cfg["seed"] = SEED
    cfg["data"]["roots"] = [str(tmp_path / "train")]
    cfg["train"].update(cycles=30, log_every=0)
    cfg["val"].update(every_cycles=10, frames_per_domain=2, candidates=32)
    cfg["checkpoint"] = {"every_steps": 0, "keep": 1}
    cfg["runtime"] = {"threads": 1, "debug_dump": False}
    (tmp_path / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    cfg = tmp_path / "cfg.yaml"
    run = tmp_path / "run"
    run_pretrain(2, "--config", cfg, "--out", run, timeout=900)

    val = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
           if r["phase"] == "validation"]
    assert [r["epoch"] for r in val] == [9, 19, 29]
    first, last = val[0], val[-1]
    print(f"validation TrackTopKAcc {first['TrackTopKAcc']:.3f} -> {last['TrackTopKAcc']:.3f}, "
          f"loss {first['Loss']:.3f} -> {last['Loss']:.3f}")
    assert last["TrackTopKAcc"] >= first["TrackTopKAcc"] + 0.05
    assert last["Loss"] <= first["Loss"] - 0.08

    weights = {}
    for name, extra in (("pretrained", []), ("random", ["--random-init", str(SEED)])):
        weights[name] = tmp_path / f"{name}.h5"
        subprocess.run([sys.executable, "-m", "tools.weights.export", str(run), "--out", str(weights[name]), *extra],
                       cwd=REPO, env=_env(), check=True, capture_output=True)
    aucs = _track_all(weights, tmp_path / "test", tmp_path / "results")
    pre = np.stack([aucs[("pretrained", s)] for s in TRACKER_SEEDS])
    rnd = np.stack([aucs[("random", s)] for s in TRACKER_SEEDS])
    diff = pre - rnd
    se = diff.std(ddof=1) / np.sqrt(diff.size)
    print(f"held-out success AUC: pretrained {pre.mean():.3f}, random init {rnd.mean():.3f}, "
          f"paired difference {diff.mean():+.3f} +- {se:.3f} (per sequence {np.round(diff.mean(0), 2).tolist()})")
    assert pre.mean() > 0.3  # it tracks (a lost tracker scores ~0.05)
    assert diff.mean() >= MARGIN, (
        f"pretrained weights should track held-out sequences better than their own starting point by "
        f">= {MARGIN} success AUC; got {diff.mean():+.3f} +- {se:.3f}")
