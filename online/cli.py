"""mdnet-track: track one or more sequences with an MDNet weight file and write the boxes.

    mdnet-track --weights W.h5 /data/OTB/Bolt2                  # a benchmark sequence
    mdnet-track --weights W.h5 /data/OTB                        # every sequence under a root
    mdnet-track --weights W.h5 clip.mp4 --init 10,20,40,60      # a video (or an image folder)
    mdnet-track --weights random:0 --widths 32,64,128,128 SEQ --frames 5   # smoke test
    mdnet-track --weights W.h5 /data/VOT --protocol vot         # VOT supervised: reset on failure

Writes `OUT_DIR/<sequence>.txt` (one `x,y,w,h` line per frame, the first line the initial box,
the same convention as the benchmark's ground truth) and `OUT_DIR/mdnet-track.yaml` (resolved
config, weights provenance, seed, device). Prints one summary line per sequence.

`--protocol vot` (online/track_loop.py): re-initialise from the ground truth 5 frames after every
failure (IoU 0); the result file is VOT's supervised format (`1` init, `2` failure, `0` skipped,
else x,y,w,h; pysot and the VOT toolkit read it) plus `<sequence>_time.txt` (seconds per frame);
accuracy / failures / robustness as online/metrics.py defines them.
"""
from __future__ import annotations

import os

# Must be set before mxnet is imported (online/* modules import it): cuDNN autotuning would
# benchmark every new input shape on the GPU and make the first frames of a run slow and the
# results depend on the timing-chosen algorithm.
os.environ.setdefault("MXNET_CUDNN_AUTOTUNE_DEFAULT", "0")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import yaml  # noqa: E402

from online.shipped import DEFAULT_WEIGHTS  # noqa: E402
from online.threads import set_threads, threads_arg  # noqa: E402

DEFAULT_OUT_DIR = "results"
PROTOCOLS = ("ope", "vot")  # online.track_loop.PROTOCOLS; a test keeps the two equal


class OutputError(ValueError):
    """An output file or folder cannot be written; the message names it."""


def os_problem(e: OSError) -> str:
    """`FILE: reason` of an OSError, one line (its str() repeats the errno and quotes the name)."""
    name = e.filename if e.filename is not None else "?"
    return f"{name}: {e.strerror or e}"


