"""The online tracker and mdnet-track, end to end on CPU.

Narrow random trunks keep this fast (the tracker's logic does not depend on the widths); one run
uses the full reference config. Real sequences come from ../shared/data (never copied here).
"""
from pathlib import Path

import numpy as np
import pytest

from online import cli
from online.config import load_config
from online.metrics import summarize
from online.network import NetSpec
from online.readers import find_sequences, read_sequence
from online.tracker import MDNetTracker, MultiTracker
from online.tracker_config import TrackerConfig
from online.weights import build_trunk

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

# Small samples/iterations for smoke runs (the full defaults run once, in test_full_default_config).
FAST = ["n_pos_init=50", "n_neg_init=200", "n_bbreg=100", "maxiter_init=5", "maxiter_update=3",
        "n_pos_update=20", "n_neg_update=40", "batch_test=64", "n_samples=64", "batch_neg_cand=256"]
TINY_WIDTHS = "16,32,64,64"
NARROW = NetSpec(conv_channels=(32, 64, 128), fc_width=128)


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    from tools.data.synth import synthesize

    out = tmp_path_factory.mktemp("synth")
    synthesize(out, sequences=2, frames=40, size=(192, 144), seed=0)
    return out


def _read_results(path: Path) -> np.ndarray:
    rows = [line.split(",") for line in path.read_text().splitlines()]
    assert all(len(r) == 4 for r in rows), f"{path}: every line must be x,y,w,h"
    return np.array(rows, dtype=np.float64)


def _cli(tmp_path, paths, *extra, frames=4, widths=TINY_WIDTHS, out="out", seed=0):
    argv = ["--weights", "random:0", "--widths", widths, "--out-dir", str(tmp_path / out), "--frames",
            str(frames), "--seed", str(seed), "--quiet", *[str(p) for p in paths]]
    for o in FAST:
        argv += ["--set", o]
    return cli.main(cli.parse_args(argv + list(extra))), tmp_path / out


def test_cli_tracks_every_real_sequence(tmp_path, capsys):
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real test data missing: {SHARED_DATA}")
    refs = find_sequences(SHARED_DATA)
    assert len(refs) >= 10
    # The dataset root itself: discover() finds every sequence, each is tracked in turn.
    rc, out = _cli(tmp_path, [SHARED_DATA], frames=4)
    assert rc == 0
    printed = capsys.readouterr().out
    for ref in refs:
        seq = read_sequence(ref.path)
        boxes = _read_results(out / f"{seq.name}.txt")
        assert boxes.shape == (4, 4), seq.name
        assert np.all(np.isfinite(boxes)) and np.all(boxes[:, 2:] > 0), seq.name
        np.testing.assert_allclose(boxes[0], seq.boxes[0], atol=0.006)  # first line = the initial box
        assert f"{seq.name}: 4 frames, mean IoU" in printed
    assert (out / "mdnet-track.yaml").is_file()


def test_cli_video_and_image_folder_with_init_and_save_video(tmp_path):
    import cv2

    seq_dir = SHARED_DATA / "OTB" / "Crossing"
    video = tmp_path / "clip.avi"
    frames = sorted((seq_dir / "img").glob("*.jpg"))[:3]
    first = cv2.imread(str(frames[0]))
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10,
                             (first.shape[1], first.shape[0]))
    for f in frames:
        writer.write(cv2.imread(str(f)))
    writer.release()
    rc, out = _cli(tmp_path, [video, seq_dir / "img"], "--init", "205,151,17,50", "--save-video",
                   str(tmp_path / "v.avi"), frames=3)
    assert rc == 0
    for name in ("clip", "img"):
        boxes = _read_results(out / f"{name}.txt")
        assert boxes.shape == (3, 4)
        np.testing.assert_allclose(boxes[0], [205, 151, 17, 50])
    cap = cv2.VideoCapture(str(tmp_path / "v_clip.avi"))
    assert cap.isOpened() and int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 3


def test_same_seed_same_results_other_seed_differs(tmp_path):
    seq = SHARED_DATA / "OTB" / "Couple"
    _, a = _cli(tmp_path, [seq], out="a", frames=4)
    _, b = _cli(tmp_path, [seq], out="b", frames=4)
    _, c = _cli(tmp_path, [seq], out="c", frames=4, seed=1)
    assert (a / "Couple.txt").read_text() == (b / "Couple.txt").read_text()
    assert (a / "Couple.txt").read_text() != (c / "Couple.txt").read_text()


