"""`mdnet-eval run`: track every sequence under ROOT... in parallel worker processes, resumably,
then score the results (tools/eval/scoring.py) and plot them (tools/eval/plots.py).

    mdnet-eval run /data/OTB --weights W.h5 --out-dir runs/otb                 # one worker per core
    mdnet-eval run /data/VOT --weights W.h5 --out-dir runs/vot --protocol vot  # VOT supervised
    mdnet-eval run /data/OTB --weights W.h5 --out-dir runs/otb --gpus 0,1      # one worker per GPU
    mdnet-eval run /data/OTB --tracker csrt --out-dir runs/otb                  # OpenCV's CSRT beside it
    mdnet-eval run /data/OTB --tracker nano --nano-dir DIR --out-dir runs/otb   # OpenCV's NanoTrack v2

Layout of DIR (--out-dir):
    DIR/<name>/<sequence>.txt        the result (mdnet-track's format; VOT's codes with --protocol vot)
    DIR/<name>/<sequence>_time.txt   seconds inside initialize / track per frame (pytracking's name)
    DIR/<name>/run.yaml              what produced them (weights, widths, config, seed, frames, protocol)
    DIR/eval.json, DIR/plots/        the evaluation of every tracker folder in DIR with this protocol

<name> is --name, default the weight file's stem (random-SEED for random:SEED), or the OpenCV
tracker's name (csrt, kcf, mil, nano) with --tracker (tools/eval/baselines.py: how a lost target
is handled, where NanoTrack's ONNX files are found).

Workers (pytracking's `evaluation/running.py` idea, without its two flaws): `multiprocessing`
with the `spawn` start method (MXNet's engine threads do not survive a fork); each worker sets
OMP_NUM_THREADS = cores // jobs before it imports MXNet, builds the trunk once, then takes
sequences from one shared queue (longest first, so a long one does not start last) and tracks
each with online.track_loop. A result is written atomically (online/atomic.py), timing first, and
only when its sequence completed: a killed run leaves no partial result, and a rerun skips every
sequence whose result has the expected number of lines (a shorter one, from anywhere, is redone).
An error in one sequence is reported with its name and the run goes on; the exit status is then 1
(the finished sequences are still scored). A run.yaml from another configuration stops the run
(exit 2): resuming must not mix results of two trackers under one name.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import queue
import re
import sys
import time
import traceback
from pathlib import Path

from online.cli import config_overrides, mode_arg, widths_arg  # noqa: E402
from online.threads import usable_cores  # noqa: E402  (imports no mxnet: workers set threads first)

_REPO = str(Path(__file__).resolve().parents[2])
RUN_FILE = "run.yaml"
REPORT_FILE = "eval.json"
PLOTS_DIR = "plots"
PROTOCOLS = ("ope", "vot")  # online.track_loop.PROTOCOLS
TRACKERS = ("mdnet", "csrt", "kcf", "mil", "nano")  # tools/eval/baselines.OPENCV_TRACKERS beside MDNet

RUN_HELP = """\
Track every sequence under ROOT... (benchmark roots or sequence folders, any layout the readers
know) with one weight file in N worker processes, write DIR/<name>/<sequence>.txt, then score them
like `mdnet-eval score` (JSON in DIR/eval.json; OPE: success / precision plots in DIR/plots).

Resumable: a sequence whose result already has one line per frame is skipped, so a killed run
continues where it stopped; results are written atomically and only for completed sequences. A
failing sequence is reported by name; the others still run; the exit status is then 1. Exit status
2 on bad arguments, config or weights, or when DIR/<name> holds results of another configuration.

--tracker csrt|kcf|mil runs OpenCV's classical tracker instead of MDNet (no --weights): same result
files, timing and scoring. When OpenCV reports the target lost, the last box it found is kept and
it goes on tracking. --tracker nano runs OpenCV's NanoTrack v2 (cv2.TrackerNano, one thread) the
same way; its two ONNX files (nanotrack_backbone_sim.onnx, nanotrack_head_sim.onnx, from
github.com/HonglinChu/SiamTrackers NanoTrack/models/nanotrackv2, Apache-2.0) are read from
--nano-dir DIR, else $MDNET_NANOTRACK_DIR, else ../shared/baselines/nanotrack beside the repository.

