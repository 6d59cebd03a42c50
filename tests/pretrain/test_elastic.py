"""Elastic pretraining (pretrain/elastic.py) under Horovod's real elastic driver: `horovodrun -np 2
--min-np 1 --max-np 2 --host-discovery-script cluster/discover-hosts.sh` with two "hosts" that are
both this machine (localhost and 127.0.0.1, one slot each, listed in a file the test edits).

Rank 1 SIGKILLs itself before step 3 (MDNET_DEBUG_KILL, first world only); the test then takes its
host out of the discovery file (the spot instance is gone) and puts it back once the job runs on
one rank. The job must go on with one rank from the last checkpoint, take the host back at a
checkpoint and finish every step with two; the world size in the log and in the checkpoints goes
2 -> 1 -> 2, the exported weights are finite, and the one-rank segment equals a plain
`--resume` with one rank from the same checkpoint, bit for bit."""
import shutil
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np

from pretrain import checkpoint as ckpt
from tests.pretrain.conftest import BIN, REPO, run_env

# 6 domains: 3 steps per cycle on 2 ranks, 6 on 1; 8 cycles = 24 steps on 2 ranks (48 on 1).
# A checkpoint (= an elastic commit) every 2 steps; keep them all, the test reads old ones.
CYCLES = 8


def _wait_for(predicate, proc, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc.poll() is not None:
            raise AssertionError(f"the job ended (rc {proc.returncode}) before {what}")
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _arrays(ckpt_dir: Path) -> dict:
    out = {}
    with h5py.File(ckpt_dir / ckpt.SHARED, "r") as f:
        for g in ("params", "momentum"):
            for n, d in f[g].items():
                out[f"{g}/{n}"] = d[()]
    branches, _ = ckpt.read_branches(ckpt_dir)
    for name, b in branches.items():
        for k, v in b.items():
            out[f"branch/{name}/{k}"] = v
    return out


def test_worker_lost_then_host_rejoins(tmp_path, synth_root, tiny_config):
    cfg = tiny_config(tmp_path / "cfg.yaml", [synth_root], val={"enabled": False}, train={"cycles": CYCLES},
                      checkpoint={"every_steps": 2, "keep": 100})
    hosts = tmp_path / "hosts"
    hosts.write_text("localhost:1\n127.0.0.1:1\n")
    run, stdout = tmp_path / "run", tmp_path / "stdout.txt"
    cmd = [str(BIN / "horovodrun"), "-np", "2", "--min-np", "1", "--max-np", "2",
           "--host-discovery-script", str(REPO / "cluster" / "discover-hosts.sh"),
           # a failed host stays out for 3-4 s, then may come back when the script lists it
           "--blacklist-cooldown-range", "3", "4",
           sys.executable, "-m", "pretrain.cli", "--elastic", "--config", str(cfg), "--out", str(run)]
    with open(stdout, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=run_env(MDNET_DEBUG_KILL="1:3", MDNET_ELASTIC_HOSTS=str(hosts)),
                                stdout=fh, stderr=subprocess.STDOUT, text=True)
    try:
        log = run / "log.txt"

        def text():
            return log.read_text() if log.is_file() else ""
        _wait_for(lambda: "elastic: generation 1: world of 1 rank(s)" in text(), proc, 90, "the one-rank world")
        killed_host = "127.0.0.1" if "rank 1 on 127.0.0.1" in text() else "localhost"
        survivor = "localhost" if killed_host == "127.0.0.1" else "127.0.0.1"
        hosts.write_text(f"{survivor}:1\n")  # the lost worker's host is gone ...
        _wait_for(lambda: "resume: " in text().split("generation 1:")[-1] and "checkpoint: " in
                  text().split("generation 1:")[-1], proc, 60, "a checkpoint of the one-rank world")
        hosts.write_text(f"{survivor}:1\n{killed_host}:1\n")  # ... and back
        rc = proc.wait(timeout=150)
    finally:
        if proc.poll() is None:
            proc.kill()  # only the process this test started
            proc.wait()
    out = stdout.read_text()
    assert rc == 0, out[-4000:]
    log = (run / "log.txt").read_text()
    assert "MDNET_DEBUG_KILL: rank 1 kills itself before step 3" in out
    # The world in the log: 2 -> 1 -> 2, each start resuming from the last commit (checkpoint).
    assert "elastic: generation 0: world of 2 rank(s)" in log
    assert "elastic: generation 1: world of 1 rank(s)" in log and "elastic: generation 2: world of 2 rank(s)" in log, log[-3000:]
    assert "(step 2 of 2 rank(s)) -> starting at step 4 of 48 on 1 rank(s)" in log
    assert "shared lr x1 (lr_scaling=linear, 1 ranks)" in log and "shared lr x2 (lr_scaling=linear, 2 ranks)" in log
    back = [line for line in log.splitlines() if "of 1 rank(s)) -> starting at step" in line]
    assert len(back) == 1 and "of 24 on 2 rank(s)" in back[0], back
    # ... and in the checkpoints: 2-rank step 2, 1-rank steps 6/8, 2-rank to the last step. Folders
    # are named by progress and world size, so the 2-rank world never rewrote a 1-rank folder:
    # every folder's name is the one its own meta.json gives.
    metas = {p.name: ckpt.read_meta(p) for p in (run / ckpt.CKPT_DIR).iterdir() if (p / ckpt.META).is_file()}
    assert all(name == ckpt.ckpt_name(m.step, m.world_size, m.steps_per_cycle) for name, m in metas.items()), metas
    assert ckpt.ckpt_name(2, 2, 3) in metas
    assert ckpt.ckpt_name(6, 1, 6) in metas and ckpt.ckpt_name(8, 1, 6) in metas
    latest = ckpt.find_latest(run)
    assert latest.name == ckpt.ckpt_name(24, 2, 3) and ckpt.read_meta(latest).world_size == 2
    # Both ranks of the final world ended with the same shared weights; exported weights are finite.
    d0, d1 = np.load(run / "debug" / "rank0.npz"), np.load(run / "debug" / "rank1.npz")
    for k in d0.files:
        if k.startswith("shared:"):
            assert np.array_equal(d0[k], d1[k]), k
    from online.weights import load_weights
    from tools.weights.export import export
    export(run, tmp_path / "weights.h5")
    weights = load_weights(tmp_path / "weights.h5")
    assert weights.params and all(np.isfinite(v).all() for v in weights.params.values())

    # The elastic reset 2 -> 1 is a plain --resume with one rank from the same checkpoint: run that
    # from a copy of ckpt-2 to step 8 and compare the checkpoint, bit for bit.
    plain = tmp_path / "plain"
    (plain / ckpt.CKPT_DIR).mkdir(parents=True)
    first = ckpt.ckpt_name(2, 2, 3)
    shutil.copytree(run / ckpt.CKPT_DIR / first, plain / ckpt.CKPT_DIR / first)
    shutil.copy(run / "config.yaml", plain / "config.yaml")
    proc = subprocess.run([sys.executable, "-m", "pretrain.cli", "--out", str(plain), "--resume",
                           "--set", "train.stop_at_step=8"], cwd=REPO, env=run_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    one_rank = ckpt.ckpt_name(8, 1, 6)
    a, b = _arrays(run / ckpt.CKPT_DIR / one_rank), _arrays(plain / ckpt.CKPT_DIR / one_rank)
    assert sorted(a) == sorted(b)
    for k in a:
        assert np.array_equal(a[k], b[k]), k
