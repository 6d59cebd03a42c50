"""mdnet-bench: timing benchmarks. Subcommands register themselves with `add_<name>_parser`.

    mdnet-bench track --weights random:0 --sequence ../shared/data/OTB/Bolt2 --frames 20 --json

`track` runs the online tracker over the first N frames of one sequence and reports where the time
goes: the first frame (sampling + conv features of ~6700 crops + 50 training iterations + box
regression) separately, then per frame the total inside `track()` and the part of it spent in
network forward/backward passes (synchronised, so asynchronous execution does not hide it).
`overhead_ratio` = total / network time: 1.0 would mean crops, sampling, box regression and
bookkeeping cost nothing. Frame decoding is reported apart (`decode_s_per_frame`) because it
depends on the storage and the file format, not on the tracker.

Comparing options: `--mode exact,fast`, `--trunk-dtype fp32,bf16,int8` (CPU; `fp32,fp16` with
`--gpu N`) and `--mining-dtype fp32,bf16` run every combination on the same sequence and weights in one process; `--repeats N`
runs them N times round-robin (so a change of machine load hits every option alike) and reports
per option the median of each figure, and `fps_ratios` = the median over rounds of
fps(option) / fps(first option) in that round.
`--variant NAME:KEY=VALUE,...` (repeatable) compares named sets of config overrides the same way
(e.g. MDNet's online rules against fast mode's defaults: `--variant
mdnet:online_fc4=train,stored_region=own --variant default:`); `--csrt` also tracks the same frames
with OpenCV's CSRT in every round (`fps_over_csrt`: a ratio that holds across machines). Every
result names the CPU (`cpu`, `cpu_flags`) and the machine's `load_average`.
Every run reports its parts by phase (`phases`: first frame: features, of which int8 calibration,
training (of which hard-negative mining), box-regression fit; per frame: candidates, stored samples,
updates (of which mining), box regression).
`--profile` adds oneDNN's own time for each primitive of conv1-3 (convs, ReLU, LRN, pooling and the
layout / precision reorders between them) for one 256-crop batch at each trunk dtype
(tools/bench/dnnl_profile.py), and the time of each op of one online update (15 iterations on a
long-term update's pools) at each mining dtype (tools/bench/train_profile.py).
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
    p.add_argument("--trunk-dtype", default=None, metavar="DTYPE[,DTYPE...]",
                   help="conv1-3 precision(s) to compare, of fp32, bf16, int8 (CPU), fp16 (--gpu) (default: the config's "
                        "trunk_dtype); with several, each runs on the same sequence and weights and the output "
                        "adds fps_ratios against the first")
    p.add_argument("--mining-dtype", default=None, metavar="DTYPE[,DTYPE]",
                   help="precision(s) of online training's hard-negative scoring to compare, of auto, fp32, bf16 "
                        "(default: the config's mining_dtype); like --trunk-dtype, every combination runs")
    p.add_argument("--repeats", type=int, default=1, metavar="N",
                   help="run every option N times, round-robin; figures are medians (default 1)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE[,KEY=VALUE...]",
                   help="a named set of config overrides (on top of --set) to compare; repeatable: every variant "
                        "runs with every mode / dtype, round-robin like them (e.g. --variant mdnet: --variant "
                        "mdnet:online_fc4=train,stored_region=own)")
    p.add_argument("--csrt", action="store_true",
                   help="also track the same frames with OpenCV's CSRT (one thread, as mdnet-eval runs it) in every "
                        "round, after the tracker's runs: the output adds csrt_fps and fps_over_csrt = the median "
                        "over rounds of fps(run) / fps(CSRT) in that round, a ratio that holds across machines")
    p.add_argument("--profile", action="store_true",
                   help="also time each oneDNN primitive of conv1-3 (conv, ReLU, LRN, pooling, reorders) for one "
                        "batch (batch_test, 256) of first-frame candidate crops, per trunk dtype, as oneDNN itself "
                        "reports it (DNNL_VERBOSE=1 in a child process), and each op of one online update "
                        "(maxiter_update iterations on a long-term update's pools) per mining dtype; CPU only")
    p.add_argument("--profile-repeats", type=int, default=5, metavar="N",
                   help="--profile: timed forwards (and updates) per dtype; figures are medians (default 5)")
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


def _dtypes(text: str | None, allowed=None, option: str = "--trunk-dtype") -> list:
    from online.tracker_config import TRUNK_DTYPES
    allowed = TRUNK_DTYPES if allowed is None else allowed
    if text is None:
        return [None]
    dtypes = [d.strip() for d in text.split(",") if d.strip()]
    bad = [d for d in dtypes if d not in allowed]
    if not dtypes or bad or len(set(dtypes)) != len(dtypes):
        raise SystemExit(f"mdnet-bench track: {option} {text!r}: expected distinct values of "
                         f"{', '.join(allowed)}")
    return dtypes


def _median_run(runs: list) -> dict:
    """One option's figures over its repeats: the median of every number, nested dicts included."""
    if len(runs) == 1:
        return runs[0]
    import numpy as np
    out = {}
    for k, v in runs[0].items():
        if isinstance(v, dict):
            out[k] = _median_run([r[k] for r in runs])
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = float(np.median([r[k] for r in runs]))
        else:
            out[k] = v
    return out


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
    if args.repeats < 1:
        raise SystemExit("mdnet-bench track: --repeats must be >= 1")
    modes = _modes(args.mode)
    dtypes = _dtypes(args.trunk_dtype)
    from online.tracker_config import MINING_DTYPES
    minings = _dtypes(args.mining_dtype, MINING_DTYPES, "--mining-dtype")
    from online import trunk_precision
    from online.config import ConfigError
    from online.tracker_config import TrackerConfig
    variants = []
    for text in args.variant:
        name, sep, rest = text.partition(":")
        if not sep or not name or name in [v for v, _ in variants]:
            raise SystemExit(f"mdnet-bench track: --variant {text!r}: expected a new NAME:KEY=VALUE[,KEY=VALUE...]")
        variants.append((name, [kv for kv in rest.split(",") if kv]))
    variants = variants or [(None, [])]
    try:
        cfgs = [load_config(TrackerConfig, args.config, list(args.overrides) + extra + ([f"mode={m}"] if m else [])
                            + ([f"trunk_dtype={d}"] if d else []) + ([f"mining_dtype={g}"] if g else []))
                for _, extra in variants for m in modes for d in dtypes for g in minings]
    except ConfigError as e:
        raise SystemExit(f"mdnet-bench track: config error: {e}")
    cfg_variants = [v for v, _ in variants for _ in modes for _ in dtypes for _ in minings]
    if args.gpu is not None and not 0 <= args.gpu < mx.context.num_gpus():
        # A clear message, not MXNet's traceback from the first array placed on a missing device.
        raise SystemExit(f"mdnet-bench track: --gpu {args.gpu}: only {mx.context.num_gpus()} GPU(s) visible")
    ctx = mx.gpu(args.gpu) if args.gpu is not None else mx.cpu()
    if args.profile and args.gpu is not None:
        raise SystemExit("mdnet-bench track: --profile reads oneDNN's CPU timings; it does not profile a GPU "
                         "(use nvprof / nsys there)")
    try:  # refuse before any run, not after the first option has been timed
        for cfg in cfgs:
            trunk_precision.check_supported(cfg.trunk_dtype, ctx)
            trunk_precision.check_supported(trunk_precision.resolve_mining_dtype(cfg.mining_dtype, cfg.mode, ctx), ctx,
                                            field="mining_dtype")
    except ConfigError as e:
        raise SystemExit(f"mdnet-bench track: {e}")
    # Run names: what differs between the runs ("exact", "bf16", "fast/int8", "fast/mining-bf16").
    vary = [i for i, opts in enumerate((modes, dtypes, minings)) if len(opts) > 1]
    names = ["/".join(([v] if v else []) + [(c.mode, c.trunk_dtype, f"mining-{c.mining_dtype}")[i] for i in vary])
             or c.mode for v, c in zip(cfg_variants, cfgs)]
    spec = None
    if args.widths is not None:
        c1, c2, c3, fc = args.widths
        spec = NetSpec(conv_channels=(c1, c2, c3), fc_width=fc)
    trunk, _ = build_trunk(args.weights, ctx=ctx, spec=spec)

    tmp = None
    if args.sequence is None:
        from tools.data.synth import synthesize
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
        rounds, csrt = [], []
        for _ in range(args.repeats):
            one = []
            for cfg in cfgs:
                mx.random.seed(args.seed)
                one.append(_time_run(trunk, cfg, ctx, args.seed, seq, inits, n))
            rounds.append(one)
            if args.csrt:
                csrt.append(_time_csrt(seq, inits[:1], n))
        runs = [(cfg, _median_run([r[j] for r in rounds])) for j, cfg in enumerate(cfgs)]
        size = seq.frame(0).shape[1::-1]
        layers = updates = None
        if args.profile:
            from tools.bench.dnnl_profile import profile_layers
            from online.sampling import SamplerSpec, sample_boxes
            # One frame's candidates (the tracker's sampler and count) around the first box.
            c = cfgs[0]
            image0 = seq.frame(0)
            cands = sample_boxes(np.random.default_rng(args.seed), SamplerSpec("gaussian", c.trans, c.scale,
                                                                                min_size=c.min_box_size),
                                 box0, image0.shape[1::-1], c.n_samples)
            layers = profile_layers(args.weights, args.widths, list(dict.fromkeys(c.trunk_dtype for c in cfgs)),
                                    trunk.spec, image0, cands, batch=c.batch_test,
                                    repeats=max(1, args.profile_repeats))
            from tools.bench.train_profile import profile_updates
            if len(variants) > 1:
                # One profile per variant (its first config), keyed "variant/mining dtype".
                updates = {}
                for v in dict.fromkeys(cfg_variants):
                    c = cfgs[cfg_variants.index(v)]
                    for dtype, prof in profile_updates(trunk, [c], ctx, seq, args.seed,
                                                       repeats=max(1, args.profile_repeats)).items():
                        updates[f"{v}/{dtype}"] = prof
            else:
                updates = profile_updates(trunk, cfgs, ctx, seq, args.seed, repeats=max(1, args.profile_repeats))
    finally:
        if tmp is not None:
            tmp.cleanup()
    common = {
        "sequence": str(seq_dir) if args.sequence else f"synthetic 320x240 (tools.data.synth seed {args.seed})",
        "image_size": list(size),
        "frames": n,
        "targets": args.targets,
        "weights": args.weights,
        "net": trunk.spec.to_dict(),
        "device": str(ctx),
        "threads": threads,
        "repeats": args.repeats,
        "config_overrides": list(args.overrides),
        "variants": {v: o for v, o in variants if v},
        "mxnet": mx.__version__,
        "cpu_count": os.cpu_count(),
        "cpu": _cpu_name(),
        "cpu_flags": sorted(trunk_precision.cpu_flags() & {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16",
                                                           "amx_bf16", "amx_int8"}),
        "load_average": list(os.getloadavg()),
    }
    if len(runs) == 1:
        result = {**common, **runs[0][1]}
    else:
        # Ratios within each round, then their median: the load of one moment cancels out.
        ratios = {name: float(np.median([r[j]["fps"] / r[0]["fps"] for r in rounds]))
                  for j, name in enumerate(names)}
        result = {**common, "runs": dict(zip(names, (r for _, r in runs))),
                  "fps_ratios": ratios, "fps_ratios_of": f"fps(run) / fps({names[0]})",
                  "fps_ratio": ratios[names[-1]], "fps_ratio_of": f"{names[-1]} / {names[0]}"}
    if csrt:
        result["csrt_fps"] = float(np.median(csrt))
        result["csrt_threads"] = 1
        result["fps_over_csrt"] = {name: float(np.median([r[j]["fps"] / c for r, c in zip(rounds, csrt)]))
                                   for j, name in enumerate(names)}
    if layers is not None:
        result["layers"] = layers
    if updates is not None:
        result["online_update"] = updates
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_table(result)
    return 0


