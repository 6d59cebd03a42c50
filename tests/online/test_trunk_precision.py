"""conv1-3 at bf16 / int8 / fp16 (TrackerConfig.trunk_dtype, online/trunk_precision.py) against fp32.

Real crops from OTB Crossing; the CPU must have AVX512_BF16 and VNNI for the bf16 / int8 tests
(they are skipped, by name, on one without: that machine refuses the options, tested below with
the flags replaced). fp16 runs on a GPU only: its feature test is skipped without one (MXNet 1.9.1's
CPU backend has no float16 convolution, "FP16 gemm on cpu not implemented"); on the CPU the
converted graph's structure is tested, and that running it fails loudly rather than wrongly.
"""
from pathlib import Path

import mxnet as mx
import numpy as np
import pytest

from online import trunk_precision
from online.boxes import iou
from online.config import ConfigError, load_config
from online.features import CropFeatures, RoIFeatures, Timer
from online.network import NetSpec
from online.readers import read_sequence
from online.tracker import MDNetTracker, MultiTracker
from online.tracker_config import TrackerConfig
from online.weights import build_trunk

CROSSING = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "OTB" / "Crossing"
FLAGS = trunk_precision.cpu_flags()


def _needs(dtype):
    need = trunk_precision.REQUIRED_FLAGS[dtype]
    return pytest.mark.skipif(not FLAGS.intersection(need), reason=f"{dtype} needs a CPU with {need}")


GPUS = mx.context.num_gpus()  # 0 on a CPU build of MXNet
NEEDS_GPU = pytest.mark.skipif(GPUS == 0, reason="fp16 runs on a GPU only and none is visible")
LOW = [pytest.param("bf16", marks=_needs("bf16")), pytest.param("int8", marks=_needs("int8")),
       pytest.param("fp16", marks=NEEDS_GPU)]


@pytest.fixture(scope="module")
def crossing():
    return read_sequence(CROSSING)


@pytest.fixture(scope="module")
def vggm_trunk():
    trunk, _ = build_trunk("random:0", spec=NetSpec())  # full VGG-M widths: the shapes that run for real
    return trunk


def _ctx(dtype):
    return mx.gpu(0) if dtype == "fp16" else mx.cpu()


def _jitter(box, n, spread, seed):
    rng = np.random.default_rng(seed)
    boxes = box + rng.normal(0, 1, (n, 4)) * [box[2] * spread, box[3] * spread, box[2] * 0.1, box[3] * 0.1]
    boxes[:, 2:] = np.maximum(boxes[:, 2:], 10)
    return boxes


# Measured (2 loaded cores, AVX512_BF16 + VNNI, MXNet 1.9.1 oneDNN, random:0 VGG-M-width trunk,
# Crossing frame 10, 64 boxes; int8 calibrated on 64 boxes of frame 0): relative L2 error of the
# whole feature batch / worst row, correlation:
#   exact bf16 0.0044 / 0.0049, 0.999986   exact int8 0.0168 / 0.0189, 0.99980
#   fast  bf16 0.0038 / 0.0044, 0.999989   fast  int8 0.0153 / 0.0183, 0.99983
# (ImageNet VGG-M conv weights: int8 0.0153.) bf16 keeps 8 significant bits, so one rounding is
# <= 2^-8 = 0.0039 relative: the bound is ~2x that. int8 is bounded at ~2x its measured error; a
# calibration or scale bug (a wrong range, uint8 vs int8) gives errors of 0.1 and more.
# fp16 (never run here, no GPU): emulated on the CPU (inputs, weights and conv outputs rounded to
# fp16, fp32 accumulation, LRN in fp32) 0.0006 for random:0 on 64 Crossing crops, 0.0012 with the
# trained models/mdnet-vggm-real-cpu.h5; fp16 keeps 11 significant bits (2^-11 = 0.0005 per rounding).
# The bound leaves ~4x for cuDNN's algorithm choice; an fp16 LRN overflowing would give inf / 0.
BOUNDS = {"bf16": (0.01, 0.9999), "int8": (0.04, 0.999), "fp16": (0.005, 0.99999)}


