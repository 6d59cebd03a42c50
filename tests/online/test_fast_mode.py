"""Fast mode: region geometry, RoI features against exact crops, and the tracker in fast mode."""
from pathlib import Path

import cv2
import mxnet as mx
import numpy as np
import pytest

from online import roi
from online.config import load_config
from online.crops import crop_regions
from online.network import FeatureMap, NetSpec, shared_params
from online.readers import read_sequence
from online.tracker import MDNetTracker, MultiTracker
from online.tracker_config import TrackerConfig
from online.weights import build_trunk, load_weights, save_weights
from tests.online.test_tracker import FAST, assert_same_as_tracked_alone

SPEC = NetSpec()  # the geometry is the same at every width; the full net is used where it is cheap


def _image(seed=0, size=(240, 320)):
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (5, 5), 2)  # some spatial correlation, like a photo


def _pooled_and_exact(trunk, image, boxes, scale, stride=8):
    spec = trunk.spec
    region = roi.cover(boxes, scale, spec, 4096, stride=stride)
    pix = roi.warp_region(image, region, spec.mean)
    fmap = FeatureMap(trunk.convs, stride)(mx.nd.array(pix.transpose(2, 0, 1)[None].astype(np.float32)))
    pooled = roi.pool(mx.nd, fmap, mx.nd.array(roi.rois(boxes, region, spec)), spec).asnumpy()
    exact = trunk.convs(mx.nd.array(crop_regions(image, boxes, spec.input_size, spec.padding))).asnumpy()
    return pooled, exact


@pytest.mark.parametrize("stride", [16, 8])
@pytest.mark.parametrize("scale", [(1.0, 1.0), (2.0, 1.0), (0.5, 2.0)])
def test_roi_features_of_a_box_on_the_grid_equal_its_crop_features(scale, stride):
    # A box whose crop starts on the region lattice (crop left edge at a multiple of `stride`
    # region px) and spans exactly 75 region px: both paths sample the same image positions, and the
    # convs have no padding, so the crop's 3x3 conv3 cells are cells of the region's map (stride 8:
    # the dense map, pool2 stride 1 + conv3 dilated 2, holds the stride-16 values at every 8 px).
    # Measured here: max abs difference 0.0 (bitwise equal, MKLDNN, full VGG-M width) for both
    # strides; 1e-4 relative allows another backend's convolution blocking to round differently.
    trunk, _ = build_trunk("random:0", spec=SPEC)
    image = _image()
    sx, sy = scale
    boxes = []
    for gx, gy in [(2, 1), (5, 3), (0, 0), (7, 2)]:
        # crop left edge = box centre - 53.5 crop px; on the lattice at scaled coordinate stride g.
        cx, cy = (stride * gx + 53.5) * sx, (stride * gy + 53.5) * sy
        boxes.append([cx - 37.5 * sx, cy - 37.5 * sy, 75 * sx, 75 * sy])
    boxes = np.array(boxes)
    assert roi.region_scale(boxes[0], SPEC) == pytest.approx(scale)
    pooled, exact = _pooled_and_exact(trunk, image, boxes, roi.region_scale(boxes[0], SPEC), stride)
    assert np.abs(exact).max() > 1.0  # a real signal, not all zeros
    np.testing.assert_allclose(pooled, exact, atol=1e-4 * np.abs(exact).max(), rtol=0)


def test_roi_features_off_the_grid_stay_close_to_crop_features():
    # Off the lattice the pooled values are bilinear blends of neighbouring cells 16 px apart, so
    # they differ from exact crops. Measured on a real frame (OTB Crossing frame 1, 17x50 target,
    # VGG-M-width random trunk, 64 boxes jittered around the target, stride-8 map): relative L2
    # error median 0.085, max 0.22 (stride 16: 0.10, 0.26); exact features of two different
    # jittered boxes differ by 0.28 (median), and pooling each box one box-width off the right place
    # gives 0.18. The test bounds the error
    # and requires the misplaced pooling to be clearly worse, so a geometry error fails.
    seq = read_sequence(Path(__file__).resolve().parents[2].parent / "shared" / "data" / "OTB" / "Crossing")
    trunk, _ = build_trunk("random:0", spec=SPEC)
    image = seq.frame(0)
    rng = np.random.default_rng(0)
    box = seq.boxes[0]
    boxes = box + rng.normal(0, 1, (64, 4)) * [box[2] * 0.2, box[3] * 0.2, box[2] * 0.05, box[3] * 0.05]
    scale = roi.region_scale(box, SPEC)
    pooled, exact = _pooled_and_exact(trunk, image, boxes, scale)
    rel = np.linalg.norm(pooled - exact, axis=1) / np.linalg.norm(exact, axis=1)
    assert np.median(rel) < 0.15 and rel.max() < 0.35, rel
    misplaced, _ = _pooled_and_exact(trunk, image, boxes + [box[2], 0, 0, 0], scale)
    rel_off = np.linalg.norm(misplaced - exact, axis=1) / np.linalg.norm(exact, axis=1)
    assert np.median(rel_off) > 1.5 * np.median(rel), (np.median(rel_off), np.median(rel))


