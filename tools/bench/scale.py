"""mdnet-bench scale: what grows with the number of domains, measured (10 -> 1,000 -> 10,000 domains).

    mdnet-bench scale                                    # 10, 1,000 and 10,000 domains, 2 ranks
    mdnet-bench scale --domains 10,100 --steps 4 --worlds 8,64 --work work/scale-small

For each domain count N: a synthetic tree of N short sequences in GOT-10k layout (real JPEG frames,
64x48 by default, from `tools/data/synth.py` clips reused round-robin, so 10,000 sequences are quick
to write), packed with `mdnet-data pack` (both cached in --work between runs), then a real
`horovodrun -np 2` run of `mdnet-pretrain` from the pack (cluster/configs/got10k.yaml with narrow
convs, see RUN_OVERRIDES) that stops after --steps steps with a checkpoint and a validation, then a
relaunch with --resume that stops after one more step. Figures per N:

- launch -> step 0: from starting horovodrun to the first step's start on rank 0 (Python and
  Horovod start-up, finding the domains, checks, sharding, outliers, model, broadcasts);
- step s: the median over ranks of each rank's median steady step (pretrain/hooks.py Timing);
- peak RSS per rank (MB, the larger rank), checkpoint size (MB) and its write time (rank 0: branch
  file, shared file, barrier, meta.json with SHA-256 of every file), the checkpoint's full read in
  this process (verify + meta + shared + every branch), validation wall time, and resume: from
  relaunching with --resume to the end of the first step after the checkpoint.

The steady step time is also compared in ONE process (tools/bench/scale_steps.py): two trainers,
the fewest and the most domains, stepping alternately, so the machine's load falls on both; the
median ratio of their step times is the figure (runs minutes apart differ by more than 5% here).

Then shard planning and checkpoint bookkeeping for simulated world sizes (--worlds, no processes):
sharding N domains, meta.json's size, writing one branch file per rank, rank 0's meta.json
(hashing every file), and one rank of a 4x larger world resuming (re-sharding) its branches.

The machine this ran on is shared: every figure is one run unless --repeats says otherwise
(then medians); compare ratios within one invocation.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
BASE_CONFIG = REPO / "cluster" / "configs" / "got10k.yaml"
# The GOT-10k recipe (frames, samples, min_train_frames 8, validation of at most 500 domains x 1
# frame, fc width 512 so branches and checkpoints have their real size) with narrow convs and a
# 256-negative pool: what grows with domains is the point, not conv FLOPs. One thread per rank.
RUN_OVERRIDES = ("init.weights=null", "model.conv_channels=[16,32,64]", "mining.pool=256",
                 "mining.batch=256", "data.workers=1", "train.log_every=0", "checkpoint.every_steps=0",
                 "runtime.threads=1")
CLIPS = 32  # distinct synthetic clips; sequence k reuses clip k % CLIPS under its own name


def add_scale_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "scale", help="pretraining start-up, step, memory, checkpoint, validation and resume vs number of domains",
        description=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--domains", default="10,1000,10000", help="domain counts, comma-separated (default 10,1000,10000)")
    p.add_argument("--frames", type=int, default=10, help="frames per sequence (default 10; got10k.yaml needs 8 "
                                                          "training frames after the 20%% held out)")
    p.add_argument("--size", default="64x48", help="frame size WxH (default 64x48)")
    p.add_argument("--steps", type=int, default=12, help="steps per rank before the checkpoint (default 12)")
    p.add_argument("--ranks", type=int, default=2, help="horovodrun -np (default 2)")
    p.add_argument("--worlds", default="8,64,256", help="simulated world sizes for planning and bookkeeping")
    p.add_argument("--repeats", type=int, default=1, help="runs per domain count, interleaved; medians (default 1)")
    p.add_argument("--work", default=str(REPO / "work" / "scale"), help="cache of trees and packs (default work/scale)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra pretraining override (repeatable), after RUN_OVERRIDES")
    p.add_argument("--paired-steps", type=int, default=30, metavar="N",
                   help="steps of the paired step-time comparison, smallest vs largest domain count (0: skip)")
    p.add_argument("--no-runs", action="store_true", help="only the simulated world sizes")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    p.set_defaults(func=bench_scale)
    return p


def _say(msg: str) -> None:
    print(f"[scale {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------ data

def _clips(work: Path, frames: int, size: tuple) -> list:
    """CLIPS synthetic clips as (list of JPEG bytes, boxes (frames, 4)), made once per size."""
    from tools.data.synth import synthesize
    bank = work / f"clips-{size[0]}x{size[1]}-f{frames}"
    if not (bank / "done").is_file():
        synthesize(bank, sequences=CLIPS, frames=frames, size=size, seed=0)
        (bank / "done").write_text("")
    clips = []
    for k in range(CLIPS):
        d = bank / f"synth_{k:03d}"
        jpgs = [p.read_bytes() for p in sorted((d / "img").glob("*.jpg"))]
        boxes = (d / "groundtruth_rect.txt").read_text()
        clips.append((jpgs, boxes))
    return clips


def build_tree(root: Path, n: int, clips: list) -> Path:
    """N sequences in GOT-10k layout under `root` (list.txt, GOT-10k_Train_NNNNNN/00000001.jpg,
    groundtruth.txt, absence.label, cover.label); list.txt is written last, so it marks a whole tree."""
    if (root / "list.txt").is_file():
        return root
    t0 = last = time.perf_counter()
    names = []
    for k in range(n):
        name = f"GOT-10k_Train_{k + 1:06d}"
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        jpgs, boxes = clips[k % len(clips)]
        for i, b in enumerate(jpgs):
            (d / f"{i + 1:08d}.jpg").write_bytes(b)
        (d / "groundtruth.txt").write_text(boxes)
        (d / "absence.label").write_text("0\n" * len(jpgs))
        (d / "cover.label").write_text("8\n" * len(jpgs))  # 8: fully visible (0 would be absent)
        names.append(name)
        if time.perf_counter() - last > 10:
            last = time.perf_counter()
            _say(f"tree {root.name}: {k + 1}/{n} sequences ({last - t0:.0f} s)")
    (root / "list.txt").write_text("\n".join(names) + "\n")
    return root


def build_pack(tree: Path, pack: Path) -> float:
    """`mdnet-data pack TREE --out PACK` (skipped when the pack exists with a whole /index, which
    older packs lack: they are rewritten); seconds it took."""
    if pack.is_file():
        import h5py
        with h5py.File(pack, "r") as f:
            if "index/files" in f:
                return float("nan")
        pack.unlink()
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tools.data.cli", "pack", str(tree), "--out", str(pack)],
                   cwd=REPO, env=_env(), check=True, stdout=sys.stderr)
    return time.perf_counter() - t0


# ------------------------------------------------------------------------------ runs

def _env() -> dict:
    bin_dir = Path(sys.executable).parent
    return dict(os.environ, OMP_NUM_THREADS="1", MXNET_CPU_WORKER_NTHREADS="1",
                PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                PATH=str(bin_dir) + os.pathsep + os.environ.get("PATH", ""))


def _launch(ranks: int, args: list, log: Path, what: str) -> tuple:
    """Run mdnet-pretrain under horovodrun; progress to stderr every 15 s. (launch time, wall s)."""
    cmd = [str(Path(sys.executable).parent / "horovodrun"), "-np", str(ranks), "-H", f"localhost:{ranks}",
           sys.executable, "-m", "pretrain.cli", *args]
    t_launch = time.time()
    with open(log, "w") as fh:
        proc = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=fh, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                lines = log.read_text(errors="replace").splitlines()
                _say(f"{what}: {time.time() - t_launch:.0f} s; last: {lines[-1][:150] if lines else ''}")
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}); log: {log}\n"
                           + "\n".join(log.read_text(errors="replace").splitlines()[-30:]))
    return t_launch, time.time() - t_launch


def _checkpoint_read(out: Path) -> tuple:
    """(seconds, MB): what a resume or an export reads, in this process."""
    from pretrain import checkpoint as ckpt
    t0 = time.perf_counter()
    latest = ckpt.find_latest(out)  # verifies sizes and SHA-256 of every file
    ckpt.read_meta(latest)
    ckpt.read_shared(latest)
    ckpt.read_branches(latest)
    secs = time.perf_counter() - t0
    size = sum(p.stat().st_size for p in latest.iterdir()) / 1e6
    return secs, size


def run_one(pack: Path, out: Path, n_ranks: int, steps: int, overrides: list, what: str) -> dict:
    sets = [a for o in (*RUN_OVERRIDES, *overrides, "data.roots=[]", f"data.packs=[{pack}]",
                        f"train.stop_at_step={steps}", "val.at_stop=true") for a in ("--set", o)]
    t_launch, wall = _launch(n_ranks, ["--config", str(BASE_CONFIG), "--out", str(out), "--force", *sets],
                             out.parent / f"{out.name}.log", what)
    t = json.loads((out / "timing.json").read_text())
    read_s, size_mb = _checkpoint_read(out)
    # The resumed run: one more step, no validation (only the way back to training is timed).
    r_launch, r_wall = _launch(n_ranks, ["--out", str(out), "--resume", "--set", f"train.stop_at_step={steps + 1}",
                                         "--set", "val.at_stop=false"], out.parent / f"{out.name}-resume.log",
                               what + " resume")
    r = json.loads((out / "timing.json").read_text())
    return {
        "domains": t["domains"], "launch_to_step0_s": t["loop_start_unix"] - t_launch,
        "setup_s": t["setup_s"], "setup_domains_s": t["setup_domains_s"], "setup_check_s": t.get("setup_check_s"),
        "setup_outliers_s": t["setup_outliers_s"],
        "setup_model_s": t["setup_model_s"], "step_s": t["step_s_median"], "step_s_mean": t["step_s"],
        "peak_rss_mb": max(t["peak_rss_mb_per_rank"]), "ckpt_mb": size_mb,
        "ckpt_write_s": t["checkpoint_write_s"], "ckpt_read_s": read_s, "val_s": t.get("val_s", float("nan")),
        "resume_to_next_step_s": r["first_step_done_unix"] - r_launch, "resume_restore_s": r.get("setup_restore_s"),
        "wall_s": wall + r_wall,
    }


def paired(small: Path, big: Path, steps: int, overrides: list, work: Path) -> dict:
    """tools/bench/scale_steps.py in a child process (its own thread settings before MXNet loads)."""
    _say(f"paired steps: {small.name} vs {big.name}, {steps} steps each, alternated")
    out = work / "paired.json"
    subprocess.run([sys.executable, "-m", "tools.bench.scale_steps", str(out), str(steps), str(small), str(big),
                    *overrides], cwd=REPO, env=_env(), check=True)
    return json.loads(out.read_text())


# ------------------------------------------------------------------------------ simulated worlds

def simulate(n_domains: int, worlds: list, fc_width: int, work: Path) -> list:
    """Shard planning and checkpoint bookkeeping of `n_domains` over each simulated world size, in
    this process: the functions the ranks call, with one process standing in for all ranks."""
    import shutil

    from pretrain import checkpoint as ckpt
    from pretrain.sharding import shard_domains, steps_per_cycle
    rng = np.random.default_rng(0)
    sizes = rng.integers(30, 200, n_domains)  # GOT-10k-like training frame counts
    names = [f"GOT-10k_Train_{k + 1:06d}" for k in range(n_domains)]
    rows = []
    for w in worlds:
        t0 = time.perf_counter()
        shards = shard_domains(sizes, w)
        shard_s = time.perf_counter() - t0
        loads = [int(sizes[s].sum()) for s in shards]
        meta = ckpt.CheckpointMeta(step=1, world_size=w, steps_per_cycle=steps_per_cycle(shards), total_steps=100,
                                   domains=names, shards={str(r): [names[i] for i in s] for r, s in enumerate(shards)},
                                   datasets=[], spec={}, seed=0, config={})
        run = work / f"sim-w{w}"
        shutil.rmtree(run, ignore_errors=True)
        d = run / ckpt.CKPT_DIR / ckpt.ckpt_name(1, w, meta.steps_per_cycle)
        d.mkdir(parents=True)
        per_rank = []
        for r, s in enumerate(shards):
            branches = {names[i]: {k: np.full(shape, i, np.float32) for k, shape in
                                   (("weight", (2, fc_width)), ("bias", (2,)), ("momentum_weight", (2, fc_width)),
                                    ("momentum_bias", (2,)))} for i in s}
            t0 = time.perf_counter()
            ckpt.write_branches(d, r, branches, 1, {"counters": np.zeros(8), "epoch_time_s": 0.0})
            per_rank.append(time.perf_counter() - t0)
        ckpt.write_shared(d, {"x": np.zeros(1)}, {"x": np.zeros(1)}, 1)
        t0 = time.perf_counter()
        ckpt.write_meta(run, meta, d)
        meta_s = time.perf_counter() - t0
        # Resume on 4x the ranks (an elastic job that grew, a requeue on more nodes): new rank 0
        # reads its re-sharded branches from every old file.
        new = shard_domains(sizes, 4 * w)
        t0 = time.perf_counter()
        got, _ = ckpt.read_branches(d, [names[i] for i in new[0]])
        reshard_s = time.perf_counter() - t0
        assert len(got) == len(new[0])
        rows.append({"world": w, "domains": n_domains, "shard_s": shard_s, "steps_per_cycle": meta.steps_per_cycle,
                     "load_max_over_mean": max(loads) / (sum(loads) / w),
                     "meta_json_kb": len(meta.to_json()) / 1e3,
                     "branch_write_s_per_rank": statistics.median(per_rank),
                     "meta_write_s_rank0": meta_s, "resume_read_s_per_rank": reshard_s,
                     "ckpt_mb": sum(p.stat().st_size for p in d.iterdir()) / 1e6})
        shutil.rmtree(run, ignore_errors=True)
    return rows


# ------------------------------------------------------------------------------ the command

RUN_COLUMNS = (("domains", "domains", "{:.0f}"), ("launch_to_step0_s", "launch->step0 s", "{:.1f}"),
               ("setup_domains_s", "listing s", "{:.2f}"), ("setup_check_s", "check s", "{:.2f}"),
               ("setup_outliers_s", "check+outliers s", "{:.2f}"),
               ("setup_model_s", "model s", "{:.2f}"), ("step_s", "step s", "{:.3f}"),
               ("peak_rss_mb", "RSS MB/rank", "{:.0f}"), ("ckpt_mb", "ckpt MB", "{:.1f}"),
               ("ckpt_write_s", "ckpt write s", "{:.2f}"), ("ckpt_read_s", "ckpt read s", "{:.2f}"),
               ("val_s", "val s", "{:.2f}"), ("resume_to_next_step_s", "resume->step s", "{:.1f}"))
SIM_COLUMNS = (("world", "world", "{:.0f}"), ("domains", "domains", "{:.0f}"), ("shard_s", "shard s", "{:.3f}"),
               ("steps_per_cycle", "steps/cycle", "{:.0f}"), ("load_max_over_mean", "max/mean load", "{:.3f}"),
               ("meta_json_kb", "meta.json kB", "{:.0f}"), ("branch_write_s_per_rank", "branch write s/rank", "{:.3f}"),
               ("meta_write_s_rank0", "meta write s", "{:.2f}"), ("resume_read_s_per_rank", "resume on 4x: read s/rank", "{:.3f}"),
               ("ckpt_mb", "ckpt MB", "{:.1f}"))


def _table(rows: list, columns) -> str:
    head = "| " + " | ".join(c[1] for c in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(fmt.format(r[k]) if r.get(k) is not None else "-" for k, _, fmt in columns) + " |"
            for r in rows]
    return "\n".join([head, sep, *body])


def _median_rows(rows: list) -> dict:
    return {k: statistics.median(r[k] for r in rows) if isinstance(rows[0][k], (int, float)) else rows[0][k]
            for k in rows[0]}


def bench_scale(args) -> int:
    counts = [int(x) for x in args.domains.split(",")]
    worlds = [int(x) for x in args.worlds.split(",")] if args.worlds else []
    w, h = (int(v) for v in args.size.lower().split("x"))
    if min(counts) < args.ranks or args.steps < 1 or args.repeats < 1:
        raise SystemExit("mdnet-bench scale: every domain count must be >= --ranks; --steps, --repeats >= 1")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    from pretrain.config import load
    cfg = load(BASE_CONFIG, [*RUN_OVERRIDES, *args.overrides])
    result = {"command": " ".join(["mdnet-bench", "scale", *sys.argv[2:]]) if sys.argv[1:2] == ["scale"] else None,
              "config": str(BASE_CONFIG.relative_to(REPO)), "overrides": [*RUN_OVERRIDES, *args.overrides],
              "ranks": args.ranks, "steps": args.steps, "frames": args.frames, "size": [w, h], "runs": [], "simulated": []}
    if not args.no_runs:
        clips = _clips(work, args.frames, (w, h))
        packs = {}
        for n in counts:
            tree = build_tree(work / f"got-{n}-f{args.frames}-{w}x{h}", n, clips)
            pack = work / f"got-{n}-f{args.frames}-{w}x{h}.h5"
            _say(f"{n} domains: pack {pack}")
            secs = build_pack(tree, pack)
            packs[n] = pack
            if secs == secs:
                _say(f"{n} domains: packed in {secs:.1f} s")
        runs = {n: [] for n in counts}
        for rep in range(args.repeats):
            for n in counts:
                _say(f"{n} domains: run {rep + 1}/{args.repeats}")
                runs[n].append(run_one(packs[n], work / f"run-{n}", args.ranks, args.steps, args.overrides,
                                       f"{n} domains"))
        result["runs"] = [_median_rows(runs[n]) for n in counts]
        if args.paired_steps > 0 and len(counts) > 1:
            result["paired"] = paired(packs[min(counts)], packs[max(counts)], args.paired_steps, args.overrides, work)
    if worlds:
        _say(f"simulated worlds {worlds} with {max(counts)} domains")
        result["simulated"] = simulate(max(counts), worlds, cfg.model.fc_width, work)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"mdnet-bench scale: {result['config']} with {' '.join(result['overrides'])}; {args.ranks} ranks, "
          f"{args.steps} steps then a checkpoint and validation; sequences of {args.frames} {w}x{h} frames; "
          f"median of {args.repeats} run(s)")
    if result["runs"]:
        print(_table(result["runs"], RUN_COLUMNS))
    if result.get("paired"):
        p = result["paired"]
        print(f"\npaired steps in one process, {p['domains'][1]} vs {p['domains'][0]} domains, {p['steps_timed']} "
              f"alternated pairs (median ratio, quartiles; medians):\n"
              f"  CPU time per step: {p['cpu_ratio_median']:.3f} ({p['cpu_ratio_quartiles'][0]:.3f}-"
              f"{p['cpu_ratio_quartiles'][1]:.3f}; {p['cpu_s_median'][1]:.3f} s vs {p['cpu_s_median'][0]:.3f} s)\n"
              f"  wall time per step: {p['ratio_median']:.3f} ({p['ratio_quartiles'][0]:.3f}-{p['ratio_quartiles'][1]:.3f}; "
              f"{p['step_s_median'][1]:.3f} s vs {p['step_s_median'][0]:.3f} s)")
    if result["simulated"]:
        print(f"\nsimulated world sizes, {max(counts)} domains, fc width {cfg.model.fc_width} (one process):")
        print(_table(result["simulated"], SIM_COLUMNS))
    return 0