@pytest.mark.parametrize("mode", ["exact", "fast"])
@pytest.mark.parametrize("dtype", LOW)
def test_low_precision_features_match_fp32_on_real_crops(vggm_trunk, crossing, dtype, mode):
    box = crossing.boxes[0]
    calib_boxes = _jitter(box, 64, 1.5, seed=0)  # the "first frame": wide, as first-frame samples are
    boxes = _jitter(crossing.boxes[10], 64, 0.5, seed=1)

    ctx = _ctx(dtype)
    trunk = vggm_trunk if ctx.device_type == "cpu" else build_trunk("random:0", ctx=ctx, spec=NetSpec())[0]

    def features(precision):
        if mode == "exact":
            src = CropFeatures(trunk, 64, ctx, Timer(), precision)
        else:
            src = RoIFeatures(trunk, 1024, ctx, Timer(), 8, precision)
        src(crossing.frame(0), [(calib_boxes, box)])  # int8 calibrates on this first call
        src.new_image()
        out = src(crossing.frame(10), [(boxes, crossing.boxes[10])])[0]
        assert out.dtype == np.float32 and out.shape == (64, trunk.spec.feat_dim)
        return out.asnumpy(), src

    ref, _ = features("fp32")
    got, src = features(dtype)
    assert ("calib_s" in src.timer.parts) == (dtype == "int8")
    max_rel, min_corr = BOUNDS[dtype]
    rows = np.linalg.norm(got - ref, axis=1) / np.linalg.norm(ref, axis=1)
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < max_rel / 1.2 and rows.max() < max_rel, rows
    assert np.corrcoef(got.ravel(), ref.ravel())[0, 1] > min_corr
    assert np.abs(ref).max() > 1.0  # a real signal


# Measured on Crossing, frames 1-5, narrow random:0 trunk (32,64,128/128) with this config: fp32
# tracks (IoU with the ground truth 0.83 0.86 0.47 0.49 0.82) and bf16 and int8 pick the same
# top-5 candidates in every frame (IoU with the fp32 boxes 1.000). At full VGG-M width (maxiter_init
# 20) the boxes differ slightly, IoU >= 0.997. (On OTB Couple the same setup gives bf16 >= 0.999 but
# int8 0.83 and 0.61 on frames 4-5: one swapped top-5 member moves the next search centre and the
# paths part; Crossing's first 4 frames are used, where they do not.) The estimate is the mean of the top 5 of 64
# candidates (gaussian, sd 0.3 x target size): one candidate swapped for another moves it by
# ~1/5 of their distance, ~0.06-0.2 target sizes, IoU ~0.7-0.9 -- the bound allows that once,
# not a lost target; the rest must stay as close as measured.
TRACK = ["n_pos_init=200", "n_neg_init=1000", "n_bbreg=100", "maxiter_init=30", "maxiter_update=3",
         "n_pos_update=20", "n_neg_update=40", "batch_test=64", "n_samples=64", "batch_neg_cand=256"]


def _track(trunk, seq, frames, dtype):
    cfg = load_config(TrackerConfig, None, TRACK + [f"trunk_dtype={dtype}"])
    tracker = MDNetTracker(trunk, cfg, seed=0)
    tracker.initialize(seq.frame(0), seq.boxes[0])
    return np.array([tracker.track(seq.frame(i)).box for i in range(1, frames)])


def test_tracked_boxes_stay_close_to_fp32(crossing):
    trunk, _ = build_trunk("random:0", spec=NetSpec(conv_channels=(32, 64, 128), fc_width=128))
    frames = 5  # 4 tracked
    ref = _track(trunk, crossing, frames, "fp32")
    gt = crossing.boxes[1:frames]
    ref_gt = np.array([iou(a, b)[0] for a, b in zip(ref, gt)])
    assert ref_gt.mean() > 0.5  # fp32 tracks, so the comparison means something
    dtypes = [d for d in ("bf16", "int8") if FLAGS.intersection(trunk_precision.REQUIRED_FLAGS[d])]
    if not dtypes:
        pytest.skip("this CPU runs neither bf16 nor int8")
    for dtype in dtypes:
        got = _track(trunk, crossing, frames, dtype)
        close = np.array([iou(a, b)[0] for a, b in zip(got, ref)])
        assert close.min() > 0.7 and np.sort(close)[1] > 0.9, (dtype, close)
        got_gt = np.array([iou(a, b)[0] for a, b in zip(got, gt)])
        assert got_gt.mean() > ref_gt.mean() - 0.1, (dtype, got_gt, ref_gt)


