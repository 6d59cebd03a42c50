"""The VOT supervised protocol of online/track_loop.py: its bookkeeping on a scripted fake tracker
(failures, the 5-frame skip, re-initialisation from the ground truth, absent ground truth,
burn-in, the result file), then one real `mdnet-track --protocol vot` run read by `mdnet-eval`."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from online import cli
from online.metrics import VOT_FAILURE, VOT_INIT, VOT_SKIPPED, VOT_TRACKED, vot_accuracy_mask, vot_scores
from online.sequence import FrameSource, Sequence
from online.track_loop import PROTOCOLS, result_text, time_text, track_sequence
from tools.eval.cli import main as eval_main, parse_args as eval_args
from tools.eval.scoring import evaluate_vot, read_supervised

G = [10.0, 10.0, 20.0, 20.0]  # the ground truth in every frame


class IndexFrames(FrameSource):
    """Frame i is a 40x40 image filled with the value i: the fake tracker reads its frame number."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return np.full((40, 40, 3), i, np.uint8)


class ScriptedTracker:
    """initialize / track / net_s / timer, returning the box planned for each frame (default G)."""

    def __init__(self, plan: dict):
        self.plan = plan
        self.inits, self.tracks = [], []
        self.net_s = 0.0
        self.timer = SimpleNamespace(snapshot=lambda: {"net_s": 0.0})

    def initialize(self, image, boxes):
        self.inits.append((int(image[0, 0, 0]), np.asarray(boxes).tolist()))

    def track(self, image):
        i = int(image[0, 0, 0])
        self.tracks.append(i)
        return [SimpleNamespace(box=np.asarray(self.plan.get(i, G), float), score=1.0, success=True)]


def shifted(d):  # IoU with G: (20 - d) / (20 + d)
    return [10.0 + d, 10.0, 20.0, 20.0]


FAR = [60.0, 60.0, 5.0, 5.0]  # no overlap with G


def scripted_sequence(n=30, absent=()):
    boxes = np.array([G] * n)
    flags = np.zeros(n, bool)
    flags[list(absent)] = True
    return Sequence(name="fake", frames=IndexFrames(n), boxes=boxes, absent=flags)


def test_failure_skip_reinit_and_absent_ground_truth():
    # Frame 3 fails -> 4..7 skipped, re-init at 8. Frame 20: far box but absent ground truth: no
    # failure. Frame 22 fails -> re-init due at 27, whose ground truth is absent -> at 28.
    seq = scripted_sequence(30, absent=(20, 27))
    plan = {3: FAR, 18: shifted(5), 20: FAR, 21: shifted(10), 22: FAR}
    tracker = ScriptedTracker(plan)
    run = track_sequence(tracker, seq, protocol="vot")
    S, I, F, T = VOT_SKIPPED, VOT_INIT, VOT_FAILURE, VOT_TRACKED
    expect = [I, T, T, F, S, S, S, S, I] + [T] * 13 + [F, S, S, S, S, S, I, T]
    assert run.status.tolist() == expect
    assert [f for f, _ in tracker.inits] == [0, 8, 28]
    assert all(b == [G] for _, b in tracker.inits)  # every (re)initialisation from the ground truth
    assert tracker.tracks == [1, 2, 3] + list(range(9, 23)) + [29]  # no tracking on skipped frames
    assert np.isnan(run.boxes[4:8]).all() and np.isnan(run.boxes[23:28]).all()
    assert int(run.tracked.sum()) == len(tracker.tracks) == 18
    # Accuracy: burn-in from 0, 8, 28 (10 frames each, the init frame the first: 29 is in it too)
    # leaves 18..21; 20 has absent ground truth. IoU: 18 -> 15/25, 19 -> 1, 21 -> 10/30.
    s = run.summary(seq)
    assert s["frames_scored"] == 3
    assert s["accuracy"] == pytest.approx((0.6 + 1 + 1 / 3) / 3)
    assert s["failures"] == 2 and s["robustness"] == pytest.approx(100 * 2 / 30) and s["inits"] == 3
    assert s["tracked_frames"] == 18
    # The result file: VOT's supervised format, read back by mdnet-eval to the same numbers.
    lines = result_text(run).splitlines()
    box = "10.00,10.00,20.00,20.00"
    assert len(lines) == 30 and lines[:5] == ["1", box, box, "2", "0"]
    assert lines[8] == "1" and lines[22] == "2" and lines[27] == "0" and lines[28] == "1"
    assert len(time_text(run).splitlines()) == 30


