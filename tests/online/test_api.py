"""The OpenCV-style API (online/api.py) on a real video file read back by cv2.VideoCapture.

The video is written here from the first frames of ../shared/data/OTB/Crossing (MJPG .avi,
OpenCV's own codec, so any cv2 build writes and reads it); the ground truth of those frames scores
the boxes.
"""
from pathlib import Path

import cv2
import numpy as np
import pytest

from online import api
from online.boxes import iou
from online.readers import read_sequence
from online.tracker import MDNetTracker
from online.tracker_config import MODES, TrackerConfig
from online.weights import build_trunk
from online.network import NetSpec
from tests.conftest import SHARED_DATA

CROSSING = SHARED_DATA / "OTB" / "Crossing"
FRAMES = 20
# Small samples/iterations: the equivalence test needs the same path twice, not accuracy.
FAST = ["n_pos_init=50", "n_neg_init=200", "n_bbreg=100", "maxiter_init=5", "maxiter_update=3",
        "n_pos_update=20", "n_neg_update=40", "batch_test=64", "n_samples=64", "batch_neg_cand=256"]


@pytest.fixture(scope="module")
def crossing_video(tmp_path_factory, shared_data):
    """(path of a 20-frame .avi of Crossing, its ground-truth boxes)."""
    gt = read_sequence(CROSSING).boxes[:FRAMES]  # the project's reader: tab-separated file
    first = cv2.imread(str(CROSSING / "img" / "0001.jpg"))
    path = tmp_path_factory.mktemp("video") / "crossing.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (first.shape[1], first.shape[0]))
    assert writer.isOpened()
    for i in range(FRAMES):
        writer.write(cv2.imread(str(CROSSING / "img" / f"{i + 1:04d}.jpg")))
    writer.release()
    return path, gt


def read_video(path: Path) -> list:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def test_modes_match_the_tracker_config():
    assert api.MODES == MODES


def test_shipped_model_tracks_a_video_file(crossing_video):
    # The default weights (the shipped model), fast mode: what the README shows.
    path, gt = crossing_video
    frames = read_video(path)
    assert len(frames) == FRAMES and frames[0].shape == (240, 360, 3)
    tracker = api.create_tracker(mode="fast")
    tracker.init(frames[0], tuple(gt[0]))
    oks, boxes = [], []
    for frame in frames[1:]:
        ok, box = tracker.update(frame)
        assert isinstance(ok, bool) and len(box) == 4
        assert ok == (tracker.score > 0)
        oks.append(ok)
        boxes.append(box)
    ious = np.array([iou(np.asarray(b)[None], g)[0] for b, g in zip(boxes, gt[1:])])
    # Crossing's first second is easy (a walker on a plain road): MDNet fast mode holds it (0.6-0.8
    # measured); a BGR/RGB mix-up or a box convention slip drops it far below.
    assert ious.min() > 0.4, ious.round(2)
    assert ious.mean() > 0.55, ious.round(2)
    assert sum(oks) >= len(oks) - 2


def test_bgr_frames_give_the_trackers_own_boxes(crossing_video):
    """The API is the project's tracker with a colour conversion in front: the same boxes as
    MDNetTracker fed the RGB frames, bitwise (same seed, same trunk)."""
    path, gt = crossing_video
    frames = read_video(path)[:6]
    trunk, _ = build_trunk("random:0", spec=NetSpec(conv_channels=(32, 64, 128), fc_width=128))
    from online.config import load_config
    cfg = load_config(TrackerConfig, None, FAST + ["mode=exact"])
    ref = MDNetTracker(trunk, cfg, seed=3)
    ref.initialize(cv2.cvtColor(frames[0], cv2.COLOR_BGR2RGB), gt[0])
    want = [ref.track(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)) for f in frames[1:]]
    tracker = api.create_tracker(mode="exact", overrides=FAST, seed=3, trunk=trunk)
    tracker.init(frames[0], gt[0])
    got = [tracker.update(f) for f in frames[1:]]
    for (ok, box), r in zip(got, want):
        assert ok == r.success
        np.testing.assert_array_equal(box, r.box)


def test_errors_are_clear(crossing_video):
    path, gt = crossing_video
    frame = read_video(path)[0]
    tracker = api.create_tracker(weights="random:0", widths=(16, 32, 64, 64), overrides=FAST)
    with pytest.raises(RuntimeError, match="before init"):
        tracker.update(frame)
    with pytest.raises(ValueError, match="empty frame: got None"):
        tracker.init(None, gt[0])
    with pytest.raises(ValueError, match="empty frame"):
        tracker.init(np.zeros((0, 0, 3), np.uint8), gt[0])
    with pytest.raises(ValueError, match="outside the 360x240 image"):
        tracker.init(frame, (500, 300, 20, 20))
    with pytest.raises(ValueError, match="four finite numbers"):
        tracker.init(frame, (1, 2, 3))
    with pytest.raises(ValueError, match="mode 'slow'"):
        api.create_tracker(weights="random:0", mode="slow")
    with pytest.raises(ValueError, match="random:SEED"):
        api.create_tracker(weights="random:x")
    tracker.init(frame, gt[0])
    with pytest.raises(ValueError, match="empty frame"):
        tracker.update(None)
    gray = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)  # grayscale video: accepted, as by cv2 trackers
    ok, box = tracker.update(gray)
    assert np.all(np.isfinite(box))