Progress: one bar with frames done / total and ETA on stderr when it is a terminal; one line per
finished sequence on stdout."""


def _gpus_arg(text: str) -> tuple:
    try:
        vals = tuple(int(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if not vals or min(vals) < 0 or len(set(vals)) != len(vals):
        raise argparse.ArgumentTypeError(f"--gpus {text!r}: expected distinct GPU numbers, e.g. 0,1,2,3")
    return vals


def add_run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("roots", nargs="+", metavar="ROOT", help="benchmark root or sequence folder (repeatable)")
    p.add_argument("--tracker", choices=TRACKERS, default="mdnet",
                   help="mdnet (default), or one of OpenCV's trackers to compare with: csrt, kcf, mil, "
                        "nano (NanoTrack v2; no --weights; a lost target keeps the last box found)")
    p.add_argument("--nano-dir", default=None, metavar="DIR",
                   help="--tracker nano: the folder of nanotrack_backbone_sim.onnx and nanotrack_head_sim.onnx "
                        "(default $MDNET_NANOTRACK_DIR, else ../shared/baselines/nanotrack beside the repository)")
    p.add_argument("--weights", default=None,
                   help="weight file (.h5 from mdnet-export) or random:SEED; required with --tracker mdnet")
    p.add_argument("--out-dir", required=True, metavar="DIR", help="results go to DIR/<name>/<sequence>.txt")
    p.add_argument("--name", default=None,
                   help="the tracker's name: its result folder and its label in tables and plots "
                        "(default: the weight file's stem, random-SEED for random:SEED)")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="worker processes (default: one per GPU with --gpus, else one per usable core, "
                        f"here {usable_cores()}); each uses cores // N OpenMP threads")
    p.add_argument("--gpus", type=_gpus_arg, default=None, metavar="I,J,...",
                   help="run on these GPUs, worker k on GPU list[k mod len(list)] (default: CPU)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="ope",
                   help="ope (default): OTB one-pass; vot: VOT supervised, re-initialised 5 frames after "
                        "every failure (mdnet-track --protocol vot)")
    p.add_argument("--widths", type=widths_arg, default=None, metavar="C1,C2,C3,FC",
                   help="channel widths of a random:SEED trunk (default VGG-M 96,256,512,512)")
    p.add_argument("--config", default=None, help="tracker config YAML")
    mode_arg(p)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one tracker config key (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="tracker seed, as mdnet-track --seed (default 0)")
    p.add_argument("--frames", type=int, default=None, metavar="N",
                   help="track only the first N frames of each sequence (scored on those)")
    p.add_argument("--attributes", metavar="PATH", help="sequence attributes for per-attribute plots "
                                                        "(as mdnet-eval score --attributes)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


# ----------------------------------------------------------------------------------------------
# The worker process

def _mdnet_tracker(wid: int, setup: dict):
    """(a function making a fresh MultiTracker, the MXNet context): the trunk is built once."""
    import mxnet as mx

    from online.config import load_config
    from online.network import NetSpec
    from online.tracker import MultiTracker
    from online.tracker_config import TrackerConfig
    from online.weights import build_trunk

    cfg = load_config(TrackerConfig, setup["config"], setup["overrides"])
    gpus = setup["gpus"]
    ctx = mx.gpu(gpus[wid % len(gpus)]) if gpus else mx.cpu()
    spec = None
    if setup["widths"]:
        c1, c2, c3, fc = setup["widths"]
        spec = NetSpec(conv_channels=(c1, c2, c3), fc_width=fc)
    trunk, _ = build_trunk(setup["weights"], ctx=ctx, spec=spec)
    mx.random.seed(setup["seed"])
    return (lambda: MultiTracker(trunk, cfg, ctx, seed=setup["seed"])), ctx


def _worker(wid: int, setup: dict, tasks, messages) -> None:
    """Runs in a spawned process: build the tracker's fixed parts once (MDNet: the trunk), then track sequences from `tasks` until a
    None arrives. Every outcome goes to `messages` as (kind, worker, sequence, payload)."""
    # Before MXNet is imported (it reads them once): threads per worker, no cuDNN autotuning.
    os.environ["OMP_NUM_THREADS"] = str(setup["threads"])
    os.environ.setdefault("MXNET_CUDNN_AUTOTUNE_DEFAULT", "0")
    try:
        from online.atomic import atomic_write_text
        from online.track_loop import result_text, time_text, track_sequence

        if setup["tracker"] != "mdnet":
            from tools.eval.baselines import OpenCVTracker

            make_tracker = lambda: OpenCVTracker(setup["tracker"], setup["nano_dir"])  # noqa: E731
            make_tracker()  # fails here (reported as fatal), not once per sequence
            ctx = "cpu (OpenCV)"
        else:
            make_tracker, ctx = _mdnet_tracker(wid, setup)
    except BaseException as e:  # noqa: BLE001 - reported to the parent, which exits 2
        messages.put(("fatal", wid, None, f"{type(e).__name__}: {e}"))
        return
    messages.put(("ready", wid, None, str(ctx)))
    while True:
        try:
            task = tasks.get(timeout=5.0)
        except queue.Empty:
            if os.getppid() != setup["parent"]:
                return  # the parent was killed: do not wait for work forever
            continue
        if task is None:
            return
        seq, n, result, timing = task
        messages.put(("start", wid, seq.name, n))
        try:
            def on_frame(i, image, run, name=seq.name):
                messages.put(("frame", wid, name, i + 1))

            run = track_sequence(make_tracker(), seq, None, n, on_frame, protocol=setup["protocol"])
            # Timing first: the result file is what marks the sequence done.
            atomic_write_text(timing, time_text(run))
            atomic_write_text(result, result_text(run))
            messages.put(("done", wid, seq.name, run.summary(seq)))
        except Exception as e:  # noqa: BLE001 - not swallowed: reported by name, the run exits 1
            # Where in this project it failed (the innermost frame is often inside numpy).
            ours = [f for f in traceback.extract_tb(e.__traceback__) if f.filename.startswith(_REPO)]
            where = f" ({Path(ours[-1].filename).relative_to(_REPO)}:{ours[-1].lineno})" if ours else ""
            messages.put(("error", wid, seq.name, f"{type(e).__name__}: {e}{where}"))


# ----------------------------------------------------------------------------------------------
# The parent

def default_name(weights: str | None, tracker: str = "mdnet") -> str:
    if tracker != "mdnet":
        return tracker
    m = re.fullmatch(r"random:(\d+)", weights)
    return f"random-{m[1]}" if m else Path(weights).stem


def result_complete(path: Path, frames: int) -> bool:
    """A result counts as done when it has exactly one non-empty line per frame."""
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError):
        return False
    return len(lines) == frames


class Progress:
    """One bar on stderr (a terminal only): frames done / total, sequences, fps, ETA."""

    def __init__(self, total: int, sequences: int, enabled: bool):
        self.total, self.sequences = total, sequences
        self.enabled = enabled and sys.stderr.isatty()
        self.t0 = time.monotonic()
        self.last = 0.0
        self.shown = False

    def draw(self, done: int, finished: int, force: bool = False):
        now = time.monotonic()
        if not self.enabled or (not force and now - self.last < 0.2):
            return
        self.last = now
        elapsed = now - self.t0
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = _duration((self.total - done) / rate) if rate > 0 else "?"
        fill = int(30 * done / max(self.total, 1))
        sys.stderr.write(f"\r[{'#' * fill}{'.' * (30 - fill)}] {done}/{self.total} frames, "
                         f"{finished}/{self.sequences} sequences, {rate:.1f} fps, ETA {eta}\x1b[K")
        sys.stderr.flush()
        self.shown = True

    def clear(self):
        if self.enabled and self.shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()


def _duration(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")


def _line(summary: dict, protocol: str) -> str:
    if protocol == "vot" and "accuracy" in summary:
        acc = summary["accuracy"]
        return (f"accuracy {'-' if acc != acc else format(acc, '.3f')}, failures {summary['failures']}, "
                f"{summary['fps']:.2f} fps")
    if "auc" in summary:
        return f"AUC {summary['auc']:.3f}, P@20 {summary['precision20']:.3f}, {summary['fps']:.2f} fps"
    return f"{summary['fps']:.2f} fps"


def run_record(args, cfg_dict: dict | None) -> dict:
    if args.tracker != "mdnet":
        from tools.eval.baselines import nanotrack_files, opencv_version

        # No weights, widths or MDNet config; the OpenCV version (and NanoTrack's files, by content)
        # is what decides the results.
        record = {"tracker": args.tracker, "opencv": opencv_version(), "weights": None, "widths": None,
                  "config": None, "seed": args.seed, "frames": args.frames, "protocol": args.protocol}
        if args.tracker == "nano":
            record["nanotrack"] = nanotrack_files(args.nano_dir)
        return record
    weights = args.weights if args.weights.startswith("random:") else str(Path(args.weights).resolve())
    return {"weights": weights, "widths": list(args.widths) if args.widths else None, "config": cfg_dict,
            "seed": args.seed, "frames": args.frames, "protocol": args.protocol}


def run_main(args: argparse.Namespace) -> int:
    from online.config import ConfigError, config_to_dict, load_config
    from online.tracker_config import TrackerConfig

    def fail(message: str, code: int = 2) -> int:
        print(f"mdnet-eval run: {message}", file=sys.stderr)
        return code

    # --- arguments, config, weights: checked here, before any worker starts ---
    if args.frames is not None and args.frames < 1:
        return fail("--frames must be >= 1")
    if args.tracker != "mdnet":
        return _check_baseline(args, fail) or _run(args, None, fail)
    if args.weights is None:
        return fail("--weights is required with --tracker mdnet (a weight file or random:SEED)")
    is_random = re.fullmatch(r"random:\d+", args.weights) is not None
    if args.weights.startswith("random:") and not is_random:
        return fail(f"bad weights {args.weights!r}: expected random:SEED with a non-negative integer SEED")
    if not is_random and not Path(args.weights).is_file():
        return fail(f"{args.weights}: no such weight file")
    if args.widths is not None and not is_random:
        return fail("--widths applies to random:SEED trunks only; a weight file records its own widths")
    jobs = args.jobs if args.jobs is not None else (len(args.gpus) if args.gpus else usable_cores())
    if jobs < 1:
        return fail("--jobs must be >= 1")
    try:
        cfg = load_config(TrackerConfig, args.config, config_overrides(args))
        # A precision the device cannot run: one error now, not a failure per sequence in the workers.
        import mxnet as mx

        from online import trunk_precision
        trunk_precision.check_supported(cfg.trunk_dtype, mx.gpu(args.gpus[0]) if args.gpus else mx.cpu())
    except ConfigError as e:
        return fail(f"config error: {e}")
    return _run(args, config_to_dict(cfg), fail)


def _check_baseline(args, fail) -> int:
    """--tracker csrt|kcf|mil|nano: MDNet's options mean nothing there; the OpenCV build must have it
    (and nano its two ONNX files)."""
    given = [opt for opt, val in (("--weights", args.weights), ("--widths", args.widths), ("--config", args.config),
                                  ("--set", args.overrides), ("--mode", args.mode), ("--gpus", args.gpus))
             if val]
    if given:
        return fail(f"{', '.join(given)}: MDNet options; --tracker {args.tracker} is OpenCV's and takes none")
    if args.jobs is not None and args.jobs < 1:
        return fail("--jobs must be >= 1")
    if args.nano_dir is not None and args.tracker != "nano":
        return fail(f"--nano-dir: a --tracker nano option; --tracker {args.tracker} takes none")
    from tools.eval.baselines import BaselineError, opencv_factory

    try:
        opencv_factory(args.tracker, args.nano_dir)()  # builds one: a file OpenCV cannot load fails here
    except BaselineError as e:
        return fail(str(e))
    return 0


def _run(args, cfg_dict: dict | None, fail) -> int:
    """Sequences, the workers, the evaluation: the same for MDNet and the OpenCV trackers."""
    import multiprocessing as mp

    import yaml

    from online.atomic import atomic_write_text
    from online.readers import discover
    from online.sequence import DataError

    jobs = args.jobs if args.jobs is not None else (len(args.gpus) if args.gpus else usable_cores())
    name = args.name or default_name(args.weights, args.tracker)
    if not name or "/" in name or name in (".", ".."):
        return fail(f"--name {name!r}: expected a plain folder name")
    out_dir = Path(args.out_dir)
    tracker_dir = out_dir / name
    record = run_record(args, cfg_dict)
    run_file = tracker_dir / RUN_FILE
    if run_file.is_file():
        old = yaml.safe_load(run_file.read_text()) or {}
        differ = [k for k in record if old.get(k) != record[k]]
        if differ:
            return fail(f"{tracker_dir} holds results of another configuration (differs in: {', '.join(differ)}); "
                        f"give another --name or --out-dir, or remove the folder")

    # --- sequences ---
    try:
        sequences = [seq for root in args.roots for seq in discover(root)]
    except DataError as e:
        return fail(str(e).strip().splitlines()[0])
    seen: dict = {}
    for seq in sequences:
        if seq.name in seen:
            return fail(f"two sequences are named {seq.name!r} ({seen[seq.name]} and {seq.path}): their results "
                        f"would share one file; give one benchmark root")
        seen[seq.name] = seq.path
    notes = [f"{s.name}: no ground truth: not tracked" for s in sequences if not s.has_groundtruth]
    sequences = [s for s in sequences if s.has_groundtruth]
    if not sequences:
        return fail("no sequence with ground truth under " + ", ".join(args.roots))
    for note in notes:
        print(f"mdnet-eval run: warning: {note}", file=sys.stderr)

    def frames_of(seq):
        return len(seq) if args.frames is None else min(len(seq), args.frames)

    todo, skipped = [], []
    for seq in sequences:
        n = frames_of(seq)
        result = tracker_dir / f"{seq.name}.txt"
        (skipped if result_complete(result, n) else todo).append(
            (seq, n, result, tracker_dir / f"{seq.name}_time.txt"))
    todo.sort(key=lambda t: -t[1])  # longest first: a long sequence started last would finish last
    tracker_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_file, yaml.safe_dump(record, sort_keys=False, default_flow_style=None))
    jobs = min(jobs, max(len(todo), 1))
    threads = max(1, usable_cores() // jobs)
    print(f"mdnet-eval run: {len(sequences)} sequence(s), {len(skipped)} already done, {len(todo)} to track "
          f"({sum(t[1] for t in todo)} frames) with {jobs} worker(s) x {threads} thread(s)"
          f"{' on GPU(s) ' + ','.join(map(str, args.gpus)) if args.gpus else ''}; results in {tracker_dir}",
          flush=True)

    # --- the workers ---
    errors: dict[str, str] = {}
    summaries: dict[str, dict] = {}
    if todo:
        try:
            errors, summaries, fatal = _run_workers(args, todo, jobs, threads, mp)
        except KeyboardInterrupt:
            return fail("interrupted; the finished sequences are kept: run the same command again to "
                        "continue", 130)
        if fatal:
            return fail(f"a worker could not start: {fatal}")
    for seq_name, message in errors.items():
        print(f"mdnet-eval run: {seq_name}: FAILED: {message}", file=sys.stderr)

    # --- evaluation and plots ---
    rc = _evaluate(args, out_dir, tracker_dir, sequences, frames_of, summaries)
    if errors:
        print(f"mdnet-eval run: {len(errors)} sequence(s) failed: {', '.join(errors)}", file=sys.stderr)
        return 1
    return rc


def _nano_dir(args):
    """NanoTrack's folder, resolved here (workers see the same one whatever their cwd); None otherwise."""
    if getattr(args, "tracker", None) != "nano":
        return None
    from tools.eval.baselines import nanotrack_dir

    return str(nanotrack_dir(args.nano_dir))