def test_config_accepts_the_dtypes_and_rejects_others():
    assert TrackerConfig().trunk_dtype == "fp32"  # never a silent change of results
    for d in ("fp32", "bf16", "int8", "fp16"):
        assert load_config(TrackerConfig, None, [f"trunk_dtype={d}"]).trunk_dtype == d
    with pytest.raises(ConfigError, match="trunk_dtype must be one of fp32, bf16, int8, fp16, got 'float16'"):
        load_config(TrackerConfig, None, ["trunk_dtype=float16"])


@pytest.mark.parametrize("dtype,flag", [("bf16", "avx512_bf16"), ("int8", "avx512_vnni")])
def test_a_cpu_without_the_instructions_is_refused(monkeypatch, dtype, flag):
    trunk, _ = build_trunk("random:0", spec=NetSpec(conv_channels=(8, 8, 8), fc_width=8))
    trunk_precision.check_supported(dtype, mx.cpu(), flags={"fpu", flag})
    with pytest.raises(ConfigError, match=f"trunk_dtype={dtype} needs a CPU with {flag}"):
        trunk_precision.check_supported(dtype, mx.cpu(), flags={"fpu", "avx512f"})
    # The tracker asks the real /proc/cpuinfo; make it a CPU without the flag.
    monkeypatch.setattr(trunk_precision, "cpu_flags", lambda path="/proc/cpuinfo": {"fpu", "avx2"})
    for mode in ("exact", "fast"):
        with pytest.raises(ConfigError, match=flag):
            MultiTracker(trunk, TrackerConfig(trunk_dtype=dtype, mode=mode))
    MultiTracker(trunk, TrackerConfig())  # fp32 needs nothing


@pytest.mark.parametrize("dtype", ["bf16", "int8"])
def test_low_precision_on_a_gpu_is_refused_before_touching_it(dtype):
    # No GPU needed: the check runs before anything is placed on the device.
    trunk, _ = build_trunk("random:0", spec=NetSpec(conv_channels=(8, 8, 8), fc_width=8))
    with pytest.raises(ConfigError, match=f"trunk_dtype={dtype} runs on a CPU with oneDNN only, not on gpu"
                                          f"\\(0\\).*use trunk_dtype=fp16 or fp32 on a GPU"):
        MultiTracker(trunk, TrackerConfig(trunk_dtype=dtype), ctx=mx.gpu(0))
    trunk_precision.check_supported("fp32", mx.gpu(0))


@pytest.mark.skipif(not FLAGS.intersection(trunk_precision.REQUIRED_FLAGS["int8"]), reason="int8 needs VNNI")
def test_bench_compares_trunk_dtypes_with_phases_and_layers(capsys):
    import json

    from tools.bench import cli as bench

    small = ["n_pos_init=20", "n_neg_init=60", "n_bbreg=20", "maxiter_init=2", "maxiter_update=2",
             "n_pos_update=10", "n_neg_update=20", "batch_test=32", "n_samples=32", "batch_neg_cand=96", "batch_neg=32"]
    argv = ["track", "--weights", "random:0", "--widths", "8,16,16,16", "--frames", "2", "--json",
            "--trunk-dtype", "fp32,int8", "--repeats", "2", "--profile", "--profile-repeats", "1"]
    argv += [a for o in small for a in ("--set", o)]
    assert bench.main(bench.build_parser().parse_args(argv)) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["runs"]) == {"fp32", "int8"} and report["repeats"] == 2 and report["threads"] >= 1
    assert report["fps_ratios"]["fp32"] == 1.0 and report["fps_ratio_of"] == "int8 / fp32"
    for name, run in report["runs"].items():
        assert run["trunk_dtype"] == name and run["fps"] > 0 and run["first_frame_s"] > 0
        first, frame = run["phases"]["first_frame"], run["phases"]["per_frame"]
        assert first["features_s"] > 0 and first["training_s"] > 0 and frame["candidates_s"] > 0
        assert (first["of_which_calibration_s"] > 0) == (name == "int8")
        assert {"stored_samples_s", "updates_s", "box_regression_s"} <= set(frame)
    layers = report["layers"]
    assert set(layers) == {"fp32", "int8"} and layers["fp32"]["batch"] == 32
    # oneDNN's own per-primitive log (DNNL_VERBOSE in a child process), parsed and named.
    for dtype, prof in layers.items():
        rows = prof["primitives"]
        names = [r["layer"] for r in rows]
        assert [n for n in names if n.startswith("conv")] == ["conv1", "conv2", "conv3"], (dtype, names)
        assert {"lrn1", "lrn2", "pool1", "pool2"} <= set(names), (dtype, names)
        assert all(r["ms"] >= 0 for r in rows) and prof["onednn_ms"] > 0 and prof["wall_ms"] >= prof["onednn_ms"] * 0.5
        convs = [r for r in rows if r["primitive"] == "convolution"]
        # conv1: 32 crops x 2 x 8 out x 51x51 x 3x7x7 in = 0.195 GFLOP
        assert convs[0]["gflop"] == pytest.approx(2 * 32 * 8 * 51 * 51 * 3 * 7 * 7 / 1e9)
    # int8: conv1 stays fp32 (its LRN would need a slow plain-layout round trip); conv2-3 run on u8/s8.
    conv_formats = [r["formats"] for r in layers["int8"]["primitives"] if r["primitive"] == "convolution"]
    assert conv_formats[0].startswith("f32") and all(f.startswith(("u8", "s8")) for f in conv_formats[1:])
    assert all(f.startswith("f32") for r in layers["fp32"]["primitives"] for f in [r["formats"]] if f)
    # And one online update, op by op (one mining dtype here: the config's).
    update = report["online_update"]["fp32"]
    assert update["iterations"] == 2 and update["negatives"] == 20 * 20 and update["update_s"] > 0
    assert {"forward (train graph)", "backward", "SGD step", "mining: score 96 negatives (fp32), to host"} <= set(
        update["ms_per_iteration"])
    with pytest.raises(SystemExit, match="--trunk-dtype 'fp32,fp64'"):
        bench.main(bench.build_parser().parse_args(["track", "--trunk-dtype", "fp32,fp64"]))


