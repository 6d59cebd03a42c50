"""OTB-style metrics on hand-made boxes, where every number can be worked out by hand."""
import numpy as np

from online.metrics import (center_errors, overlaps, precision_at, success_auc, success_curve,
                            summarize)

GT = np.array([[0.0, 0.0, 10.0, 10.0]] * 4)


def test_perfect_tracking_scores_20_of_21_thresholds():
    # OTB counts IoU > t, so even IoU 1 fails the last threshold t = 1: AUC = 20/21.
    s = summarize(GT, GT)
    assert s["frames_scored"] == 4
    assert s["mean_iou"] == 1.0
    assert abs(s["auc"] - 20 / 21) < 1e-12
    assert s["precision20"] == 1.0


def test_auc_and_precision_by_hand():
    pred = np.array([
        [0.0, 0.0, 10.0, 10.0],   # IoU 1, centre error 0
        [0.0, 0.0, 10.0, 5.0],    # IoU 0.5, error 2.5
        [20.0, 0.0, 10.0, 10.0],  # IoU 0, error 20 (counts: <= 20 px)
        [21.0, 0.0, 10.0, 10.0],  # IoU 0, error 21
    ])
    ious = overlaps(pred, GT)
    np.testing.assert_allclose(ious, [1.0, 0.5, 0.0, 0.0])
    np.testing.assert_allclose(center_errors(pred, GT), [0.0, 2.5, 20.0, 21.0])
    curve = success_curve(ious)
    # t = 0 .. 0.45 (10 thresholds): two frames pass; 0.5 .. 0.95 (10): one; t = 1: none.
    np.testing.assert_allclose(curve, [0.5] * 10 + [0.25] * 10 + [0.0])
    assert abs(success_auc(ious) - (10 * 0.5 + 10 * 0.25) / 21) < 1e-12
    assert precision_at(center_errors(pred, GT), 20.0) == 0.75
    s = summarize(pred, GT)
    assert abs(s["mean_iou"] - 0.375) < 1e-12


def test_absent_frames_are_skipped_and_bad_predictions_count_as_misses():
    gt = GT.copy()
    gt[1] = np.nan  # no ground truth
    absent = np.array([False, False, True, False])  # frame 2 marked absent
    pred = GT.copy()
    pred[3] = np.nan  # tracker gave nothing
    s = summarize(pred, gt, absent)
    assert s["frames_scored"] == 2  # frames 0 and 3
    assert s["mean_iou"] == 0.5
    assert s["precision20"] == 0.5
    # Nothing scorable: NaN, not a crash or a misleading zero.
    empty = summarize(pred[:1], gt[1:2])
    assert empty["frames_scored"] == 0 and np.isnan(empty["auc"]) and np.isnan(empty["mean_iou"])
