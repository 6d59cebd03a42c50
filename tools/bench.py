"""mdnet-bench: timing benchmarks. Subcommands register themselves with `add_<name>_parser`.

    mdnet-bench track --weights random:0 --sequence ../shared/data/OTB/Bolt2 --frames 20 --json

`track` runs the online tracker over the first N frames of one sequence and reports where the time
goes: the first frame (sampling + conv features of ~6700 crops + 50 training iterations + box
regression) separately, then per frame the total inside `track()` and the part of it spent in
network forward/backward passes (synchronised, so asynchronous execution does not hide it).
`overhead_ratio` = total / network time: 1.0 would mean crops, sampling, box regression and
bookkeeping cost nothing. Frame decoding is reported apart (`decode_s_per_frame`) because it
depends on the storage and the file format, not on the tracker.
"""
from __future__ import annotations

import os

os.environ.setdefault("MXNET_CUDNN_AUTOTUNE_DEFAULT", "0")  # before mxnet is imported

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402

from online.cli import widths_arg  # noqa: E402
from online.threads import set_threads, threads_arg  # noqa: E402


def add_track_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "track", help="time the online tracker on one sequence",
        description="Time the online tracker on the first N frames of one sequence (default: one synthetic "
                    "sequence written to a temporary folder, so it runs on a fresh machine).")
    p.add_argument("--weights", default="random:0", help="weight file (.h5) or random:SEED (default random:0)")
    p.add_argument("--widths", type=widths_arg, default=None, metavar="C1,C2,C3,FC",
                   help="widths of a random:SEED trunk (default VGG-M 96,256,512,512)")
    p.add_argument("--sequence", default=None, metavar="DIR",
                   help="a benchmark sequence folder (default: synthesize one, 320x240)")
    p.add_argument("--frames", type=int, default=20, help="frames to track, the first included (default 20)")
    p.add_argument("--config", default=None, help="tracker config YAML")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a tracker config key (repeatable)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--targets", type=int, default=1,
                   help="track this many targets at once (copies of the first box, shifted; default 1)")
    p.add_argument("--mode", default=None, metavar="MODE[,MODE]",
                   help="exact | fast | exact,fast (default: the config's mode). With both, the modes run one "
                        "after the other on the same sequence and weights and the output adds "
                        "fps_ratio = fps(last) / fps(first)")
    threads_arg(p)
    p.add_argument("--gpu", type=int, default=None, metavar="N", help="GPU N (default CPU)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a text table")
    p.set_defaults(func=bench_track)
    return p


def _modes(text: str | None) -> list:
    from online.tracker_config import MODES
    if text is None:
        return [None]
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if not modes or bad or len(set(modes)) != len(modes):
        raise SystemExit(f"mdnet-bench track: --mode {text!r}: expected one or two distinct of {', '.join(MODES)}")
    return modes