def test_cli_rejects_bad_config_and_widths_with_a_file(tmp_path, capsys):
    seq = SHARED_DATA / "OTB" / "Couple"
    assert cli.main(cli.parse_args(["--weights", "random:0", "--set", "no_such_key=1", str(seq)])) == 2
    assert "valid keys" in capsys.readouterr().err
    assert cli.main(cli.parse_args(["--weights", str(tmp_path / "w.h5"), "--widths", "8,8,8,8", str(seq)])) == 2


@pytest.mark.parametrize("mode", ["exact", "fast"])
def test_tracking_beats_a_trivial_baseline_on_a_synthetic_sequence(synth_dir, mode):
    # Measured (2-core CPU, MKLDNN): random:0 trunk at widths 32,64,128/128 on synth_001 (192x144,
    # seed 0) over 20 frames reaches mean IoU 0.775 (17 of 19 frames successful), while always
    # answering the first box scores 0.104: the target moves. Tracker seeds 1-4 give 0.752-0.801,
    # so the result is not one lucky draw. Fast mode (stride 8), seeds 0/1/2: 0.776/0.753/0.751
    # (exact 0.789/0.809/0.797 in the same measurement; stride 16 was much worse on synth_000's
    # smaller target, 0.22 vs exact 0.62, which is why 8 is the default). A random trunk is a weak
    # feature extractor and other CPUs round differently (which can change which candidates make
    # the top 5), so the test asserts 0.6 and a clear margin over the baseline in both modes; a
    # tracker that does not learn or does not follow the target fails both.
    seq = read_sequence(synth_dir / "synth_001")
    n = 20
    cfg = load_config(TrackerConfig, None, [f"mode={mode}", "n_pos_init=200", "n_neg_init=1000", "n_bbreg=300",
                                            "maxiter_init=30", "batch_test=128", "n_samples=128"])
    trunk, _ = build_trunk("random:0", spec=NARROW)
    tracker = MDNetTracker(trunk, cfg, seed=0)
    tracker.initialize(seq.frame(0), seq.boxes[0])
    out = [seq.boxes[0]] + [tracker.track(seq.frame(i)).box for i in range(1, n)]
    ours = summarize(np.array(out), seq.boxes[:n], seq.absent[:n])
    baseline = summarize(np.tile(seq.boxes[0], (n, 1)), seq.boxes[:n], seq.absent[:n])
    assert ours["mean_iou"] >= 0.6, ours
    assert ours["mean_iou"] >= baseline["mean_iou"] + 0.3, (ours, baseline)
    assert ours["auc"] > baseline["auc"] + 0.3
    assert tracker.net_s > 0
    if mode == "fast":  # one region per frame for the candidates, at most one more for the stored samples
        assert tracker._multi.features.regions_run <= 1 + 2 * (n - 1)


def assert_same_as_tracked_alone(trunk, cfg, seq, boxes, got, seed):
    """Target k of a multi-target run (`got[i-1][k]` for frames 1..) gives the boxes and scores of
    a single-target run with target_index=k (1e-4 px / 1e-4 allows another backend's rounding)."""
    for k in range(len(boxes)):
        single = MDNetTracker(trunk, cfg, seed=seed, target_index=k)
        single.initialize(seq.frame(0), boxes[k])
        for i in range(1, len(got) + 1):
            r = single.track(seq.frame(i))
            m = got[i - 1][k]
            np.testing.assert_allclose(r.box, m.box, atol=1e-4, err_msg=f"target {k} frame {i}")
            assert abs(r.score - m.score) <= 1e-4 and r.success == m.success


