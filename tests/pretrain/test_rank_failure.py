"""A rank that dies mid-run (SIGKILL, as an OOM killer or a lost node would do it, via the
MDNET_DEBUG_KILL="RANK:STEP" debug switch of pretrain/distributed.py) under a real `horovodrun -np 2`:
the survivor prints the project's one line (who stopped, the step, the last complete checkpoint,
the exact --resume command) instead of Horovod's traceback and exits non-zero within seconds; the
printed command then finishes the run."""
import re
import shlex
import subprocess
import sys
import time

from pretrain import checkpoint as ckpt
from pretrain.trainer import resume_command
from tests.pretrain.conftest import BIN, REPO, run_env

LINE = re.compile(r"mdnet-pretrain: rank (\d) stopped; rank (\d) stops after step (\d+) of 6; "
                  r"last complete checkpoint: (\S+) \(step (\d+)\); resume with: (.+)$", re.M)


def _killed_run(tmp_path, synth_root, tiny_config, kill: str):
    # 6 domains on 2 ranks: 3 steps per cycle, 2 cycles = 6 steps, a checkpoint every 2 steps.
    cfg = tiny_config(tmp_path / "cfg.yaml", [synth_root], val={"enabled": False})
    cmd = [str(BIN / "horovodrun"), "-np", "2", "-H", "localhost:2", sys.executable, "-m", "pretrain.cli",
           "--config", str(cfg), "--out", str(tmp_path / "run")]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, cwd=REPO, env=run_env(MDNET_DEBUG_KILL=kill), capture_output=True, text=True,
                          timeout=120)
    return proc, time.monotonic() - t0, proc.stdout + proc.stderr


def test_killed_rank_gives_one_line_with_resume_command_and_resume_finishes(tmp_path, synth_root, tiny_config):
    proc, elapsed, out = _killed_run(tmp_path, synth_root, tiny_config, "1:3")
    assert proc.returncode != 0, out[-3000:]
    assert elapsed < 60, f"took {elapsed:.0f} s to stop"
    lines = LINE.findall(out)
    assert len(lines) == 1, out[-3000:]
    stopped, reporter, step, latest, latest_step, command = lines[0]
    assert (stopped, reporter) == ("1", "0")
    assert int(step) >= 2 and latest.endswith(ckpt.ckpt_name(2, 2, 3)) and latest_step == "2"
    assert "MDNET_DEBUG_KILL: rank 1 kills itself before step 3" in out
    assert "Process 0 exit with status code 75" in out  # the survivor's own, documented status
    assert "Horovod has been shut down" not in out  # the old traceback
    words = shlex.split(command)
    assert words[:5] == ["horovodrun", "-np", "2", "-H", "localhost:2"] and words[-1] == "--resume"

    resumed = subprocess.run(words, cwd=REPO, env=run_env(), capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "resume: " in log and "(step 2 of 2 rank(s)) -> starting at step 2 of 6" in log
    assert (tmp_path / "run" / "checkpoints" / ckpt.ckpt_name(6, 2, 3) / "meta.json").is_file()


def test_killed_rank_0_is_reported_by_the_survivor(tmp_path, synth_root, tiny_config):
    proc, elapsed, out = _killed_run(tmp_path, synth_root, tiny_config, "0:3")
    assert proc.returncode != 0 and elapsed < 60, out[-3000:]
    lines = LINE.findall(out)
    assert len(lines) == 1 and lines[0][:2] == ("0", "1"), out[-3000:]


def test_resume_command_replaces_resume_arguments():
    argv = [str(REPO / "pretrain" / "cli.py"), "--config", "c.yaml", "--resume", "runs/x/checkpoints/ckpt-00000002",
            "--out", "runs/x", "--set", "data.roots=[/d/a b]"]
    assert resume_command(argv, True, ["horovodrun", "-np", "4", "-H", "n1:2,n2:2"]) == (
        f"horovodrun -np 4 -H n1:2,n2:2 {shlex.quote(sys.executable)} -m pretrain.cli --config c.yaml "
        "--out runs/x --set 'data.roots=[/d/a b]' --resume")
    assert resume_command(["mdnet-pretrain", "--resume=latest", "--out", "r"], False) == "mdnet-pretrain --out r --force"
    assert resume_command(["mdnet-pretrain", "--out", "r", "--force"], True) == "mdnet-pretrain --out r --resume"


def test_sigterm_is_handled_while_the_main_thread_is_blocked(tmp_path):
    # horovodrun SIGTERMs the other ranks when one exits and SIGKILLs them 5 s later; a rank busy in
    # a long native call must still report at once. Here the main thread blocks in os.read forever.
    code = (
        "import os, signal, sys\n"
        "from pretrain import distributed as dist\n"
        "r, w = os.pipe()\n"
        "with dist.on_sigterm(lambda: print('reported', flush=True)):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    os.read(r, 1)\n"
        "print('not reached')\n")
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=run_env(), capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 75 and proc.stdout == "reported\n", proc.stdout + proc.stderr
    assert time.monotonic() - t0 < 20