def test_region_covers_every_sample_point_with_its_receptive_field():
    rng = np.random.default_rng(1)
    box = np.array([100.0, 60.0, 40.0, 80.0])
    scale = roi.region_scale(box, SPEC)
    boxes = box + rng.normal(0, 30, (200, 4)) * [1, 1, 0.2, 0.2]
    region = roi.cover(boxes, scale, SPEC, 4096)
    assert region.x0 % roi.STRIDE == 0 and region.y0 % roi.STRIDE == 0
    assert (region.width - roi.FIELD) % roi.STRIDE == 0 and (region.height - roi.FIELD) % roi.STRIDE == 0
    r = roi.rois(boxes, region, SPEC)
    cw, ch = region.cells
    # Sample points: bin centres of the 3x3 grid; all inside the map's cell range.
    for lo, hi, n in ((r[:, 1], r[:, 3], cw), (r[:, 2], r[:, 4], ch)):
        pitch = (hi - lo) / 3
        first, last = lo + pitch / 2, hi - pitch / 2
        assert first.min() >= 0 and last.max() <= n - 1
    # Capped: the region never exceeds max_side and stays centred on the anchor.
    capped = roi.cover(boxes, scale, SPEC, 200, anchor=box)
    assert capped.width <= 200 and capped.height <= 200
    cu = (box[0] + box[2] / 2) / scale[0]
    assert capped.x0 <= cu <= capped.x0 + capped.width
    # Bucketing grows to whole blocks of 4 cells, keeps the lattice and the old extent.
    b = region.bucketed(4, 4096)
    assert b.cells[0] % 4 == 0 and b.cells[1] % 4 == 0 and b.contains(region) and b.x0 % roi.STRIDE == 0


def test_plan_shares_a_region_between_overlapping_targets_of_one_scale_only():
    a = np.array([50.0, 50.0, 40.0, 40.0])
    b = a + [30, 10, 0, 0]  # same size, overlapping surroundings
    c = np.array([50.0, 50.0, 100.0, 40.0])  # another scale
    far = a + [3000, 0, 0, 0]  # same scale, far away
    regions, owner = roi.plan([(a[None], a), (b[None], b), (c[None], c), (far[None], far)], SPEC, 1024)
    assert owner[0] == owner[1] and len(set(owner)) == 3
    shared = regions[owner[0]]
    for box in (a, b):
        assert shared.contains(roi.cover(box[None], roi.region_scale(box, SPEC), SPEC, 1024))


def test_window_keeps_whole_image_negatives_reachable():
    box = np.array([600.0, 400.0, 10.0, 10.0])  # tiny target in a large frame
    x, y, w, h = roi.window(box, SPEC, 1024, (1280, 720))
    assert 0 <= x and 0 <= y and x + w <= 1280 and y + h <= 720
    assert x < box[0] and x + w > box[0] + box[2]
    assert w < 1280  # the whole frame at the target's scale (~7.5x) would be ~9600 px wide
    big = roi.window(np.array([100.0, 100.0, 200.0, 150.0]), SPEC, 1024, (640, 480))
    assert big == (0.0, 0.0, 640.0, 480.0)  # fits: the whole image


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    from tools.data.synth import synthesize

    out = tmp_path_factory.mktemp("synth_fast")
    synthesize(out, sequences=2, frames=40, size=(192, 144), seed=0)  # as test_tracker
    return out


