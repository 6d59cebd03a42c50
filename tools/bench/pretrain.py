"""mdnet-bench pretrain: pretraining throughput on 1 and 2 (or more) ranks, and where a step's time goes.

    mdnet-bench pretrain --json                          # synthetic data, bench config, 1 and 2 ranks
    mdnet-bench pretrain --ranks 1,2,4 --threads 1 --steps 40 --config cluster/configs/demo.yaml
    mdnet-bench pretrain --mode exact,fast --set mining.pool=4096 --ranks 1   # fast mode vs exact mode

Each world size is a real `horovodrun -np N` job (Gloo) of `mdnet-pretrain` with the same threads
per rank (OMP_NUM_THREADS, and each rank pinned to its own cores so a rank's data thread competes
with its own compute, as it would on a full node); validation is off and one checkpoint is written
at the end. Every rank times each step; the first steps (graph and allocation warm-up) are left
out; means are over all rank-steps (pretrain/hooks.py `Timing`):

- samples_per_s_per_rank_N: training samples (sampling.pos + sampling.neg per step) per second per
  rank with N ranks;
- scaling_efficiency: samples_per_s_per_rank at the largest N / at 1 rank (1.0 = perfect scaling);
  with --repeats R (default 3) the world sizes run interleaved R times (1, 2, 1, 2, ...) so a slow
  spell of a shared machine hits both sizes alike; every figure is the median over the repeats, and
  scaling_efficiency_repeats lists the efficiency of each repeat (largest N / smallest N);
- data_fraction: time the main loop WAITED for a prefetched batch / step time (the data cost that
  the background workers did not hide);
- mining_fraction: scoring the negative pool (inference forward) / step time;
- net_fraction: forward + backward + allreduce + clip + update / step time; allreduce_fraction is the
  allreduce + update part of it (includes waiting for the slowest rank).

`--mode exact|fast` sets model.mode (default: the config's). With `--mode exact,fast` both run,
interleaved within every repeat (exact 1, 2, fast 1, 2, exact 1, ...), and the output adds
`fast_over_exact_N`: fast mode's samples/s per rank over exact mode's with N ranks (medians);
the JSON then holds one object per mode under "modes". In fast mode mining_fraction counts the
whole mining pass: conv1-3 on every frame's full region plus pooling and scoring the pool.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def add_pretrain_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "pretrain", help="time multi-domain pretraining on 1 and 2 ranks (horovodrun, Gloo)",
        description="Pretraining throughput per rank for several world sizes, scaling efficiency and the "
                    "split of a step into data wait / hard-negative mining / network (default: synthetic "
                    "sequences and cluster/configs/bench.yaml, so it runs on a fresh machine).")
    p.add_argument("--config", default=str(REPO / "cluster" / "configs" / "bench.yaml"),
                   help="pretraining config (default: cluster/configs/bench.yaml: MDNet's 8 frames, "
                        "32 pos + 96 of 256 mined neg per step, narrow widths)")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="dataset root (default: synthesize 8 sequences x 30 frames, 192x144, to a temporary folder)")
    p.add_argument("--ranks", default="1,2", help="world sizes to run, comma-separated (default 1,2)")
    p.add_argument("--threads", type=int, default=1, help="compute threads per rank (default 1)")
    p.add_argument("--steps", type=int, default=30, help="at least this many steps per rank (default 30)")
    p.add_argument("--repeats", type=int, default=3,
                   help="run the world sizes interleaved this many times and report medians (default 3)")
    p.add_argument("--mode", default=None, metavar="MODE[,MODE]",
                   help="model.mode to time: exact, fast, or exact,fast to compare both (interleaved) and print "
                        "fast/exact throughput ratios (default: the config's mode)")
    p.add_argument("--no-pin", action="store_true", help="do not pin ranks to cores")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="extra pretraining config override (repeatable)")
    p.add_argument("--keep", default=None, metavar="DIR", help="keep the run folders here (default: temporary)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a text table")
    p.set_defaults(func=bench_pretrain)
    return p


def _run_one(np_: int, cfg_path: str, data: str, out: Path, steps: int, threads: int, pin: bool,
             overrides: list[str], domains: int) -> dict:
    # Enough whole cycles for `steps` steps per rank: a cycle is ceil(domains / ranks) steps.
    per_cycle = max(1, math.ceil(domains / np_))
    cycles = max(1, math.ceil(steps / per_cycle))
    bin_dir = Path(sys.executable).parent
    cmd = [str(bin_dir / "horovodrun"), "-np", str(np_), "-H", f"localhost:{np_}",
           sys.executable, "-m", "pretrain.cli", "--config", cfg_path, "--out", str(out), "--force",
           "--set", f"data.roots=[{data}]", "--set", f"train.cycles={cycles}",
           "--set", "val.enabled=false", "--set", "checkpoint.every_steps=0",
           "--set", "train.log_every=0", "--set", f"runtime.threads={threads}",
           "--set", f"runtime.pin_cores={'true' if pin else 'false'}"]
    for o in overrides:
        cmd += ["--set", o]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MXNET_CPU_WORKER_NTHREADS="1",
               PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               PATH=str(bin_dir) + os.pathsep + os.environ.get("PATH", ""))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    timing = json.loads((out / "timing.json").read_text())
    timing["wall_s"] = wall
    timing["command"] = " ".join(cmd)
    return timing


def _median_run(runs: list[dict]) -> dict:
    """Median of every numeric timing over repeated runs of one world size (strings from the first)."""
    out = dict(runs[0])
    for k, v in runs[0].items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            m = statistics.median(r[k] for r in runs)
            out[k] = int(m) if isinstance(v, int) and m == int(m) else float(m)
    return out


def _summary(results: dict, runs: dict, ranks: list[int]) -> dict:
    """Flat figures of one mode: per world size, scaling and the largest world size's fractions."""
    base, top = results[min(ranks)], results[max(ranks)]
    out = {"samples_per_step": base["samples_per_step"], "mining_pool": base["mining_pool"]}
    for n, t in results.items():
        out[f"samples_per_s_per_rank_{n}"] = t["samples_per_s_per_rank"]
        out[f"samples_per_s_total_{n}"] = t["samples_per_s_per_rank"] * n
        out[f"step_s_{n}"] = t["step_s"]
        out[f"steps_timed_per_rank_{n}"] = t["steps_timed_per_rank"]
        for k in ("data_fraction", "mining_fraction", "net_fraction"):
            out[f"{k}_{n}"] = t[k]
        out[f"allreduce_fraction_{n}"] = t["allreduce_update_s"] / t["step_s"]
        out[f"prep_worker_s_per_step_{n}"] = t["prep_worker_s"]
        out[f"command_{n}"] = t["command"]
    out["scaling_efficiency"] = top["samples_per_s_per_rank"] / base["samples_per_s_per_rank"]
    out["scaling_efficiency_repeats"] = [
        t["samples_per_s_per_rank"] / b["samples_per_s_per_rank"]
        for b, t in zip(runs[min(ranks)], runs[max(ranks)])]
    # Headline fractions: the largest world size (the configuration being scaled).
    for k in ("data_fraction", "mining_fraction", "net_fraction"):
        out[k] = top[k]
    out["allreduce_fraction"] = top["allreduce_update_s"] / top["step_s"]
    return out