def test_fp16_is_for_a_gpu_and_decided_without_touching_it():
    # mx.gpu(N) is only a context object here (no GPU, CPU build): check_supported must not use it.
    for n in (0, 7):
        trunk_precision.check_supported("fp16", mx.gpu(n))
    with pytest.raises(ConfigError, match=r"trunk_dtype=fp16 runs on a GPU only \(cuDNN\), not on cpu\(0\): "
                                          r"MXNet's CPU backend has no float16 convolution"):
        trunk_precision.check_supported("fp16", mx.cpu(), flags={"avx512_bf16", "avx512_vnni", "f16c"})
    trunk, _ = build_trunk("random:0", spec=NetSpec(conv_channels=(8, 8, 8), fc_width=8))
    for mode in ("exact", "fast"):
        with pytest.raises(ConfigError, match="trunk_dtype=fp16 runs on a GPU only"):
            MultiTracker(trunk, TrackerConfig(trunk_dtype="fp16", mode=mode))


def _graph(sym):
    """[(op, name, output dtype, input names)] of `sym` with its AMP casts, dtypes inferred from
    float32 data."""
    import json

    nodes = json.loads(sym.tojson(remove_amp_cast=False))["nodes"]
    internals = sym.get_internals()
    _, out_types, _ = internals.infer_type(data="float32")
    from mxnet.contrib.amp.amp import bfloat16

    names = {np.dtype(bfloat16): "bfloat16"}  # numpy calls MXNet's bfloat16 "void16"
    dtype = {k: names.get(np.dtype(t), np.dtype(t).name) for k, t in zip(internals.list_outputs(), out_types)}
    out = []
    for node in nodes:
        if node["op"] == "null":
            continue
        key = node["name"] + "_output"
        out.append((node["op"], node["name"], dtype[key],
                    [nodes[i[0]]["name"] for i in node["inputs"]]))
    return out


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_fp16_graph_has_convs_in_fp16_and_lrn_pooling_output_in_fp32(mode):
    from mxnet import gluon

    from online.network import FeatureMap

    trunk, _ = build_trunk("random:0", spec=NetSpec(conv_channels=(8, 16, 16), fc_width=8))
    block = trunk.convs if mode == "exact" else FeatureMap(trunk.convs, 8)
    sym, params = trunk_precision.amp_symbol(block, "fp16")
    graph = _graph(sym)
    by_name = {name: (op, dt, ins) for op, name, dt, ins in graph}
    convs = [g for g in graph if g[0] == "Convolution"]
    assert len(convs) == 3 and all(dt == "float16" for _, _, dt, _ in convs)
    for op, name, dt, ins in convs:
        # Each conv reads fp16: its data through an amp_cast to float16, weights stored in fp16.
        assert by_name[ins[0]][:2] == ("amp_cast", "float16"), (name, ins)
        for w in ins[1:]:
            assert params[w].dtype == np.float16, w
    lrns = [g for g in graph if g[0] == "LRN"]
    assert len(lrns) == 2
    for op, name, dt, ins in lrns:
        # LRN in fp32: a cast back from the fp16 ReLU before it (its sum of squares overflows fp16).
        assert dt == "float32" and by_name[ins[0]][:2] == ("amp_cast", "float32"), (name, ins)
    assert all(dt == "float32" for op, _, dt, _ in graph if op == "Pooling")
    assert graph[-1][0] == "Cast" and graph[-1][2] == "float32"
    assert sum(op == "amp_cast" for op, *_ in graph) == 5  # 3 to fp16 (one per conv), 2 to fp32 (LRNs)
    assert sym.infer_type(data="float32")[1] == [np.float32]
    # The block the tracker gets: weights in fp16, biases too, made on any context (not run here).
    net = trunk_precision.convert(block, "fp16", mx.cpu(), static_shape=mode == "exact")
    assert isinstance(net, gluon.SymbolBlock)
    dtypes = {name: p.dtype for name, p in net.collect_params().items()}
    assert len(dtypes) == 6 and set(dtypes.values()) == {np.float16}, dtypes
    # bf16 goes through the same function: conv1 kept in fp32 (oneDNN: see _first_conv), conv2-3
    # in bf16, LRN in fp32. fp16 (cuDNN) converts all three.
    bf16 = _graph(trunk_precision.amp_symbol(block, "bf16")[0])
    assert [dt for op, _, dt, _ in bf16 if op == "Convolution"] == ["float32", "bfloat16", "bfloat16"]
    assert [dt for op, _, dt, _ in bf16 if op == "LRN"] == ["float32"] * 2