def test_evaluation_reads_the_file_back(tmp_path):
    seq = scripted_sequence(30, absent=(20, 27))
    run = track_sequence(ScriptedTracker({3: FAR, 18: shifted(5), 21: shifted(10), 22: FAR}), seq,
                         protocol="vot")
    d = tmp_path / "Fake"
    d.mkdir()
    (d / "fake.txt").write_text(result_text(run))
    (d / "fake_time.txt").write_text("".join(f"{v}\n" for v in [0.5] + [0.1] * 29))
    status, boxes = read_supervised(d / "fake.txt")
    np.testing.assert_array_equal(status, run.status)
    report = evaluate_vot([d], [seq])
    row = report["trackers"]["Fake"]["sequences"]["fake"]
    assert row["accuracy"] == pytest.approx(run.summary(seq)["accuracy"])
    assert row["failures"] == 2 and row["robustness"] == pytest.approx(100 * 2 / 30)
    assert row["fps"] == pytest.approx(10.0)  # tracked frames / their seconds (0.1 s each)
    assert not report["warnings"]


def test_ope_is_unchanged_by_the_protocol_switch():
    seq = scripted_sequence(6)
    tracker = ScriptedTracker({3: FAR})
    run = track_sequence(tracker, seq)
    assert run.status.tolist() == [VOT_INIT] + [VOT_TRACKED] * 5  # no failure in OPE
    assert tracker.tracks == [1, 2, 3, 4, 5] and len(tracker.inits) == 1
    assert result_text(run).splitlines()[3] == "60.00,60.00,5.00,5.00"
    with pytest.raises(ValueError, match="unknown protocol"):
        track_sequence(tracker, seq, protocol="otb")
    with pytest.raises(ValueError, match="no initial boxes"):
        track_sequence(tracker, seq, inits=[G], protocol="vot")
    assert cli.PROTOCOLS == PROTOCOLS


def test_burn_in_mask_and_pooled_scores_by_hand():
    S, I, F, T = VOT_SKIPPED, VOT_INIT, VOT_FAILURE, VOT_TRACKED
    status = np.array([I, T, T, T, F, S, I, T, T, T])
    np.testing.assert_array_equal(vot_accuracy_mask(status, burn_in=3),
                                  [0, 0, 0, 1, 0, 0, 0, 0, 0, 1])
    boxes = np.array([G] * 10)
    boxes[3] = shifted(5)
    s = vot_scores(status, boxes, [G] * 10, burn_in=3)
    assert s["accuracy"] == pytest.approx((0.6 + 1) / 2) and s["failures"] == 1 and s["frames_scored"] == 2
    # Nothing left after the burn-in: accuracy unknown (NaN), not 0.
    assert np.isnan(vot_scores(status[:3], boxes[:3], [G] * 3)["accuracy"])


# A rotated ground truth (a 20x20 square turned 45 degrees) whose bounding box is G: the VOT
# protocol scores the polygon (clipped to the 40x40 frames), as the VOT toolkit does.
DIAMOND = [20.0, 10.0, 30.0, 20.0, 20.0, 30.0, 10.0, 20.0]
CORNER = [10.0, 10.0, 4.0, 4.0]  # inside G's bounding box (IoU > 0), outside the polygon


def polygon_sequence(n=30, polygon=DIAMOND):
    seq = scripted_sequence(n)
    return Sequence(name="rotated", frames=seq.frames, boxes=seq.boxes, absent=seq.absent,
                    polygons=np.array([polygon] * n), image_size=(40, 40))


def test_polygon_ground_truth_decides_failures_and_accuracy():
    seq = polygon_sequence(30)
    # Frame 3: the corner of the bounding box, no overlap with the rotated target: a failure (by
    # axis-aligned IoU it was 16/400 > 0, no failure). Every other frame: G, the polygon's bounding
    # box: overlap 200 / 400.
    plan = {3: CORNER}
    run = track_sequence(ScriptedTracker(plan), seq, protocol="vot")
    assert run.status[3] == VOT_FAILURE and run.status[8] == VOT_INIT and run.image_size == (40, 40)
    s = run.summary(seq)
    assert s["failures"] == 1 and s["frames_scored"] == 12  # 18..29 (burn-in 8..17 after the re-init)
    assert s["accuracy"] == pytest.approx(0.5)
    # The same boxes scored axis-aligned (no polygons): no failure at 3, accuracy 1.
    plain = track_sequence(ScriptedTracker(plan), scripted_sequence(30), protocol="vot")
    assert (plain.status != VOT_FAILURE).all() and plain.summary(scripted_sequence(30))["accuracy"] == 1.0