def test_fast_multi_target_equals_single_target(synth_dir):
    # Targets at one scale share a region where they overlap; lattice-aligned regions make the
    # shared map's cells the cells each target's own map would have. Measured: identical boxes and
    # scores (bitwise) on MKLDNN; 1e-4 allows a backend whose convolution rounds differently for
    # another input size.
    seq = read_sequence(synth_dir / "synth_000")
    cfg = load_config(TrackerConfig, None, FAST + ["mode=fast", "n_samples=32", "n_pos_update=10",
                                                   "n_neg_update=20", "long_interval=2"])
    trunk, _ = build_trunk("random:0", spec=NetSpec(conv_channels=(16, 32, 64), fc_width=64))
    b0 = seq.boxes[0]
    boxes = np.array([b0, b0 + [12, 6, 0, 0], [120.0, 80.0, 30.0, 40.0]])  # two share a scale
    n = 5
    multi = MultiTracker(trunk, cfg, seed=7)
    multi.initialize(seq.frame(0), boxes)
    first_regions = multi.features.regions_run
    got = [multi.track(seq.frame(i)) for i in range(1, n)]
    assert first_regions < len(boxes)  # the two same-size targets shared the first frame's map
    assert_same_as_tracked_alone(trunk, cfg, seq, boxes, got, seed=7)


def test_an_exact_mode_weight_file_runs_in_fast_mode(tmp_path, synth_dir):
    # Fast mode changes no layer: the file an exact-mode pretraining exports loads unchanged.
    trunk, _ = build_trunk("random:3", spec=NetSpec(conv_channels=(16, 32, 64), fc_width=64))
    path = tmp_path / "w.h5"
    save_weights(path, shared_params(trunk), trunk.spec, provenance={"source": "test"})
    assert load_weights(path).spec == trunk.spec
    loaded, _ = build_trunk(str(path))
    seq = read_sequence(synth_dir / "synth_000")
    cfg = load_config(TrackerConfig, None, FAST + ["mode=fast"])
    tracker = MDNetTracker(loaded, cfg, seed=0)
    tracker.initialize(seq.frame(0), seq.boxes[0])
    r = tracker.track(seq.frame(1))
    assert np.all(np.isfinite(r.box)) and r.box[2] > 0


def test_fast_mode_on_a_tiny_target_in_a_large_frame_stays_bounded():
    # A 12x12 px target in a 1280x720 frame: at the target's 75 px scale the frame would be
    # 8000x4500 px. Regions are capped at max_region and whole-image negatives come from the
    # window around the target, so the first frame stays small and its boxes finite.
    image = _image(3, (720, 1280))
    cfg = load_config(TrackerConfig, None, FAST + ["mode=fast", "max_region=512"])
    trunk, _ = build_trunk("random:0", spec=NetSpec(conv_channels=(16, 32, 64), fc_width=64))
    tracker = MDNetTracker(trunk, cfg, seed=0)
    box = np.array([640.0, 300.0, 12.0, 12.0])
    tracker.initialize(image, box)
    feats = tracker._multi.features
    assert feats.region_px <= 512 * 512 * feats.regions_run
    r = tracker.track(image)
    assert np.all(np.isfinite(r.box))
    # Whole-image negatives lie in the window around the target.
    x, y, w, h = roi.window(box, trunk.spec, 512, (1280, 720))
    assert w < 1280 and h < 720


def test_bench_track_compares_modes_and_cli_runs_fast_mode(tmp_path, capsys):
    import json

    from online import cli
    from tools.bench import cli as bench
    from tests.online.test_tracker import TINY_WIDTHS

    argv = ["track", "--weights", "random:0", "--widths", TINY_WIDTHS, "--frames", "3", "--json",
            "--mode", "exact,fast"] + [a for o in FAST for a in ("--set", o)]
    assert bench.main(bench.build_parser().parse_args(argv)) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["runs"]) == {"exact", "fast"} and report["fps_ratio_of"] == "fast / exact"
    assert report["fps_ratio"] == pytest.approx(report["runs"]["fast"]["fps"] / report["runs"]["exact"]["fps"])
    assert report["runs"]["fast"]["regions_per_frame"] >= 1 and "regions_per_frame" not in report["runs"]["exact"]
    assert report["threads"] >= 1
    with pytest.raises(SystemExit):
        bench.main(bench.build_parser().parse_args(["track", "--mode", "fast,slow"]))

    seq = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "OTB" / "Couple"
    args = ["--weights", "random:0", "--widths", TINY_WIDTHS, "--frames", "3", "--quiet", "--mode", "fast",
            "--out-dir", str(tmp_path / "out"), str(seq)] + [a for o in FAST for a in ("--set", o)]
    assert cli.main(cli.parse_args(args)) == 0
    import yaml
    info = yaml.safe_load((tmp_path / "out" / "mdnet-track.yaml").read_text())
    assert info["config"]["mode"] == "fast" and info["threads"] >= 1
    assert len((tmp_path / "out" / "Couple.txt").read_text().splitlines()) == 3


