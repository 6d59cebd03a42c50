"""Every launch file in cluster/ gets the check that can run on this machine (no container engine,
no Slurm, no Kubernetes; docs/pretraining.md "Launch files: what is checked" lists what is and is not run):

- cluster/horovodrun.sh (the one launch script; Slurm and Kubernetes call it too): `bash -n`, then
  a real `horovodrun -np 2 -H localhost:2` run through it, twice with RESUME=auto: the first starts
  fresh and stops after step 1, the second finds the checkpoint and resumes (a requeued job).
- cluster/slurm.sbatch: `bash -n`, and run with Slurm's variables and stand-ins for `scontrol`
  and `horovodrun` that print what they were given: hosts, ranks, paths and --resume.
- cluster/mpijob.yaml: parsed; every /runs or /data path a container's command uses is mounted in
  that container; the launcher command runs (stand-in horovodrun) and adds --resume when the run
  folder has a checkpoint; its config with its --set overrides loads.
- cluster/Dockerfile: each instruction checked against the repository (COPY sources, WORKDIR and
  the .venv on PATH, the `make` target its RUN uses via `make -n`, the CMD program).
- cluster/configs/*.yaml: every file loads through the project's loader (TrackerConfig for
  tracker.yaml, pretrain.config.load for the rest).
"""
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from online.config import load_config
from online.tracker_config import TrackerConfig
from pretrain import checkpoint as ckpt
from pretrain import config as pconfig
from tests.pretrain.conftest import BIN, REPO, write_config

CLUSTER = REPO / "cluster"
SCRIPTS = [CLUSTER / "horovodrun.sh", CLUSTER / "slurm.sbatch"]
CONFIGS = sorted((CLUSTER / "configs").glob("*.yaml"))