def test_multi_target_equals_single_target_and_shares_conv_passes(synth_dir):
    # Tolerance: on the measured CPU backend the conv result of a crop does not depend on where it
    # sits in the batch (bitwise), so boxes and scores are identical; 1e-4 px / 1e-4 leaves room
    # for a backend whose batched convolution rounds differently over this short prefix.
    seq = read_sequence(synth_dir / "synth_000")
    cfg = load_config(TrackerConfig, None, FAST + ["n_samples=32", "n_pos_update=10", "n_neg_update=20",
                                                   "long_interval=2", "n_frames_long=3", "n_frames_short=2"])
    spec = NetSpec(conv_channels=(16, 32, 64), fc_width=64)
    trunk, _ = build_trunk("random:0", spec=spec)
    boxes = np.array([seq.boxes[0], [20.0, 30.0, 40.0, 30.0], [120.0, 80.0, 30.0, 40.0]])
    n = 5

    multi = MultiTracker(trunk, cfg, seed=7)
    calls = []
    convs = multi.features.convs
    multi.features.convs = lambda x: calls.append(x.shape[0]) or convs(x)
    multi.initialize(seq.frame(0), boxes)
    got = []
    for i in range(1, n):
        before = len(calls)
        got.append(multi.track(seq.frame(i)))
        # 3 targets x 32 candidates = 96 crops -> 2 batches of 64 (3 if each target had its own
        # padded pass); the successful targets' 10 + 20 update samples likewise share batches.
        n_ok = sum(r.success for r in got[-1])
        assert len(calls) - before == 2 + int(np.ceil(30 * n_ok / 64)), (i, calls[before:], n_ok)
    assert all(c == 64 for c in calls)  # fixed batch shape, always

    assert_same_as_tracked_alone(trunk, cfg, seq, boxes, got, seed=7)
    # Memory limits: first-frame positives always kept, at most n_frames_long - 1 later frames of
    # positives and n_frames_short frames of negatives.
    for t in multi.targets:
        assert t.pos_first.shape[0] > 0
        assert len(t.pos_mem) <= 2 and len(t.neg_mem) <= 2


def test_full_default_config_short_run(synth_dir):
    # The reference parameters (500/5000 samples, 50 iterations, 1000 bbreg samples, 256
    # candidates) on a narrow trunk for two frames: shapes, padding and the full first frame work.
    seq = read_sequence(synth_dir / "synth_000")
    trunk, _ = build_trunk("random:0", spec=NARROW)
    tracker = MDNetTracker(trunk, TrackerConfig(), seed=0)
    tracker.initialize(seq.frame(0), seq.boxes[0])
    t = tracker._multi.targets[0]
    assert t.pos_first.shape[0] == 500
    assert t.bbreg is not None and t.bbreg.n_train == 1000
    r = tracker.track(seq.frame(1))
    assert r.box.shape == (4,) and np.all(np.isfinite(r.box)) and np.all(r.box[2:] > 0)
    assert np.isfinite(r.score)


def test_reference_config_file_spells_out_the_defaults():
    from online.config import ConfigError

    repo = Path(__file__).resolve().parents[2]
    cfg = load_config(TrackerConfig, repo / "cluster" / "configs" / "tracker.yaml")
    assert cfg == TrackerConfig()
    # DESIGN.md's reference values, spot-checked so a drifting default is caught.
    assert (cfg.n_pos_init, cfg.n_neg_init, cfg.maxiter_init, cfg.lr_init, cfg.lr_update) == (500, 5000, 50, 5e-4, 1e-3)
    assert (cfg.batch_pos, cfg.batch_neg, cfg.batch_neg_cand, cfg.n_samples) == (32, 96, 1024, 256)
    assert (cfg.trans, cfg.scale, cfg.trans_limit, cfg.top_k, cfg.lambda_bbreg) == (0.6, 1.05, 1.5, 5, 1000.0)
    with pytest.raises(ConfigError, match="batch_neg_cand"):
        load_config(TrackerConfig, None, ["batch_neg_cand=10"])


def test_bench_track_reports_timings(capsys):
    import json

    from tools.bench import cli as bench

    argv = ["track", "--weights", "random:0", "--widths", TINY_WIDTHS, "--frames", "3", "--json",
            "--targets", "2"] + [a for o in FAST for a in ("--set", o)]
    assert bench.main(bench.build_parser().parse_args(argv)) == 0  # no --sequence: a synthetic one
    report = json.loads(capsys.readouterr().out)
    for key in ("fps", "first_frame_s", "net_s_per_frame", "total_s_per_frame", "overhead_ratio", "frames",
                "net"):
        assert key in report, key
    assert report["frames"] == 3 and report["net"]["conv_channels"] == [16, 32, 64] and report["net"]["fc_width"] == 64 and report["targets"] == 2
    assert 0 < report["net_s_per_frame"] <= report["total_s_per_frame"]
    assert report["overhead_ratio"] >= 1.0