def test_polygon_overlap_is_clipped_to_the_image():
    # Ground truth half outside the 40x40 frames (x from -10); a prediction over its outside half
    # only overlaps it by axis-aligned IoU, but not inside the image: a failure.
    gt_poly = [-10.0, 10.0, 10.0, 10.0, 10.0, 30.0, -10.0, 30.0]
    n = 12
    seq = Sequence(name="edge", frames=IndexFrames(n), boxes=np.array([[-10.0, 10.0, 20.0, 20.0]] * n),
                   absent=np.zeros(n, bool), polygons=np.array([gt_poly] * n), image_size=(40, 40))
    inside = [0.0, 10.0, 10.0, 20.0]  # the ground truth's part inside the image: overlap 1
    outside = [-10.0, 10.0, 9.0, 20.0]  # IoU 0.45 with the box, nothing inside the image
    run = track_sequence(ScriptedTracker({k: inside for k in range(n)} | {11: outside}), seq, protocol="vot")
    assert run.status[11] == VOT_FAILURE and (run.status[1:11] == VOT_TRACKED).all()
    s = vot_scores(run.status, run.boxes[:, 0], seq.boxes, polygons=seq.polygons, image_size=(40, 40), burn_in=3)
    assert s["accuracy"] == pytest.approx(1.0) and s["frames_scored"] == 8
    assert vot_scores(run.status, run.boxes[:, 0], seq.boxes, burn_in=3)["accuracy"] == pytest.approx(0.5)


def test_ope_scores_boxes_even_with_polygons():
    seq = polygon_sequence(6)
    run = track_sequence(ScriptedTracker({3: CORNER}), seq)
    assert run.summary(seq) == pytest.approx(run.summary(scripted_sequence(6)))
    assert run.summary(seq)["mean_iou"] < 1.0  # CORNER at frame 3, by axis-aligned IoU


def test_real_vot_run_and_mdnet_eval(shared_data, tmp_path, capsys):
    from tests.online.test_tracker import FAST, TINY_WIDTHS

    out, summary = tmp_path / "MDNetTiny", tmp_path / "summary.json"
    argv = ["--weights", "random:0", "--widths", TINY_WIDTHS, "--out-dir", str(out), "--frames", "15",
            "--quiet", "--protocol", "vot", "--summary-json", str(summary), str(shared_data / "VOT" / "bag")]
    for o in FAST:
        argv += ["--set", o]
    assert cli.main(cli.parse_args(argv)) == 0
    printed = capsys.readouterr().out
    lines = (out / "bag.txt").read_text().splitlines()
    assert len(lines) == 15 and lines[0] == "1"
    for i, line in enumerate(lines):
        assert line in ("0", "1", "2") or len([float(v) for v in line.split(",")]) == 4, line
        if line == "2":  # skipped up to the re-initialisation 5 frames later
            assert lines[i + 1:i + 5] == ["0"] * len(lines[i + 1:i + 5])
            assert i + 5 >= 15 or lines[i + 5] == "1"
    assert len((out / "bag_time.txt").read_text().split()) == 15
    assert "bag: 15 frames, accuracy" in printed and "all 1 sequence(s), 15 frames: accuracy" in printed
    s = json.loads(summary.read_text())
    assert s["protocol"] == "vot" and {"accuracy", "failures", "robustness", "fps"} <= set(s["overall"])
    assert {"accuracy", "failures", "robustness", "fps"} <= set(s["sequences"][0])
    # mdnet-eval recognises the format and agrees with mdnet-track's own numbers.
    report_file = tmp_path / "vot.json"
    rc = eval_main(eval_args([str(out), "--gt", str(shared_data / "VOT" / "bag"), "--json", str(report_file)]))
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert cap.out.splitlines()[1].split() == ["tracker", "sequence", "accuracy", "failures", "robust", "fps",
                                               "frames"]
    assert any(line.split()[:2] == ["MDNetTiny", "bag"] for line in cap.out.splitlines())
    report = json.loads(report_file.read_text())
    t = report["trackers"]["MDNetTiny"]
    assert {"accuracy", "failures", "robustness", "fps", "sequences"} <= set(t)
    row = t["sequences"]["bag"]
    assert row["failures"] == s["sequences"][0]["failures"]
    # A random trunk fails early and often: the accuracy may have no frame left after the burn-in
    # (null in both JSON files: --summary-json is strict JSON too).
    mine = s["sequences"][0]["accuracy"]
    assert (row["accuracy"] is None and mine is None) or row["accuracy"] == pytest.approx(mine, abs=1e-6)
    assert row["fps"] == pytest.approx(s["sequences"][0]["fps"], rel=1e-3)
    assert "lines for" in " ".join(report["warnings"])  # 15 of 196 frames: scored on those