def test_fp16_trunk_on_the_cpu_fails_loudly_not_wrongly():
    """MXNet 1.9.1's CPU backend has no float16 convolution: running the fp16 graph on mx.cpu()
    raises "FP16 gemm on cpu not implemented" (which is why check_supported refuses fp16 there).
    Should a later MXNet run it, its features must match fp32 (the bound of the GPU test)."""
    trunk, _ = build_trunk("random:0", spec=NetSpec(conv_channels=(8, 16, 16), fc_width=8))
    x = mx.nd.array(np.random.default_rng(0).integers(0, 256, (2, 3, 107, 107)).astype(np.float32))
    ref = trunk.convs(x).asnumpy()
    net = trunk_precision.convert(trunk.convs, "fp16", mx.cpu())
    try:
        got = net(x).asnumpy()
    except mx.base.MXNetError as e:
        assert "FP16 gemm on cpu not implemented" in str(e)
        return
    assert got.dtype == np.float32
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < BOUNDS["fp16"][0]


def test_cli_device_and_dtype_mismatches_are_config_errors(tmp_path, capsys):
    """--gpu N beyond the visible GPUs (or negative) and fp16 without --gpu stop before tracking,
    with one line each, not MXNet's traceback from the first array put on a missing device."""
    from online.cli import main as track_main
    from online.cli import parse_args
    from tools.bench import cli as bench

    missing = str(GPUS)  # an index one past the last visible GPU (0 on a CPU build)
    base = ["--weights", "random:0", "--widths", "4,8,8,16", "--quiet", "--out-dir", str(tmp_path / "r"), "x"]
    for gpu in (missing, "-1"):
        assert track_main(parse_args(base + ["--gpu", gpu])) == 2
        err = capsys.readouterr().err
        assert f"mdnet-track: --gpu {gpu}: only {GPUS} GPU(s) visible" in err and "Traceback" not in err
        with pytest.raises(SystemExit, match=rf"--gpu {gpu}: only {GPUS} GPU\(s\) visible"):
            bench.main(bench.build_parser().parse_args(["track", "--frames", "2", "--gpu", gpu]))
    assert track_main(parse_args(base + ["--set", "trunk_dtype=fp16"])) == 2
    assert "config error: TrackerConfig.trunk_dtype=fp16 runs on a GPU only" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="trunk_dtype=fp16 runs on a GPU only"):
        bench.main(bench.build_parser().parse_args(["track", "--frames", "2", "--trunk-dtype", "fp32,fp16"]))
