"""Annotation outlier filter (pretrain/outliers.py)."""
import numpy as np

from pretrain.config import OutlierConfig
from pretrain.outliers import RULES, find_outliers


def _track(n=12):
    # A target moving 2 px per frame, 20x20, in a 200x100 image.
    return np.array([[10.0 + 2 * i, 40.0, 20.0, 20.0] for i in range(n)])


def test_clean_track_keeps_everything():
    bad, counts = find_outliers(_track(), np.zeros(12, bool), (200, 100), OutlierConfig())
    assert not bad.any() and sum(counts.values()) == 0 and set(counts) == set(RULES)


def test_each_rule():
    b = _track()
    absent = np.zeros(12, bool)
    absent[1] = True
    b[2] = np.nan
    b[3, 2] = 2.0  # degenerate width
    b[4] = [190.0, 40.0, 20.0, 20.0]  # mostly outside (half outside at most 0.5 inside)
    b[4, 0] = 195.0
    b[5] = [0.0, 0.0, 190.0, 90.0]  # larger than half the image
    b[8] = [150.0, 5.0, 20.0, 20.0]  # isolated spike far from both neighbours
    bad, counts = find_outliers(b, absent, (200, 100), OutlierConfig())
    assert counts == {"absent": 2, "degenerate": 1, "outside": 1, "too_large": 1, "jump": 1}
    assert np.flatnonzero(bad).tolist() == [1, 2, 3, 4, 5, 8]


def test_fast_motion_that_stays_is_not_a_jump():
    b = _track()
    b[6:, 0] += 100  # one big move, then the target stays there: real motion
    bad, counts = find_outliers(b, np.zeros(12, bool), (300, 100), OutlierConfig())
    assert counts["jump"] == 0


def test_size_spike_and_end_frames():
    b = _track()
    b[5, 2:] = 60  # 9x the area for one frame
    b[0] = [150.0, 60.0, 20.0, 20.0]  # first frame far away, the rest consistent
    bad, counts = find_outliers(b, np.zeros(12, bool), (200, 100), OutlierConfig())
    assert counts["jump"] == 2 and bad[0] and bad[5]


def test_real_sequences_lose_nothing(shared_data):
    # The shared benchmark sequences are clean; the filter must not eat real fast motion.
    from online.readers import discover
    for seq in discover(shared_data / "OTB"):
        img = seq.frame(0)
        bad, counts = find_outliers(seq.boxes, seq.absent, (img.shape[1], img.shape[0]), OutlierConfig())
        assert counts["jump"] == 0, (seq.name, counts)