def _cpu_name() -> str:
    """lscpu's model name (/proc/cpuinfo), named beside every figure: timings depend on it."""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform
    return platform.processor() or "unknown"


def _time_csrt(seq, inits, n) -> float:
    """fps of OpenCV's CSRT (one thread: tools/eval/baselines.py) after the first frame, same frames."""
    from online.track_loop import track_sequence
    from tools.eval.baselines import OpenCVTracker

    return float(track_sequence(OpenCVTracker("csrt"), seq, inits, n).fps)


def _time_run(trunk, cfg, ctx, seed, seq, inits, n) -> dict:
    """One timed tracking run: first frame apart, then per-frame figures (and accuracy if known)."""
    from online.metrics import summarize
    from online.track_loop import track_sequence
    from online.tracker import MultiTracker
    from tools.bench.dnnl_profile import PhaseFeatures, phases

    class _PhaseFeatures(PhaseFeatures):
        # The same phases, with the feature sources' keyword arguments (reuse=) passed on.
        def __call__(self, image, groups, **kw):
            if not kw:
                return super().__call__(image, groups)
            inner = self.inner
            self.inner = lambda i, g: inner(i, g, **kw)
            try:
                return super().__call__(image, groups)
            finally:
                self.inner = inner

    tracker = MultiTracker(trunk, cfg, ctx, seed=seed)
    feats = tracker.features
    tracker.features = _PhaseFeatures(feats, tracker.timer)
    run = track_sequence(tracker, seq, inits, n)
    per = n - 1
    total = float(run.track_s[1:].sum())
    net = run.net_s - run.first_frame_net_s
    totals = tracker.timer.snapshot()
    first_parts = {k: v - run.parts_s.get(k, 0.0) for k, v in totals.items() if k != "net_s"}
    per_frame = {k: v / per for k, v in run.parts_s.items()}
    out = {
        "mode": cfg.mode,
        "trunk_dtype": cfg.trunk_dtype,
        "mining_dtype": tracker.cfg.mining_dtype,  # as it ran (`auto` resolved)
        "first_frame_s": run.first_frame_s,
        "first_frame_net_s": run.first_frame_net_s,
        "total_s_per_frame": total / per,
        "net_s_per_frame": net / per,
        "overhead_ratio": total / net if net > 0 else float("nan"),
        "fps": per / total,
        "decode_s_per_frame": float(run.decode_s[1:].sum()) / per,
        "first_frame_parts_s": first_parts,
        "parts_s_per_frame": per_frame,
        "phases": phases(first_parts, per_frame, run.first_frame_s, total / per),
        # Each failed frame triggers a short-term update (maxiter_update iterations): the main
        # reason one sequence runs slower than another with the same tracker.
        "failed_frames": int((~run.success[1:n]).sum()),
    }
    if hasattr(feats, "regions_run"):
        out["regions_per_frame"] = feats.regions_run / n
        out["region_kpx_per_frame"] = feats.region_px / n / 1000.0
    if seq.has_groundtruth and not seq.absent[0]:
        out.update(summarize(run.boxes[:, 0], seq.boxes[:n], seq.absent[:n]))
    return out