def test_bench_fast_gap_reports_feature_error_by_factor(capsys):
    """`mdnet-bench fast-gap`: fast vs exact features on real first frames, by box kind, scale, lattice offset."""
    import json

    from tools.bench import cli as bench

    repo = Path(__file__).resolve().parents[2]
    crossing = repo.parent / "shared" / "data" / "OTB" / "Crossing"
    step = roi.SCALE_STEP
    argv = ["fast-gap", str(crossing), "--weights", str(repo / "models" / "mdnet-vggm-real-cpu.h5"), "--boxes", "12", "--json",
            "--no-scale-rounding"]
    assert bench.main(bench.build_parser().parse_args(argv)) == 0
    assert roi.SCALE_STEP == step  # the switch is undone
    out = json.loads(capsys.readouterr().out)
    assert out["sequences"] == 1 and out["stride"] == 8 and out["scale_rounding"] is False
    assert set(out["by_kind"]) == {"candidates", "positives", "update negatives"}
    for v in out["by_kind"].values():
        # Pooled features are close to the crops' but not equal (interpolation between map cells).
        assert v["boxes"] == 12 and 0 < v["fc5_error"] < 0.5 and 0 < v["conv3_error"] < 1.0
    assert sum(v["boxes"] for v in out["by_scale"].values()) == 36
    assert list(out["candidates_by_sequence"]) == ["Crossing"]


def test_frozen_fc4_and_stored_samples_from_the_candidates_map(synth_dir, monkeypatch):
    # online_fc4 frozen: targets store fc4 outputs (fc_width columns) and the trunk's fc4 is never
    # trained; stored_region=candidates: one conv pass per tracked frame (the candidates' map), the
    # stored samples pooled from it. (Multi = single target holds for these options as for the
    # defaults where no target's region is shared on the first frame: test_fast_multi_target_*.)
    from online import tracker as tracker_module
    estimate = tracker_module._Target.estimate

    def succeed(self, *a, **kw):  # a random trunk scores every frame a failure: store on each one
        r = estimate(self, *a, **kw)
        r.success = True
        return r
    monkeypatch.setattr(tracker_module._Target, "estimate", succeed)
    seq = read_sequence(synth_dir / "synth_000")
    spec = NetSpec(conv_channels=(16, 32, 64), fc_width=64)
    trunk, _ = build_trunk("random:0", spec=spec)
    fc4 = trunk.fcs.fc4.weight.data().asnumpy().copy()
    cfg = load_config(TrackerConfig, None, FAST + ["mode=fast", "n_samples=32", "n_pos_update=10",
                                                   "n_neg_update=20", "long_interval=2", "online_fc4=frozen",
                                                   "stored_region=candidates"])
    boxes = np.array([seq.boxes[0], seq.boxes[0] + [12, 6, 0, 0]])
    multi = MultiTracker(trunk, cfg, seed=3)
    multi.initialize(seq.frame(0), boxes)
    feats = multi.features
    reused = []

    def call(image, groups, **kw):  # the stored samples' call runs no conv pass
        before = feats.regions_run
        out = type(feats).__call__(feats, image, groups, **kw)
        if kw.get("reuse"):
            reused.append(feats.regions_run - before)
        return out
    multi.features = call
    multi.features.new_image = feats.new_image
    multi.features.covered = feats.covered
    got = [multi.track(seq.frame(i)) for i in range(1, 5)]
    assert reused and not any(reused)  # (a frame whose scale changed keeps nothing: no call)
    for t in multi.targets:
        assert t.pos_first.shape[1] == spec.fc_width and all(m.shape[1] == spec.fc_width for m in t.neg_mem)
        assert "fc4" not in t.train_head.online_layers()
    for k, t in enumerate(multi.targets):  # a successful frame stores what the candidates' map holds
        assert len(t.pos_mem) <= 4 and all(0 < len(m) <= cfg.n_neg_update for m in list(t.neg_mem)[1:])
    assert sum(len(t.pos_mem) for t in multi.targets) >= len(reused)
    np.testing.assert_array_equal(trunk.fcs.fc4.weight.data().asnumpy(), fc4)