def _env(**extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PATH=str(BIN) + os.pathsep + os.environ.get("PATH", ""))
    for k in ("NP", "HOSTS", "HOSTFILE", "RESUME", "MDNET_DEBUG_KILL", "VENV", "CONFIG", "OUT"):
        env.pop(k, None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _stub_bin(tmp_path: Path) -> Path:
    """A folder with stand-ins: `horovodrun` prints its arguments one per line (and the thread
    count it was given), `scontrol show hostnames` prints two node names, no nvidia-smi."""
    stub = tmp_path / "stub-bin"
    stub.mkdir()
    (stub / "horovodrun").write_text('#!/bin/sh\necho "OMP_NUM_THREADS=${OMP_NUM_THREADS:-}"\n'
                                     'for a in "$@"; do echo "arg:$a"; done\n')
    (stub / "scontrol").write_text('#!/bin/sh\n[ "$1 $2" = "show hostnames" ] && printf "node1\\nnode2\\n"\n')
    for f in stub.iterdir():
        f.chmod(0o755)
    return stub


def _stub_args(out: str) -> list[str]:
    return [line[4:] for line in out.splitlines() if line.startswith("arg:")]


# ------------------------------------------------------------------------------ shell files

@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shell_files_parse(script):
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_horovodrun_sh_is_executable():
    assert os.access(CLUSTER / "horovodrun.sh", os.X_OK)  # the README runs it as cluster/horovodrun.sh


def test_horovodrun_sh_runs_two_ranks_and_resumes_on_rerun(tmp_path):
    from tools.data.synth import synthesize
    synthesize(tmp_path / "synth", sequences=4, frames=12, size=(96, 72), seed=5)
    # 4 domains on 2 ranks: 2 steps per cycle, 1 cycle; a checkpoint after every step.
    cfg = write_config(tmp_path / "tiny.yaml", [tmp_path / "synth"], train={"cycles": 1},
                       val={"enabled": False}, checkpoint={"every_steps": 1},
                       runtime={"threads": 1, "debug_dump": False})
    run = tmp_path / "run"
    cmd = ["bash", str(CLUSTER / "horovodrun.sh"), str(cfg), str(run), "--set", "train.stop_at_step=1"]
    env = _env(NP=2, HOSTS="localhost:2", RESUME="auto")  # horovodrun and mdnet-pretrain from the venv
    for attempt in (1, 2):  # the same command twice, as a requeued job would run it
        # The timeout guards against a hang; no speed is asserted (shared machines are noisy).
        proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
        assert ckpt.read_meta(ckpt.find_latest(run)).step == attempt
    log = (run / "log.txt").read_text()
    assert "world 2 rank(s) via horovod/gloo" in log
    assert "resume: " in log and "-> starting at step 1 of 2 on 2 rank(s)" in log


def test_horovodrun_sh_arguments(tmp_path):
    stub = _stub_bin(tmp_path)
    script, run = str(CLUSTER / "horovodrun.sh"), tmp_path / "run"

    def args(**env):
        proc = subprocess.run(["bash", script, "c.yaml", str(run), "--set", "x=1"], cwd=REPO,
                              env=_env(**env, PATH=f"{stub}:{os.environ['PATH']}"), capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return _stub_args(proc.stdout)

    tail = ["mdnet-pretrain", "--config", "c.yaml", "--out", str(run)]
    assert args(NP=3) == ["-np", "3", "-H", "localhost:3", *tail, "--set", "x=1"]
    assert args(NP=2, HOSTFILE="/etc/mpi/hostfile", RESUME=1) == [
        "-np", "2", "--hostfile", "/etc/mpi/hostfile", *tail, "--resume", "--set", "x=1"]
    assert "--resume" not in args(NP=2, RESUME="auto")
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "latest").write_text("ckpt-00000001\n")
    assert "--resume" in args(NP=2, RESUME="auto")
    bad = subprocess.run(["bash", script, "c.yaml", str(run)], cwd=REPO, capture_output=True, text=True,
                         env=_env(RESUME="yes", PATH=f"{stub}:{os.environ['PATH']}"))
    assert bad.returncode == 2 and "RESUME must be" in bad.stderr


def test_slurm_sbatch_launches_through_horovodrun_sh(tmp_path):
    stub = _stub_bin(tmp_path)
    venv = tmp_path / "venv"  # a stand-in virtualenv whose activate puts the stand-ins first
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text(f'export PATH="{stub}:$PATH"\n')
    text = (CLUSTER / "slurm.sbatch").read_text()
    default_config = re.search(r"CONFIG=\$\{CONFIG:-(\S+)\}", text).group(1)
    assert (REPO / default_config).is_file()
    assert "cluster/horovodrun.sh" in text and (REPO / "cluster/horovodrun.sh").is_file()
    run = tmp_path / "run"
    env = _env(VENV=venv, CONFIG="cluster/configs/vot-otb.yaml", OUT=run, SLURM_JOB_NODELIST="node[1-2]",
               SLURM_NTASKS=8, SLURM_NTASKS_PER_NODE=4, SLURM_CPUS_PER_TASK=6)

    def launch():
        proc = subprocess.run(["bash", str(CLUSTER / "slurm.sbatch")], cwd=REPO, env=env, capture_output=True,
                              text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    out = launch()
    assert "OMP_NUM_THREADS=6" in out
    assert _stub_args(out) == ["-np", "8", "-H", "node1:4,node2:4", "mdnet-pretrain",
                               "--config", "cluster/configs/vot-otb.yaml", "--out", str(run), "--force"]
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "latest").write_text("ckpt-00000004\n")
    assert _stub_args(launch())[-1] == "--resume"  # requeued: continues


# ------------------------------------------------------------------------------ Kubernetes

def _mpijob():
    docs = list(yaml.safe_load_all((CLUSTER / "mpijob.yaml").read_text()))
    assert len(docs) == 1 and docs[0]["kind"] == "MPIJob"
    return docs[0]


def _pods(job):
    for role, spec in job["spec"]["mpiReplicaSpecs"].items():
        yield role, spec["template"]["spec"]


def test_mpijob_mounts_every_path_its_commands_use():
    job = _mpijob()
    claims = {}
    for role, pod in _pods(job):
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for c in pod["containers"]:
            mounts = c.get("volumeMounts", [])
            for m in mounts:
                assert m["name"] in volumes, f"{role}/{c['name']}: volume {m['name']} not in the pod"
                claims.setdefault(m["mountPath"], set()).add(volumes[m["name"]]["persistentVolumeClaim"]["claimName"])
            words = " ".join(c.get("command", []) + c.get("args", []))
            for path in re.findall(r"(?<![\w.])(/(?:runs|data)\b[^\s,\]\"']*)", words):
                assert any(path == m["mountPath"] or path.startswith(m["mountPath"].rstrip("/") + "/")
                           for m in mounts), f"{role}/{c['name']} uses {path} but does not mount it"
    # Launcher and workers see the same run folder.
    assert all(len(names) == 1 for names in claims.values()), claims
    assert "/runs" in claims


def test_mpijob_launcher_command_runs_and_resumes(tmp_path):
    job = _mpijob()
    launcher = job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
    assert launcher["command"] == ["bash", "-c"]
    script = launcher["args"][0]
    assert subprocess.run(["bash", "-n", "-c", script]).returncode == 0
    # Run it for real with the run folder moved under tmp and a stand-in horovodrun.
    stub = _stub_bin(tmp_path)
    local = script.replace("/runs/", f"{tmp_path}/runs/")

    def launch():
        proc = subprocess.run(["bash", "-c", local], cwd=REPO, capture_output=True, text=True,
                              env=_env(PATH=f"{stub}:{os.environ['PATH']}"))
        assert proc.returncode == 0, proc.stderr
        return _stub_args(proc.stdout)

    args = launch()
    workers = job["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"] * job["spec"]["slotsPerWorker"]
    assert args[:4] == ["-np", str(workers), "--hostfile", "/etc/mpi/hostfile"]
    assert "--resume" not in args
    out = Path(args[args.index("--out") + 1])
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "latest").write_text("ckpt-00000100\n")
    assert "--resume" in launch()  # a restarted job continues
    # The config it names, with its overrides, is a valid pretraining config.
    overrides = [args[i + 1] for i, a in enumerate(args) if a == "--set"]
    cfg = pconfig.load(REPO / args[args.index("--config") + 1], overrides)
    assert cfg.data.roots == ("/data/vot2013", "/data/vot2014", "/data/vot2015")


