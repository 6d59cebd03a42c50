"""OpenCV's trackers through `mdnet-eval run --tracker`: real CSRT / KCF / MIL and NanoTrack on real
frames, the same result, timing and report files as MDNet's, resume, a lost target keeping its last
box, MDNet-only options refused, and NanoTrack's missing ONNX files named with where to get them."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from online.readers import discover
from online.track_loop import track_sequence
from tools.eval import baselines
from tools.eval.baselines import (NANO_ENV, NANO_FILES, OPENCV_TRACKERS, BaselineError, OpenCVTracker,
                                  opencv_factory)
from tools.eval.cli import main, parse_args


@pytest.fixture(scope="session")
def nano_dir() -> "Path":
    # NanoTrack's ONNX files live beside the repository (never in it): fail, as shared_data does.
    if not all((baselines.NANO_DEV_DIR / f).is_file() for f in NANO_FILES.values()):
        pytest.fail(f"NanoTrack files missing: expected {baselines.NANO_DEV_DIR} (shared/baselines/nanotrack)")
    return baselines.NANO_DEV_DIR


def test_every_baseline_builds_in_the_installed_opencv():
    # make install puts the contrib build in: CSRT and KCF live only there.
    for name in OPENCV_TRACKERS:
        assert callable(opencv_factory(name))
    with pytest.raises(BaselineError, match="unknown OpenCV tracker 'tld'"):
        opencv_factory("tld")


def test_csrt_follows_a_real_target(shared_data):
    seq = discover(shared_data / "OTB" / "Crossing")[0]
    run = track_sequence(OpenCVTracker("csrt"), seq, frames=30)
    s = run.summary(seq)
    assert s["frames"] == 30 and s["fps"] > 0
    assert s["auc"] > 0.5  # CSRT tracks Crossing's pedestrian well (0.77 over the whole sequence)
    assert np.isfinite(run.boxes).all() and not np.array_equal(run.boxes[1, 0], run.boxes[29, 0])


class _LosesTargetAfter:
    """A real OpenCV tracker whose `update` reports failure from frame k on (as KCF does on a
    weak response): the runner must keep the last box it found."""

    def __init__(self, inner, k):
        self.inner, self.k, self.calls = inner, k, 0

    def init(self, image, rect):
        self.inner.init(image, rect)

    def update(self, image):
        self.calls += 1
        ok, rect = self.inner.update(image)
        return (ok, rect) if self.calls < self.k else (False, (0, 0, 0, 0))


def test_lost_target_keeps_the_last_box(shared_data):
    seq = discover(shared_data / "OTB" / "Crossing")[0]
    tracker = OpenCVTracker("csrt")
    make = tracker._make
    tracker._make = lambda: _LosesTargetAfter(make(), 5)
    run = track_sequence(tracker, seq, frames=10)
    assert run.success[1:5, 0].all() and not run.success[5:, 0].any()
    for i in range(5, 10):  # the box of frame 4, the last one found
        np.testing.assert_array_equal(run.boxes[i, 0], run.boxes[4, 0])
    assert (run.scores[5:, 0] == 0).all() and (run.scores[1:5, 0] == 1).all()


def test_multiple_targets_refused(shared_data):
    seq = discover(shared_data / "OTB" / "Crossing")[0]
    with pytest.raises(ValueError, match="tracks one target"):
        OpenCVTracker("kcf").initialize(seq.frame(0), np.array([[10, 10, 20, 20], [50, 50, 20, 20]]))


def test_eval_run_with_baselines_beside_each_other(shared_data, tmp_path, capsys):
    roots = [str(shared_data / "OTB" / "Crossing"), str(shared_data / "VOT" / "bag")]
    out = tmp_path / "runs"
    for name in ("csrt", "kcf"):
        rc = main(parse_args(["run", *roots, "--tracker", name, "--out-dir", str(out), "--frames", "12",
                              "--jobs", "2", "--quiet"]))
        cap = capsys.readouterr()
        assert rc == 0, cap.err
        assert f"results in {out / name}" in cap.out
        for seq in ("Crossing", "bag"):
            assert len((out / name / f"{seq}.txt").read_text().splitlines()) == 12
            assert len((out / name / f"{seq}_time.txt").read_text().split()) == 12
    report = json.loads((out / "eval.json").read_text())
    assert set(report["trackers"]) == {"csrt", "kcf"}  # one table for both
    assert all(t["fps"] > 0 and t["sequences_scored"] == 2 for t in report["trackers"].values())
    assert (out / "plots" / "success_OPE.png").stat().st_size > 1000
    assert "opencv:" in (out / "csrt" / "run.yaml").read_text()
    # Resumed: nothing left to track.
    rc = main(parse_args(["run", *roots, "--tracker", "csrt", "--out-dir", str(out), "--frames", "12", "--quiet"]))
    assert rc == 0 and "2 already done, 0 to track" in capsys.readouterr().out


def test_mdnet_options_refused_with_a_baseline(shared_data, tmp_path, capsys):
    seq = str(shared_data / "OTB" / "Crossing")
    rc = main(parse_args(["run", seq, "--tracker", "csrt", "--weights", "random:0", "--out-dir", str(tmp_path)]))
    assert rc == 2 and "--weights: MDNet options" in capsys.readouterr().err
    rc = main(parse_args(["run", seq, "--tracker", "mil", "--mode", "fast", "--out-dir", str(tmp_path)]))
    assert rc == 2 and "--mode: MDNet options" in capsys.readouterr().err
    rc = main(parse_args(["run", seq, "--out-dir", str(tmp_path)]))  # mdnet needs weights
    assert rc == 2 and "--weights is required" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())  # nothing written before the checks


def test_nano_follows_a_real_target(shared_data, nano_dir):
    import cv2

    seq = discover(shared_data / "OTB" / "Crossing")[0]
    run = track_sequence(OpenCVTracker("nano", nano_dir), seq, frames=40)
    s = run.summary(seq)
    assert s["frames"] == 40 and s["fps"] > 0
    assert s["auc"] > 0.6  # 0.76 on these 40 frames
    assert np.isfinite(run.boxes).all() and not np.array_equal(run.boxes[1, 0], run.boxes[39, 0])
    assert cv2.getNumThreads() == 1  # one thread, as one worker of the runner


def test_nano_missing_file_is_named_with_its_source(tmp_path, monkeypatch, nano_dir):
    shutil.copy(nano_dir / NANO_FILES["backbone"], tmp_path)  # the head is missing
    missing = tmp_path / NANO_FILES["neckhead"]
    with pytest.raises(BaselineError, match="HonglinChu/SiamTrackers") as e:
        OpenCVTracker("nano", tmp_path)
    assert str(missing) in str(e.value) and "nanotrackv2" in str(e.value) and "--nano-dir" in str(e.value)
    monkeypatch.setenv(NANO_ENV, str(tmp_path))  # the variable names the folder when no --nano-dir does
    with pytest.raises(BaselineError, match=f"missing: {missing}"):
        opencv_factory("nano")
    monkeypatch.delenv(NANO_ENV)
    monkeypatch.setattr(baselines, "NANO_DEV_DIR", tmp_path / "absent")  # a user's checkout: no ../shared
    with pytest.raises(BaselineError, match=f"nanotrack_head_sim.onnx: get them from .*SiamTrackers.*{NANO_ENV}"):
        opencv_factory("nano")


def test_eval_run_nano(shared_data, nano_dir, tmp_path, capsys):
    seq = str(shared_data / "OTB" / "Crossing")
    out = tmp_path / "runs"
    rc = main(parse_args(["run", seq, "--tracker", "nano", "--out-dir", str(out), "--frames", "12", "--jobs", "1",
                          "--nano-dir", str(nano_dir), "--quiet"]))
    cap = capsys.readouterr()
    assert rc == 0, cap.err
    assert len((out / "nano" / "Crossing.txt").read_text().splitlines()) == 12
    report = json.loads((out / "eval.json").read_text())
    assert report["trackers"]["nano"]["sequences_scored"] == 1
    assert "nanotrack_head_sim.onnx: 0d8c0637" in (out / "nano" / "run.yaml").read_text()  # by content, not path
    # A missing file: exit 2 with the path, before anything is written; --nano-dir means nothing to CSRT.
    rc = main(parse_args(["run", seq, "--tracker", "nano", "--nano-dir", str(tmp_path / "none"),
                          "--out-dir", str(tmp_path / "other")]))
    assert rc == 2 and f"missing: {tmp_path / 'none' / NANO_FILES['backbone']}" in capsys.readouterr().err
    rc = main(parse_args(["run", seq, "--tracker", "csrt", "--nano-dir", str(nano_dir), "--out-dir", str(tmp_path / "other")]))
    assert rc == 2 and "--nano-dir: a --tracker nano option" in capsys.readouterr().err
    assert not (tmp_path / "other").exists()