def _edge_sequence(tmp_path, edge: str, frames: int = 6):
    """An OTB-layout sequence whose target starts half outside the image at `edge` and moves
    slowly inwards; the ground truth is the whole target box, as VOT writes it (past the border)."""
    import cv2

    W, H, w, h = 160, 120, 40, 32
    rng = np.random.default_rng(5)
    background = cv2.GaussianBlur(rng.integers(0, 256, (H, W, 3), dtype=np.uint8), (0, 0), 3)
    pattern = np.zeros((h, w, 3), np.uint8)
    pattern[::8] = (255, 40, 40)
    pattern[:, ::8] = (40, 40, 255)
    pattern[h // 4:3 * h // 4, w // 4:3 * w // 4] = (250, 250, 40)
    start = {"left": (-w / 2, 44.0), "right": (W - w / 2, 44.0), "top": (60.0, -h / 2), "bottom": (60.0, H - h / 2)}[edge]
    step = {"left": (1.5, 0.0), "right": (-1.5, 0.0), "top": (0.0, 1.5), "bottom": (0.0, -1.5)}[edge]
    seq = tmp_path / f"edge_{edge}"
    (seq / "img").mkdir(parents=True)
    gt = []
    for i in range(frames):
        x, y = start[0] + step[0] * i, start[1] + step[1] * i
        canvas = np.zeros((H + 2 * h, W + 2 * w, 3), np.uint8)
        canvas[h:h + H, w:w + W] = background
        xi, yi = int(round(x)) + w, int(round(y)) + h
        canvas[yi:yi + h, xi:xi + w] = pattern
        cv2.imwrite(str(seq / "img" / f"{i + 1:04d}.jpg"), cv2.cvtColor(canvas[h:h + H, w:w + W], cv2.COLOR_RGB2BGR))
        gt.append(f"{round(x)},{round(y)},{w},{h}")
    (seq / "groundtruth_rect.txt").write_text("\n".join(gt) + "\n")
    return seq


@pytest.mark.parametrize("mode", ["exact", "fast"])
@pytest.mark.parametrize("edge", ["left", "right", "top", "bottom"])
def test_target_half_outside_the_first_frame_initialises_and_tracks(tmp_path, edge, mode):
    """MDNet keeps sample centres in the image, boxes may cross the border: a target half out of
    frame gets its 500 positives (the old whole-box clamp raised 'no first-frame pos samples'), the
    candidates reach past the border, and the tracker follows it."""
    from online.track_loop import track_sequence

    seq = read_sequence(_edge_sequence(tmp_path, edge))
    trunk, _ = build_trunk("random:0", spec=NetSpec(conv_channels=(16, 32, 64), fc_width=64))
    cfg = TrackerConfig(mode=mode)  # the reference config: FAST's 5 first-frame iterations are too few here
    tracker = MultiTracker(trunk, cfg, seed=0)
    run = track_sequence(tracker, seq)
    target = tracker.targets[0]
    assert target.pos_first.shape[0] == cfg.n_pos_init  # the IoU band filled completely
    ious = summarize(run.boxes[:, 0], seq.boxes, seq.absent)
    assert ious["mean_iou"] > 0.6, ious
    size = (seq.frame(0).shape[1], seq.frame(0).shape[0])
    cands = target.candidates(size)
    past = {"left": cands[:, 0] < 0, "right": cands[:, 0] + cands[:, 2] > size[0],
            "top": cands[:, 1] < 0, "bottom": cands[:, 1] + cands[:, 3] > size[1]}[edge]
    assert past.any()  # candidates reach past the border


def test_run_file_records_the_mining_precision_that_ran(tmp_path):
    """mdnet-track.yaml names what ran: `mining_dtype: auto` resolved, so it reruns the same anywhere."""
    import mxnet as mx
    import yaml

    from online.trunk_precision import resolve_mining_dtype

    for mode in ("fast", "exact"):
        rc, out = _cli(tmp_path, [SHARED_DATA / "OTB" / "Crossing"], "--mode", mode, frames=2, out=mode)
        assert rc == 0
        written = yaml.safe_load((out / "mdnet-track.yaml").read_text())["config"]
        assert written["mining_dtype"] == resolve_mining_dtype("auto", mode, mx.cpu()) in ("fp32", "bf16")
        assert written["mode"] == mode
        # A valid choice of its own: a config given this value runs exactly that precision.
        assert TrackerConfig(mining_dtype=written["mining_dtype"]).mining_dtype == written["mining_dtype"]