# ------------------------------------------------------------------------------ Dockerfile

def _instructions(path: Path):
    """(INSTRUCTION, text) pairs, continuation lines joined, comments dropped."""
    out, current = [], ""
    for line in path.read_text().splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        current += line.rstrip("\\").strip() + " " if line.rstrip().endswith("\\") else line.strip()
        if not line.rstrip().endswith("\\"):
            word, _, rest = current.partition(" ")
            out.append((word.upper(), rest.strip()))
            current = ""
    return out


def test_dockerfile_refers_to_what_exists(tmp_path):
    ins = _instructions(CLUSTER / "Dockerfile")
    kinds = [k for k, _ in ins]
    assert kinds[:2] == ["ARG", "FROM"] and "CMD" in kinds
    workdir = dict(ins)["WORKDIR"]
    for kind, text in ins:
        if kind == "COPY":
            *sources, _dest = shlex.split(text)
            for s in sources:
                assert (REPO / s).exists(), f"COPY {s}: not in the repository"
    runs = [t for k, t in ins if k == "RUN"]
    make_call = re.compile(r"(?:^|&& )make (\w+)((?: \w+=\S+)*)")
    make_steps = [t for t in runs if make_call.search(t)]
    assert len(make_steps) == 1
    make = make_call.search(make_steps[0])
    target, assigns = make.group(1), dict(a.split("=", 1) for a in make.group(2).split())
    assert "rm -rf .venv" in make_steps[0]  # a .venv in the context must not stand in for the image's
    makefile = (REPO / "Makefile").read_text()
    assert re.search(rf"^{target}:", makefile, re.M), f"Makefile has no target {target}"
    for var in assigns:
        assert re.search(rf"^{var} \?=", makefile, re.M), f"Makefile does not take {var}"
    # The target's commands for both builds, printed (not run) by make; a fresh venv path so the
    # local install stamp does not make it a no-op.
    for gpu, mxnet in (("0", "mxnet==1.9.1"), ("1", "mxnet-cu112==1.9.1")):
        proc = subprocess.run(["make", "-n", target, f"GPU={gpu}", "PYTHON=python3", f"VENV={tmp_path}/venv"],
                              cwd=REPO, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert mxnet in proc.stdout and "horovod==0.28.1" in proc.stdout and "-e ." in proc.stdout
    # The venv `make install` creates is the one on PATH, and CMD's program is one it installs.
    venv = re.search(r"^VENV \?= (\S+)", makefile, re.M).group(1)
    assert f"{workdir}/{venv}/bin" in dict(ins)["ENV"]
    program = yaml.safe_load(dict(ins)["CMD"])[0]
    assert re.search(rf'^{program} = "', (REPO / "pyproject.toml").read_text(), re.M)
    ignored = (CLUSTER / "Dockerfile.dockerignore").read_text().split()
    assert {".venv", "work", "runs"} <= set(ignored)


# ------------------------------------------------------------------------------ configs

def test_every_config_is_checked():
    assert len(CONFIGS) >= 7 and CLUSTER / "configs" / "tracker.yaml" in CONFIGS


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads(path):
    if path.name == "tracker.yaml":
        load_config(TrackerConfig, path)
    else:
        pconfig.load(path)