def _box_arg(text: str) -> tuple:
    try:
        vals = tuple(float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--init {text!r}: expected x,y,w,h numbers") from None
    if len(vals) != 4 or not all(np.isfinite(vals)) or vals[2] <= 0 or vals[3] <= 0:
        raise argparse.ArgumentTypeError(f"--init {text!r}: expected x,y,w,h with positive w and h")
    return vals


def widths_arg(text: str) -> tuple:
    """argparse type of --widths C1,C2,C3,FC (mdnet-track, mdnet-bench track, mdnet-eval run)."""
    try:
        vals = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--widths {text!r}: expected 4 integers C1,C2,C3,FC") from None
    if len(vals) != 4 or min(vals) < 1:
        raise argparse.ArgumentTypeError(f"--widths {text!r}: expected 4 positive integers C1,C2,C3,FC")
    return vals


def mode_arg(p: argparse.ArgumentParser) -> None:
    """--mode exact|fast (mdnet-track, mdnet-eval run): shorthand for --set mode=M."""
    from online.tracker_config import MODES
    p.add_argument("--mode", choices=MODES, default=None,
                   help="exact: every box cropped and run through conv1-3 (MDNet; ~1.1 fps with the shipped "
                        "model on 2 CPU cores); fast: one region per target and frame through conv1-3, boxes "
                        "pooled with RoIAlign (RT-MDNet's idea), hard-negative mining in bf16 where the CPU has "
                        "it (mining_dtype auto): ~5x the fps, success AUC 0.03 below exact with the shipped "
                        "model on ../shared/data. Default: the config's mode (exact). Same as --set mode=M")


def config_overrides(args) -> list:
    """--set overrides plus --mode (which wins: it is the more specific of the two)."""
    return list(args.overrides) + ([f"mode={args.mode}"] if getattr(args, "mode", None) else [])


def build_parser() -> argparse.ArgumentParser:
    from online.config import describe_config
    from online.tracker_config import TrackerConfig

    p = argparse.ArgumentParser(
        prog="mdnet-track",
        description="Track sequences with an MDNet weight file (fresh fc6 per target, first-frame "
                    "training, online updates) and write one x,y,w,h line per frame.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="PATH may be: a benchmark sequence folder (OTB/DTB70/UAV123/VOT/GOT-10k/LaSOT); a dataset "
               "root (every sequence below it, tracked in turn); a folder of images or a video file "
               "(then --init is required).\n\nWrites OUT_DIR/<sequence>.txt (one x,y,w,h line per frame, the first line "
               "the initial box; the ground truth's convention) and OUT_DIR/mdnet-track.yaml (resolved config, "
               "weights, seed, device), and prints per sequence: mean IoU, success AUC (OTB: 21 thresholds), "
               "precision at 20 px (only when tracking from the ground-truth box; absent frames skipped), the "
               "first frame's time and the fps after it. Exit status 1 if any sequence failed, 2 on bad "
               "arguments, config or weights.\n\nTracker config keys (for --config YAML files and --set):\n  "
               + "\n  ".join(describe_config(TrackerConfig)))
    p.add_argument("paths", nargs="+", metavar="PATH", help="sequence folder, dataset root, image folder or video")
    p.add_argument("--weights", default=None,
                   help="weight file (.h5 from mdnet-export) or random:SEED for a randomly initialised trunk "
                        f"(default: the shipped model {DEFAULT_WEIGHTS.relative_to(DEFAULT_WEIGHTS.parents[1])}, "
                        "VGG-M widths pretrained on 22 real videos with cluster/configs/real-cpu.yaml)")
    p.add_argument("--widths", type=widths_arg, default=None, metavar="C1,C2,C3,FC",
                   help="channel widths of a random:SEED trunk (default: VGG-M 96,256,512,512); a weight "
                        "file records its own widths and must not be given others")
    p.add_argument("--init", type=_box_arg, action="append", default=None, metavar="X,Y,W,H",
                   help="initial box in the first frame (required for image folders and videos; for a "
                        "benchmark sequence it replaces the ground-truth box). Repeat it to track several "
                        "targets at once (one batched conv pass per frame); results go to "
                        "<sequence>.target<K>.txt, K = 1, 2, ...")
    p.add_argument("--out-dir", default=DEFAULT_OUT_DIR, help=f"where results go (default: {DEFAULT_OUT_DIR})")
    p.add_argument("--config", default=None, help="tracker config YAML (e.g. cluster/configs/tracker.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set maxiter_init=30 (repeatable)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the sampling, fc6 initialisation and dropout of every target (target K "
                        "draws from (seed, K)); same seed, same results (default 0)")
    p.add_argument("--save-video", default=None, metavar="FILE",
                   help="also write a video with the boxes drawn (.avi: MJPG, .mp4: mp4v); with several "
                        "sequences the sequence name is appended to the file name")
    mode_arg(p)
    threads_arg(p)
    p.add_argument("--gpu", type=int, default=None, metavar="N", help="run on GPU N (default: CPU)")
    p.add_argument("--frames", type=int, default=None, metavar="N",
                   help="track only the first N frames of each sequence (smoke tests)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="ope",
                   help="ope (default): OTB one-pass, initialised once; vot: VOT supervised, a failure "
                        "(IoU 0 with the ground truth) is counted and the tracker re-initialised from the "
                        "ground truth 5 frames later; results in VOT's format (1 init, 2 failure, 0 "
                        "skipped, else x,y,w,h) plus <sequence>_time.txt; reports accuracy (mean IoU "
                        "without the 10 frames from every (re)initialisation on), failures, failures per "
                        "100 frames and fps. Needs ground truth; no --init")
    p.add_argument("--summary-json", default=None, metavar="FILE",
                   help="also write the per-sequence summaries and the overall numbers (key 'overall': "
                        "ope: mean over scored sequences of mean_iou, auc, precision20; vot: accuracy "
                        "pooled over scored frames, failures, robustness, fps) as strict JSON (a number "
                        "that is unknown, e.g. an accuracy with no frame left after the burn-in, is null)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--verbose", action="store_true",
                     help="print a line per frame (IoU where ground truth exists, score, time)")
    out.add_argument("--quiet", action="store_true",
                     help="no progress bar (shown only when stderr is a terminal) and no start-up line; "
                          "summaries are always printed")
    return p


def parse_args(argv=None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    if args.frames is not None and args.frames < 1:
        build_parser().error("--frames must be >= 1")
    if args.protocol == "vot" and args.init:
        build_parser().error("--protocol vot (re)initialises from the ground truth: --init does not apply")
    return args


# ----------------------------------------------------------------------------------------------

def resolve_paths(paths, init_box) -> list:
    """Sequences to track, in order: each PATH is a sequence, a video/image folder, or a root."""
    from online.readers import detect_format, discover, read_sequence
    from online.sequence import DataError

    seqs = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise DataError(f"{p}: no such file or folder")
        fmt = detect_format(p) if p.is_dir() else None
        if p.is_file() or (fmt is not None and fmt != "imagenet-vid"):
            seqs.append(read_sequence(p, init_box))
            continue
        try:
            seqs.extend(discover(p))
        except DataError:
            if init_box is None:
                raise
            seqs.append(read_sequence(p, init_box))  # a plain folder of images
    return seqs


class _Progress:
    """A one-line text progress bar on stderr (only when stderr is a terminal)."""

    def __init__(self, name: str, total: int, enabled: bool):
        self.name, self.total = name, total
        self.enabled = enabled and sys.stderr.isatty()

    def update(self, done: int, extra: str = ""):
        if not self.enabled:
            return
        width = 30
        fill = int(width * done / max(self.total, 1))
        sys.stderr.write(f"\r{self.name} [{'#' * fill}{'.' * (width - fill)}] {done}/{self.total} {extra}")
        sys.stderr.flush()

    def close(self):
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _video_path(base: str, seq_name: str, many: bool) -> Path:
    p = Path(base)
    return p if not many else p.with_name(f"{p.stem}_{seq_name}{p.suffix or '.avi'}")


def _open_video(path: Path, size, fps: float = 20.0):
    import cv2

    fourcc = cv2.VideoWriter_fourcc(*("mp4v" if path.suffix.lower() == ".mp4" else "MJPG"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"--save-video {path}: cannot create its folder ({os_problem(e)})") from None
    writer = cv2.VideoWriter(str(path), fourcc, fps, tuple(int(v) for v in size))
    if not writer.isOpened():
        raise OutputError(f"--save-video {path}: OpenCV cannot write a video with this name "
                          f"(use .avi (MJPG) or .mp4 (mp4v) in a writable folder)")
    return writer


def check_video_path(path: Path) -> None:
    """Open (and remove again) a writer on `path` before any frame is tracked: an extension OpenCV
    has no writer for would otherwise fail only at the first frame, after the setup cost."""
    existed = path.exists()
    if path.is_dir():
        raise OutputError(f"--save-video {path}: is a folder, expected a video file name such as out.avi")
    writer = _open_video(path, (64, 48))
    writer.release()
    if not existed and path.exists():
        path.unlink()


def _draw(image, boxes, gt):
    import cv2

    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if gt is not None and np.all(np.isfinite(gt)):
        x, y, w, h = gt
        cv2.rectangle(bgr, (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h))), (0, 0, 255), 1)
    colours = [(0, 255, 0), (255, 128, 0), (0, 255, 255), (255, 0, 255)]
    for k, (x, y, w, h) in enumerate(boxes):
        if not np.all(np.isfinite((x, y, w, h))):
            continue  # VOT: a skipped frame has no box
        cv2.rectangle(bgr, (int(round(x)), int(round(y))), (int(round(x + w)), int(round(y + h))),
                      colours[k % len(colours)], 2)
    return bgr


def track_one(seq, trunk, cfg, ctx, args, out_dir: Path, used_names: set, many: bool) -> dict:
    """Track one sequence through online.track_loop; write its result file(s); return its summary."""
    from online.atomic import atomic_write_text
    from online.boxes import iou
    from online.track_loop import result_text, time_text, track_sequence
    from online.tracker import MultiTracker

    inits = np.asarray(args.init, dtype=np.float64).reshape(-1, 4) if args.init else None
    # Metrics only when the one target started from the ground truth.
    scored = seq.has_groundtruth and (inits is None or (len(inits) == 1 and np.allclose(inits[0], seq.boxes[0])))
    n = len(seq) if args.frames is None else min(len(seq), args.frames)
    if args.frames is not None and args.frames > len(seq) and seq.frames_on_disk > len(seq):
        # The frames past the ground truth are not tracked: say so, naming the file to fix.
        print(f"mdnet-track: warning: {seq.groundtruth_file or seq.path}: {len(seq)} ground-truth lines "
              f"for {seq.frames_on_disk} frames: tracking the annotated first {len(seq)} frames only "
              f"(--frames {args.frames} asked for more)", file=sys.stderr)
    progress = _Progress(seq.name, n, not (args.quiet or args.verbose))
    video = {"writer": None}

    def on_frame(i, image, run):
        if args.save_video:
            if video["writer"] is None:
                video["writer"] = _open_video(_video_path(args.save_video, seq.name, many),
                                              (image.shape[1], image.shape[0]))
            video["writer"].write(_draw(image, run.boxes[i], seq.boxes[i] if seq.has_groundtruth else None))
        if args.verbose:
            parts = [f"frame {i}:"]
            state = {0: "skipped", 1: "init", 2: "FAILURE"}.get(int(run.status[i]))
            if args.protocol == "vot" and state:
                parts.append(state)
            if scored and not seq.absent[i] and np.isfinite(run.boxes[i, 0]).all():
                parts.append(f"IoU {float(iou(run.boxes[i, 0], seq.boxes[i])[0]):.2f}")
            if np.isfinite(run.scores[i]).any():
                parts.append("score " + " ".join(f"{v:.2f}" for v in run.scores[i]))
            parts.append(f"time {run.track_s[i]:.2f}s")
            print(" ".join(parts), flush=True)
        progress.update(i + 1, f"{run.track_s[i]:.2f}s")

    try:
        run = track_sequence(MultiTracker(trunk, cfg, ctx, seed=args.seed), seq, inits, n, on_frame,
                             protocol=args.protocol)
    finally:
        progress.close()
        if video["writer"] is not None:
            video["writer"].release()

    name = seq.name
    while name in used_names:
        name = name + "_"
    used_names.add(name)
    k = run.boxes.shape[1]
    files = []
    try:
        if args.protocol == "vot":
            # Timing first: the result file is what marks the sequence done (mdnet-eval run resumes).
            atomic_write_text(out_dir / f"{name}_time.txt", time_text(run))
        for t in range(k):
            path = out_dir / (f"{name}.txt" if k == 1 else f"{name}.target{t + 1}.txt")
            atomic_write_text(path, result_text(run, t))
            files.append(str(path))
    except OSError as e:  # the folder became read-only, the disk is full, ...
        raise OutputError(f"cannot write the results: {os_problem(e)}") from None
    return {"sequence": seq.name, "files": files, **run.summary(seq if scored else None)}


def format_vot_summary(s: dict) -> str:
    """One sequence of a VOT-style run (online.track_loop.SequenceRun.summary)."""
    text = f"{s['sequence']}: {s['frames']} frames"
    if "accuracy" in s:
        text += (f", accuracy {s['accuracy']:.3f} ({s['frames_scored']} frames scored), failures {s['failures']} "
                 f"({s['robustness']:.2f} per 100 frames), {s['inits']} initialisation(s)")
    return text + f", {s['fps']:.2f} fps tracking -> {', '.join(s['files'])}"


def vot_overall(summaries: list) -> dict:
    """Overall VOT numbers: accuracy pooled over scored frames (pysot), failures summed, robustness
    per 100 frames, fps = all tracked frames / their time."""
    from online.metrics import vot_overall as pooled

    rows = [s for s in summaries if "accuracy" in s]
    out = pooled(rows) if rows else {}
    tracked = sum(s["tracked_frames"] for s in summaries)
    seconds = sum(s["tracked_frames"] / s["fps"] for s in summaries if s["tracked_frames"] and s["fps"] > 0)
    out["fps"] = tracked / seconds if seconds > 0 else float("nan")
    return out


def _format_summary(s: dict) -> str:
    if "tracked_frames" in s:
        return format_vot_summary(s)
    text = f"{s['sequence']}: {s['frames']} frames"
    if "mean_iou" in s:
        text += (f", mean IoU {s['mean_iou']:.3f}, AUC {s['auc']:.3f}, precision@20px {s['precision20']:.3f}"
                 f" ({s['frames_scored']} frames scored)")
    text += f", first frame {s['first_frame_s']:.2f}s, {s['fps']:.2f} fps after it -> {', '.join(s['files'])}"
    return text


def strict_json(obj, indent: int | None = 1) -> str:
    """`obj` as strict JSON (RFC 8259): NaN and +-Infinity become null, numpy scalars and arrays
    plain numbers and lists; json.dumps(allow_nan=False) then refuses anything left over instead of
    writing `NaN`, which strict parsers (jq, JavaScript, Go) reject."""
    def clean(v):
        if isinstance(v, dict):
            return {str(k): clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        if isinstance(v, np.ndarray):
            return clean(v.tolist())
        if isinstance(v, np.generic):
            v = v.item()
        if isinstance(v, float) and not np.isfinite(v):
            return None
        return v
    return json.dumps(clean(obj), indent=indent, allow_nan=False)


def write_run_info(out_dir: Path, text: str) -> None:
    """Create OUT_DIR and write mdnet-track.yaml into it; OutputError naming what cannot be written."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"--out-dir {out_dir}: is a file, expected a folder for the results")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "mdnet-track.yaml").write_text(text)
    except OSError as e:  # read-only, a parent that is a file, disk full, ...
        raise OutputError(f"--out-dir {out_dir}: cannot write results there ({os_problem(e)})") from None


def main(args: argparse.Namespace) -> int:
    threads = set_threads(args.threads)
    import mxnet as mx

    from online.config import ConfigError, config_to_dict, load_config
    from online.loading import load_trunk
    from online.sequence import DataError
    from online.tracker_config import TrackerConfig
    from online.weights import WeightFileError

    try:
        cfg = load_config(TrackerConfig, args.config, config_overrides(args))
    except ConfigError as e:
        print(f"mdnet-track: config error: {e}", file=sys.stderr)
        return 2
    if args.gpu is not None:
        if not 0 <= args.gpu < mx.context.num_gpus():
            print(f"mdnet-track: --gpu {args.gpu}: only {mx.context.num_gpus()} GPU(s) visible", file=sys.stderr)
            return 2
        ctx = mx.gpu(args.gpu)
    else:
        ctx = mx.cpu()
    from online.trunk_precision import check_supported, resolve_mining_dtype
    try:
        check_supported(cfg.trunk_dtype, ctx)  # one config error up front, not a failure per sequence
        check_supported(resolve_mining_dtype(cfg.mining_dtype, cfg.mode, ctx), ctx, field="mining_dtype")
    except ConfigError as e:
        print(f"mdnet-track: config error: {e}", file=sys.stderr)
        return 2
    try:
        # The shipped model when --weights is omitted (online/loading.py, shared with the APIs).
        trunk, provenance, args.weights = load_trunk(args.weights, args.widths, ctx)
        seqs = resolve_paths(args.paths, args.init[0] if args.init else None)
    except (DataError, WeightFileError, OSError) as e:
        print(f"mdnet-track: {e}", file=sys.stderr)
        return 2
    mx.random.seed(args.seed)  # the tracker draws from numpy generators; this covers anything else

    out_dir = Path(args.out_dir)
    # The config as it runs: `mining_dtype: auto` written as the precision it resolved to here, so
    # the file reruns the same way on another machine.
    # (and online_fc4 / stored_region, whose `auto` depends on the mode: TrackerConfig.resolved)
    ran = dataclasses.replace(cfg.resolved(), mining_dtype=resolve_mining_dtype(cfg.mining_dtype, cfg.mode, ctx))
    run_info = {"config": config_to_dict(ran), "weights": args.weights, "provenance": provenance,
                "net": trunk.spec.to_dict(),
                "seed": args.seed, "protocol": args.protocol, "device": str(ctx), "threads": threads,
                "mxnet": mx.__version__,
                "python": platform.python_version(),
                "paths": [str(p) for p in args.paths]}
    try:
        # Every output is checked before the first frame: a bad folder or video name found after
        # minutes of tracking would lose them.
        write_run_info(out_dir, yaml.safe_dump(run_info, sort_keys=False, default_flow_style=None))
        if args.save_video:
            check_video_path(_video_path(args.save_video, seqs[0].name if seqs else "x", len(seqs) > 1))
    except OutputError as e:
        print(f"mdnet-track: {e}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(f"mdnet-track: {len(seqs)} sequence(s), weights {args.weights}, "
              f"net {trunk.spec.describe()}, mode {cfg.mode}, trunk {cfg.trunk_dtype}, device {ctx} "
              f"({threads} thread(s)), mxnet {mx.__version__}, seed {args.seed}", flush=True)

    failures = 0
    summaries = []
    used: set = set()
    for seq in seqs:
        try:
            s = track_one(seq, trunk, cfg, ctx, args, out_dir, used, many=len(seqs) > 1)
        except OutputError as e:
            # The results cannot be written: the next sequences would fail the same way.
            print(f"mdnet-track: {seq.name}: {e}", file=sys.stderr)
            return 2
        except (DataError, ValueError) as e:
            # One unreadable frame or unusable first box should not lose the other sequences'
            # results; the exit status still reports it.
            print(f"mdnet-track: {seq.name}: FAILED: {e}", file=sys.stderr)
            failures += 1
            continue
        summaries.append(s)
        print(_format_summary(s), flush=True)
    if args.protocol == "vot":
        overall = vot_overall(summaries)
        scored = [s for s in summaries if "accuracy" in s]
        if scored:
            print(f"all {len(scored)} sequence(s), {overall['frames']} frames: accuracy {overall['accuracy']:.3f} "
                  f"(pooled over {overall['frames_scored']} scored frames), failures {overall['failures']} "
                  f"({overall['robustness']:.2f} per 100 frames), {overall['fps']:.2f} fps tracking", flush=True)
    else:
        scored = [s for s in summaries if "mean_iou" in s]
        overall = {k: float(np.mean([s[k] for s in scored])) for k in ("mean_iou", "auc", "precision20")} \
            if scored else {}
        if len(scored) > 1:
            print(f"all {len(scored)} scored sequences: mean IoU {overall['mean_iou']:.3f}, "
                  f"mean AUC {overall['auc']:.3f}, mean precision@20px {overall['precision20']:.3f}", flush=True)
    if args.summary_json:
        overall["sequences_scored"] = len(scored)
        try:
            Path(args.summary_json).parent.mkdir(parents=True, exist_ok=True)
            # Strict JSON: an unknown number (accuracy with no frame after the burn-in, fps of no
            # tracked frame) is null, never NaN.
            Path(args.summary_json).write_text(strict_json(
                {"weights": args.weights, "seed": args.seed, "protocol": args.protocol, "overall": overall,
                 "sequences": summaries, "failures": failures}) + "\n")
        except OSError as e:
            print(f"mdnet-track: --summary-json: cannot write {os_problem(e)}", file=sys.stderr)
            return 2
    return 1 if failures else 0


def run(argv=None):
    sys.exit(main(parse_args(argv)))


if __name__ == "__main__":
    run()