def _print_table(mode: str, results: dict, summary: dict, ranks: list[int], repeats: int) -> None:
    print(f"{'mode':>5} {'ranks':>5} {'samples/s/rank':>15} {'step s':>8} {'data':>7} {'mining':>7} {'net':>7} "
          f"{'allreduce':>9}")
    for n, t in results.items():
        print(f"{mode:>5} {n:>5} {t['samples_per_s_per_rank']:>15.1f} {t['step_s']:>8.3f} {t['data_fraction']:>7.1%} "
              f"{t['mining_fraction']:>7.1%} {t['net_fraction']:>7.1%} {t['allreduce_update_s'] / t['step_s']:>9.1%}")
    if len(ranks) > 1:
        print(f"{mode}: scaling efficiency {min(ranks)} -> {max(ranks)} ranks: {summary['scaling_efficiency']:.1%} "
              f"(median of {repeats}; per repeat: "
              f"{', '.join(f'{e:.1%}' for e in summary['scaling_efficiency_repeats'])})")


def bench_pretrain(args) -> int:
    from pretrain.config import MODES, load
    ranks = [int(r) for r in args.ranks.split(",")]
    if min(ranks) < 1:
        raise SystemExit("mdnet-bench pretrain: --ranks must be positive integers")
    if args.repeats < 1:
        raise SystemExit("mdnet-bench pretrain: --repeats must be at least 1")
    modes = [m.strip() for m in args.mode.split(",")] if args.mode else [load(args.config, args.overrides).model.mode]
    bad = [m for m in modes if m not in MODES]
    if bad or len(set(modes)) != len(modes):
        raise SystemExit(f"mdnet-bench pretrain: --mode takes distinct values of {', '.join(MODES)}, got {args.mode}")
    ncpu = len(os.sched_getaffinity(0))
    if max(ranks) * args.threads > ncpu:
        print(f"mdnet-bench pretrain: warning: {max(ranks)} ranks x {args.threads} threads > {ncpu} cores; "
              f"the largest world size is oversubscribed", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="mdnet-bench-pretrain-") as tmp:
        tmp = Path(tmp)
        data = args.data
        if data is None:
            from tools.data.synth import synthesize
            data = str(tmp / "synth")
            synthesize(data, sequences=8, frames=30, size=(192, 144), seed=0)
        from online.readers import find_sequences
        domains = len(find_sequences(data))
        keep = Path(args.keep) if args.keep else tmp
        runs = {m: {n: [] for n in ranks} for m in modes}
        for rep in range(args.repeats):
            for m in modes:
                for n in ranks:
                    runs[m][n].append(_run_one(n, args.config, data, keep / f"run-{m}-np{n}-r{rep}", args.steps,
                                               args.threads, not args.no_pin,
                                               [*args.overrides, f"model.mode={m}"], domains))
    results = {m: {n: _median_run(rs) for n, rs in runs[m].items()} for m in modes}
    summaries = {m: _summary(results[m], runs[m], ranks) for m in modes}
    out = {"config": args.config, "threads_per_rank": args.threads, "pinned": not args.no_pin,
           "repeats": args.repeats, "domains": domains, "overrides": list(args.overrides)}
    if len(modes) == 1:
        out.update(mode=modes[0], **summaries[modes[0]])
    else:
        out["modes"] = summaries
    if "exact" in modes and "fast" in modes:
        for n in ranks:
            out[f"fast_over_exact_{n}"] = (results["fast"][n]["samples_per_s_per_rank"]
                                          / results["exact"][n]["samples_per_s_per_rank"])
    if args.json:
        print(json.dumps(out, indent=1, sort_keys=True))
        return 0
    first = summaries[modes[0]]
    print(f"pretrain benchmark: {args.config}{' ' + ' '.join(args.overrides) if args.overrides else ''}, "
          f"{domains} domains, {args.threads} thread(s) per rank, {first['samples_per_step']} samples/step, "
          f"mining pool {first['mining_pool']}, median of {args.repeats} repeat(s)")
    for i, m in enumerate(modes):
        if i:
            print()
        _print_table(m, results[m], summaries[m], ranks, args.repeats)
    for n in ranks:
        if f"fast_over_exact_{n}" in out:
            print(f"fast / exact samples/s per rank, {n} rank(s): {out[f'fast_over_exact_{n}']:.2f}x")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="mdnet-bench")
    sub = parser.add_subparsers(dest="command", required=True)
    add_pretrain_parser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