def _run_workers(args, todo, jobs, threads, mp):
    ctx = mp.get_context("spawn")  # MXNet is not fork-safe
    tasks, messages = ctx.Queue(), ctx.Queue()
    for t in todo:
        tasks.put(t)
    for _ in range(jobs):
        tasks.put(None)
    setup = {"parent": os.getpid(), "tracker": args.tracker, "nano_dir": _nano_dir(args), "threads": threads, "gpus": list(args.gpus or ()), "weights": args.weights,
             "widths": list(args.widths) if args.widths else None, "config": args.config,
             "overrides": config_overrides(args), "seed": args.seed, "protocol": args.protocol}
    procs = [ctx.Process(target=_worker, args=(w, setup, tasks, messages), name=f"mdnet-eval-run-{w}", daemon=True)
             for w in range(jobs)]
    for p in procs:
        p.start()
    total = sum(t[1] for t in todo)
    progress = Progress(total, len(todo), not args.quiet)
    frames: dict[str, int] = {}
    current: dict[int, str] = {}
    errors: dict[str, str] = {}
    summaries: dict[str, dict] = {}
    fatal = None
    finished = 0
    dead: list[int] = []
    try:
        while True:
            try:
                kind, wid, seq_name, payload = messages.get(timeout=0.5)
            except queue.Empty:
                # A worker that died (killed, out of memory, a crash in native code) sends nothing
                # more. It counts as dead once a whole wait found the queue empty AFTER it was seen
                # dead: whatever it sent before exiting was in the pipe by then and has been read.
                for w in dead:
                    if w in current:
                        errors[current.pop(w)] = f"worker {w} exited with code {procs[w].exitcode}"
                        finished += 1
                if len(dead) == len(procs):
                    break
                dead = [w for w, p in enumerate(procs) if not p.is_alive()]
                continue
            if kind == "fatal":
                # The trunk or config cannot be built: every worker would fail the same way.
                fatal = fatal or payload
                break
            elif kind == "start":
                current[wid] = seq_name
                frames[seq_name] = 0
            elif kind == "frame":
                frames[seq_name] = payload
            elif kind in ("done", "error"):
                current.pop(wid, None)
                finished += 1
                progress.clear()
                if kind == "done":
                    summaries[seq_name] = payload
                    print(f"[{finished}/{len(todo)}] {seq_name}: {payload['frames']} frames, "
                          f"{_line(payload, args.protocol)} (worker {wid})", flush=True)
                else:
                    errors[seq_name] = payload
                    print(f"[{finished}/{len(todo)}] {seq_name}: FAILED (worker {wid}): {payload}", flush=True)
            progress.draw(sum(frames.values()), finished, force=kind in ("done", "error"))
    finally:
        # Normal end: the workers have exited. Ctrl-C or a fatal start: stop them (each is killed
        # mid-sequence at worst, which leaves no result: it is redone on the next run).
        progress.clear()
        for p in procs:
            if p.is_alive() and (fatal or sys.exc_info()[0] is not None):
                p.terminate()
            p.join(timeout=10)
    # Sequences no worker ever took (every worker died or could not start).
    for seq, *_ in todo:
        if seq.name not in summaries and seq.name not in errors and not fatal:
            errors[seq.name] = "not tracked: no worker left"
    return errors, summaries, fatal