def test_covered_boxes_pool_the_features_of_their_own_region():
    # A box `covered` by a map of this image gives, pooled from that map, the features its own
    # region would give (VGG-M's valid convolutions and the lattice make the cells the same).
    from online.features import RoIFeatures, Timer
    trunk, _ = build_trunk("random:0", spec=NetSpec(conv_channels=(16, 32, 64), fc_width=64))
    rs = np.random.RandomState(0)
    image = rs.randint(0, 255, (200, 260, 3)).astype(np.uint8)
    anchor = np.array([100.0, 80.0, 40.0, 50.0])
    cands = anchor + np.c_[rs.uniform(-15, 15, (40, 2)), np.zeros((40, 2))]
    near = anchor + np.c_[rs.uniform(-60, 60, (60, 2)), np.zeros((60, 2))]
    shared = RoIFeatures(trunk, 1024, mx.cpu(), Timer())
    shared.new_image()
    shared(image, [(cands, anchor)])
    keep = shared.covered(near, anchor)
    assert 0 < keep.sum() < len(keep)
    got = shared(image, [(near[keep], anchor)], reuse=True)[0]
    assert shared.regions_run == 1
    alone = RoIFeatures(trunk, 1024, mx.cpu(), Timer())
    alone.new_image()
    want = alone(image, [(near[keep], anchor)])[0]
    np.testing.assert_allclose(got.asnumpy(), want.asnumpy(), rtol=1e-4, atol=1e-5)


def test_fc4_trained_on_the_first_frame_then_frozen(synth_dir):
    # online_fc4=first (fast mode's default): the first frame trains fc4-fc6 on conv features; then
    # fc4 is frozen as trained (not the file's), the memory holds its fc_width outputs and updates
    # train fc5-fc6 only; exact mode resolves `auto` to MDNet's rules.
    seq = read_sequence(synth_dir / "synth_000")
    spec = NetSpec(conv_channels=(16, 32, 64), fc_width=64)
    trunk, _ = build_trunk("random:0", spec=spec)
    cfg = load_config(TrackerConfig, None, FAST + ["mode=fast", "n_samples=32", "long_interval=2"])
    assert (cfg.online_fc4, cfg.stored_region) == ("auto", "auto")
    assert cfg.resolved().online_fc4 == "first" and cfg.resolved().stored_region == "candidates"
    exact = TrackerConfig().resolved()
    assert (exact.online_fc4, exact.stored_region) == ("train", "own")
    tracker = MDNetTracker(trunk, cfg, seed=1)
    assert tracker.config.online_fc4 == "first"
    tracker.initialize(seq.frame(0), seq.boxes[0])
    t = tracker._multi.targets[0]

    def fc4_weight():  # float32 (the copy is bf16 where mining_dtype resolved to bf16)
        return mx.nd.amp_cast(t.fc4.weight, dtype="float32").asnumpy()
    frozen = fc4_weight().copy()
    assert not np.allclose(frozen, trunk.fcs.fc4.weight.data().asnumpy(), rtol=0, atol=1e-6)  # trained on frame 0
    assert set(t.train_head.online_layers()) == {"fc5"} and t.pos_first.shape[1] == spec.fc_width
    fc5 = t.train_head.fc5.weight.data().asnumpy().copy()
    for i in range(1, 6):
        tracker.track(seq.frame(i))
    np.testing.assert_array_equal(fc4_weight(), frozen)
    assert not np.array_equal(t.train_head.fc5.weight.data().asnumpy(), fc5)  # updates ran (fc5-fc6)


def test_bench_track_compares_variants_against_csrt(capsys):
    # --variant: named override sets run round-robin like modes; --csrt: OpenCV's CSRT on the same
    # frames in every round, and each run's fps over CSRT's; the CPU is named beside the figures.
    import json

    from tools.bench import cli as bench
    from tests.online.test_tracker import TINY_WIDTHS

    argv = ["track", "--weights", "random:0", "--widths", TINY_WIDTHS, "--frames", "3", "--json", "--mode", "fast",
            "--variant", "mdnet:online_fc4=train,stored_region=own", "--variant", "default:", "--csrt",
            "--repeats", "2"] + [a for o in FAST for a in ("--set", o)]
    assert bench.main(bench.build_parser().parse_args(argv)) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["runs"]) == {"mdnet", "default"} and report["fps_ratios"]["mdnet"] == 1.0
    assert report["variants"] == {"mdnet": ["online_fc4=train", "stored_region=own"], "default": []}
    assert report["csrt_fps"] > 0 and set(report["fps_over_csrt"]) == {"mdnet", "default"}
    assert report["cpu"] and len(report["load_average"]) == 3
    assert report["runs"]["mdnet"]["regions_per_frame"] > report["runs"]["default"]["regions_per_frame"] - 1e-9
    with pytest.raises(SystemExit):
        bench.main(bench.build_parser().parse_args(["track", "--variant", "nocolon"]))