def _print_table(result: dict, indent: str = "") -> None:
    for k, v in result.items():
        if isinstance(v, dict) and k == "runs":
            for name, r in v.items():
                print(f"{indent}--- run {name}")
                _print_table(r, indent + "  ")
        elif isinstance(v, dict) and k == "layers":
            for dtype, prof in v.items():
                print(f"{indent}--- conv1-3, {dtype}, batch {prof['batch']}: {prof['wall_ms']:.1f} ms wall, "
                      f"{prof['onednn_ms']:.1f} ms in oneDNN primitives (medians of {prof['repeats']})")
                for row in prof["primitives"]:
                    rate = f" {row['gflop_per_s']:6.0f} GFLOP/s" if "gflop_per_s" in row else ""
                    print(f"{indent}  {row['layer']:>20} {row['impl']:>28} {row['formats']:>24} "
                          f"{row['ms']:8.2f} ms{rate}")
        elif isinstance(v, dict) and k == "online_update":
            for dtype, prof in v.items():
                print(f"{indent}--- one online update, mining {dtype}: {prof['iterations']} iterations on "
                      f"{prof['positives']} positives / {prof['negatives']} negatives, {prof['update_s']:.3f} s "
                      f"(per op, synchronised, ms per iteration; medians of {prof['repeats']})")
                for name, ms in {**prof["ms_per_iteration"], **prof["ms_per_update"]}.items():
                    print(f"{indent}  {name:>52} {ms:8.2f} ms")
        elif isinstance(v, dict) and k == "phases":
            for part, d in v.items():
                print(f"{indent}{'phases ' + part:>20}: " + ", ".join(f"{a} {b:.4f}" for a, b in d.items()))
        else:
            print(f"{indent}{k:>20}: {v}")


def build_parser() -> argparse.ArgumentParser:
    from tools.bench.fast_gap import add_fast_gap_parser
    from tools.bench.pretrain import add_pretrain_parser
    from tools.bench.scale import add_scale_parser

    p = argparse.ArgumentParser(prog="mdnet-bench",
                                description="Benchmarks: the online tracker's speed (track), pretraining's (pretrain), and fast "
                                            "mode's feature error against exact mode (fast-gap), what grows with the "
                                            "number of pretraining domains (scale).")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_track_parser(sub)
    add_pretrain_parser(sub)
    add_fast_gap_parser(sub)
    add_scale_parser(sub)
    return p


def main(args) -> int:
    return args.func(args)


def run(argv=None):
    sys.exit(main(build_parser().parse_args(argv)))


if __name__ == "__main__":
    run()