def _evaluate(args, out_dir: Path, tracker_dir: Path, sequences, frames_of, summaries) -> int:
    """Score every tracker folder of DIR run with this protocol (so runs under several --name
    compare in one table and one plot), on the sequences of this run."""
    import yaml

    from online.atomic import atomic_write_text
    from tools.eval.scoring import EvalError, evaluate, evaluate_vot, format_table, format_vot_table, load_attributes

    dirs = []
    for d in sorted(p for p in out_dir.iterdir() if (p / RUN_FILE).is_file()):
        other = yaml.safe_load((d / RUN_FILE).read_text()) or {}
        if other.get("protocol", "ope") == args.protocol and any(d.glob("*.txt")):
            dirs.append(d)
    if tracker_dir not in dirs:
        print("mdnet-eval run: no result to score", file=sys.stderr)
        return 1
    # --frames: score the frames that were tracked.
    scored = [dataclasses.replace(s, boxes=s.boxes[:frames_of(s)], absent=s.absent[:frames_of(s)],
                                  problems=list(s.problems)) for s in sequences]
    try:
        if args.protocol == "vot":
            report = evaluate_vot(dirs, scored)
            table = format_vot_table(report)
        else:
            attributes, notes = load_attributes(args.attributes, scored)
            report = evaluate(dirs, scored, attributes, timing_note=False)
            report["warnings"] = notes + report["warnings"]
            add_fps(report)
            table = format_table(report, per_sequence=False)
    except EvalError as e:
        print(f"mdnet-eval run: evaluation: {e}", file=sys.stderr)
        return 2
    for w in report["warnings"]:
        print(f"mdnet-eval run: warning: {w}", file=sys.stderr)
    print(table)
    report_file = out_dir / REPORT_FILE
    atomic_write_text(report_file, json.dumps(report, indent=1, allow_nan=False) + "\n")
    print(f"wrote {report_file}")
    if args.protocol == "ope":
        from tools.eval.plots import write_plots

        files = write_plots(report, out_dir / PLOTS_DIR)
        print(f"wrote {len(files)} plot files to {out_dir / PLOTS_DIR}")
    return 0


def add_fps(report: dict) -> None:
    """OPE: fps per sequence and tracker from <sequence>_time.txt (frames after the first / their
    seconds); null where a time file is missing."""
    from tools.eval.scoring import read_times

    for t in report["trackers"].values():
        frames, seconds, known = 0, 0.0, True
        for row in t["sequences"].values():
            path = Path(row["result_file"])
            lines = [line for line in path.read_text().splitlines() if line.strip()]
            times = read_times(path.with_name(f"{path.stem}_time.txt"), len(lines))
            if times is None or len(times) < 2 or times[1:].sum() <= 0:
                row["fps"], known = None, False
                continue
            row["fps"] = float((len(times) - 1) / times[1:].sum())
            frames += len(times) - 1
            seconds += float(times[1:].sum())
        t["fps"] = frames / seconds if known and seconds > 0 else None