def bench_track(args) -> int:
    threads = set_threads(args.threads)
    import mxnet as mx
    import numpy as np

    from online.config import load_config
    from online.network import NetSpec
    from online.readers import read_sequence
    from online.weights import build_trunk

    if args.frames < 2:
        raise SystemExit("mdnet-bench track: --frames must be >= 2 (the first frame is timed apart)")
    modes = _modes(args.mode)
    from online.tracker_config import TrackerConfig
    cfgs = [load_config(TrackerConfig, args.config, list(args.overrides) + ([f"mode={m}"] if m else []))
            for m in modes]
    ctx = mx.gpu(args.gpu) if args.gpu is not None else mx.cpu()
    spec = None
    if args.widths is not None:
        c1, c2, c3, fc = args.widths
        spec = NetSpec(conv_channels=(c1, c2, c3), fc_width=fc)
    trunk, _ = build_trunk(args.weights, ctx=ctx, spec=spec)

    tmp = None
    if args.sequence is None:
        from tools.synth import synthesize
        tmp = tempfile.TemporaryDirectory(prefix="mdnet-bench-")
        seq_dir = synthesize(tmp.name, sequences=1, frames=args.frames, size=(320, 240), seed=args.seed)[0]
    else:
        seq_dir = args.sequence
    try:
        seq = read_sequence(seq_dir)
        n = min(args.frames, len(seq))
        # Extra targets: the first box shifted by a few pixels (same size), so candidate batches grow.
        box0 = seq.boxes[0]
        inits = np.array([box0 + np.array([4.0 * k, 3.0 * k, 0, 0]) for k in range(args.targets)])
        runs = []
        for cfg in cfgs:
            mx.random.seed(args.seed)
            runs.append((cfg, _time_run(trunk, cfg, ctx, args.seed, seq, inits, n)))
        size = seq.frame(0).shape[1::-1]
    finally:
        if tmp is not None:
            tmp.cleanup()
    common = {
        "sequence": str(seq_dir) if args.sequence else f"synthetic 320x240 (tools.synth seed {args.seed})",
        "image_size": list(size),
        "frames": n,
        "targets": args.targets,
        "weights": args.weights,
        "widths": list(trunk.spec.conv_channels) + [trunk.spec.fc_width],
        "device": str(ctx),
        "threads": threads,
        "config_overrides": list(args.overrides),
        "mxnet": mx.__version__,
        "cpu_count": os.cpu_count(),
    }
    if len(runs) == 1:
        result = {**common, **runs[0][1]}
    else:
        result = {**common, "runs": {cfg.mode: r for cfg, r in runs},
                  "fps_ratio": runs[-1][1]["fps"] / runs[0][1]["fps"],
                  "fps_ratio_of": f"{runs[-1][0].mode} / {runs[0][0].mode}"}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_table(result)
    return 0


def _time_run(trunk, cfg, ctx, seed, seq, inits, n) -> dict:
    """One timed tracking run: first frame apart, then per-frame figures (and accuracy if known)."""
    from online.metrics import summarize
    from online.track_loop import track_sequence
    from online.tracker import MultiTracker

    tracker = MultiTracker(trunk, cfg, ctx, seed=seed)
    run = track_sequence(tracker, seq, inits, n)
    per = n - 1
    total = float(run.track_s[1:].sum())
    net = run.net_s - run.first_frame_net_s
    out = {
        "mode": cfg.mode,
        "first_frame_s": run.first_frame_s,
        "first_frame_net_s": run.first_frame_net_s,
        "total_s_per_frame": total / per,
        "net_s_per_frame": net / per,
        "overhead_ratio": total / net if net > 0 else float("nan"),
        "fps": per / total,
        "decode_s_per_frame": float(run.decode_s[1:].sum()) / per,
        "parts_s_per_frame": {k: v / per for k, v in run.parts_s.items()},
        # Each failed frame triggers a short-term update (maxiter_update iterations): the main
        # reason one sequence runs slower than another with the same tracker.
        "failed_frames": int((~run.success[1:n]).sum()),
    }
    feats = tracker.features
    if hasattr(feats, "regions_run"):
        out["regions_per_frame"] = feats.regions_run / n
        out["region_kpx_per_frame"] = feats.region_px / n / 1000.0
    if seq.has_groundtruth and not seq.absent[0]:
        out.update(summarize(run.boxes[:, 0], seq.boxes[:n], seq.absent[:n]))
    return out


def _print_table(result: dict, indent: str = "") -> None:
    for k, v in result.items():
        if isinstance(v, dict) and k == "runs":
            for mode, r in v.items():
                print(f"{indent}--- mode {mode}")
                _print_table(r, indent + "  ")
        else:
            print(f"{indent}{k:>20}: {v}")


def build_parser() -> argparse.ArgumentParser:
    from tools.bench_pretrain import add_pretrain_parser

    p = argparse.ArgumentParser(prog="mdnet-bench",
                                description="Timing benchmarks: the online tracker (track) and pretraining (pretrain).")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_track_parser(sub)
    add_pretrain_parser(sub)
    return p


def main(args) -> int:
    return args.func(args)


def run(argv=None):
    sys.exit(main(build_parser().parse_args(argv)))


if __name__ == "__main__":
    run()
