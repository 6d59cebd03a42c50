"""Tracking metrics: OTB-style success / precision curves and mean IoU; VOT-style accuracy and
failures. The ONE implementation of these curves: tools/eval/scoring.py (`mdnet-eval`) imports them.

OTB conventions (those of the OTB toolkit, so numbers compare with published tables):
- every frame with a usable ground-truth box counts, the first (initialisation) frame included;
  frames where the target is absent (or the ground truth is NaN / has no area) are skipped;
- success curve: fraction of frames with IoU > t for t = 0, 0.05, ..., 1 (21 thresholds); the
  AUC is the mean of that curve;
- precision: fraction of frames whose centre error is <= 20 px;
- a missing or non-finite prediction counts as IoU 0 and an infinite centre error.

VOT supervised (baseline) conventions (pysot `toolkit/evaluation/ar_benchmark.py` and
`toolkit/utils/statistics.py`, the VOT toolkit's `estimate_accuracy`), for runs of
online/track_loop.py with protocol "vot":
- every frame has a status: a box, or one of VOT's codes 1 (the tracker was (re)initialised from
  the ground truth here), 2 (failure: the box had no overlap with the ground truth), 0 (skipped:
  the frames after a failure before the re-initialisation);
- accuracy: the mean IoU over the frames that hold a box, leaving out `burn_in` = 10 frames
  counted from every (re)initialisation frame (that frame is the first of the 10, as in pysot and
  the VOT toolkit: the 9 tracked frames after it are left out), code frames, and frames whose
  ground truth is absent;
- failures: the number of frames marked 2; robustness: failures per 100 frames (pysot's table).
- overlap: where the ground truth is a polygon (VOT's rotated boxes: `Sequence.polygons`, filled by
  the VOT reader), the VOT toolkit's region overlap between that polygon and the predicted box,
  both clipped to the image (online/boxes.py `region_overlap`), for failures and accuracy alike;
  else the IoU of axis-aligned boxes (pysot's, for sequences of other formats run this way).
"""
from __future__ import annotations

import numpy as np

from online.boxes import iou, region_overlap

SUCCESS_THRESHOLDS = np.linspace(0.0, 1.0, 21)
PRECISION_THRESHOLDS = np.arange(0, 51, dtype=np.float64)

# VOT supervised result codes: a result line holding just this number replaces the box. TRACKED is
# ours, not a file code: the frame holds a box.
VOT_SKIPPED, VOT_INIT, VOT_FAILURE = 0, 1, 2
VOT_TRACKED = -1
VOT_BURN_IN = 10  # frames left out of the accuracy from every (re)initialisation on
VOT_SKIP = 5  # after a failure at frame f the tracker restarts at frame f + 5 (VOT, pysot)


def valid_frames(gt: np.ndarray, absent: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of frames whose ground truth can be scored."""
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    ok = np.all(np.isfinite(gt), axis=1) & (gt[:, 2] > 0) & (gt[:, 3] > 0)
    if absent is not None:
        ok &= ~np.asarray(absent, dtype=bool).reshape(-1)[:len(gt)]
    return ok


def _pairs(pred, gt, absent):
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    n = min(len(pred), len(gt))
    ok = valid_frames(gt[:n], None if absent is None else np.asarray(absent)[:n])
    return pred[:n][ok], gt[:n][ok]


def overlaps(pred, gt, absent=None) -> np.ndarray:
    """IoU per scored frame (frames beyond the shorter of pred/gt are ignored)."""
    p, g = _pairs(pred, gt, absent)
    out = iou(p, g)
    out[~np.all(np.isfinite(p), axis=1)] = 0.0
    return np.nan_to_num(out, nan=0.0)


def center_errors(pred, gt, absent=None) -> np.ndarray:
    """Euclidean distance (px) between box centres per scored frame."""
    p, g = _pairs(pred, gt, absent)
    d = (p[:, :2] + p[:, 2:] / 2) - (g[:, :2] + g[:, 2:] / 2)
    err = np.sqrt((d ** 2).sum(axis=1))
    err[~np.isfinite(err)] = np.inf
    return err


def success_curve(ious: np.ndarray, thresholds: np.ndarray = SUCCESS_THRESHOLDS) -> np.ndarray:
    """Fraction of frames with IoU > t (strictly) for each threshold; NaN when there is no frame."""
    ious = np.asarray(ious, dtype=np.float64)
    if len(ious) == 0:
        return np.full(len(thresholds), np.nan)
    return (ious[None, :] > np.asarray(thresholds)[:, None]).mean(axis=1)


def success_auc(ious: np.ndarray) -> float:
    """Mean of the 21-point success curve (OTB 'AUC')."""
    return float(np.mean(success_curve(ious)))


def precision_curve(errors: np.ndarray, thresholds: np.ndarray = PRECISION_THRESHOLDS) -> np.ndarray:
    """Fraction of frames with centre error <= t for each threshold; NaN when there is no frame."""
    errors = np.asarray(errors, dtype=np.float64)
    if len(errors) == 0:
        return np.full(len(thresholds), np.nan)
    return (errors[None, :] <= np.asarray(thresholds)[:, None]).mean(axis=1)


def precision_at(errors: np.ndarray, threshold: float = 20.0) -> float:
    """Fraction of frames with centre error <= threshold px."""
    errors = np.asarray(errors, dtype=np.float64)
    return float(np.mean(errors <= threshold)) if len(errors) else float("nan")


def summarize(pred, gt, absent=None) -> dict:
    """mean_iou, auc, precision20 and the number of scored frames, for one sequence."""
    ious = overlaps(pred, gt, absent)
    errs = center_errors(pred, gt, absent)
    return {
        "frames_scored": int(len(ious)),
        "mean_iou": float(ious.mean()) if len(ious) else float("nan"),
        "auc": success_auc(ious),
        "precision20": precision_at(errs, 20.0),
    }


def vot_accuracy_mask(status: np.ndarray, burn_in: int = VOT_BURN_IN) -> np.ndarray:
    """Frames that count towards the accuracy, before looking at the ground truth: those holding a
    box and not within `burn_in` frames counted from a (re)initialisation frame (itself included)."""
    status = np.asarray(status).reshape(-1)
    keep = status == VOT_TRACKED
    for i in np.flatnonzero(status == VOT_INIT):
        keep[i:i + burn_in] = False
    return keep


def vot_overlap(box, gt_box, polygon=None, image_size=None) -> float:
    """The overlap that decides a VOT failure and makes the accuracy (module doc): the region
    overlap of the ground-truth `polygon` (8 values) and `box`, both clipped to `image_size`
    (W, H), when the ground truth is a polygon; else the IoU of `box` and `gt_box`. A non-finite
    box overlaps nothing: 0."""
    if polygon is not None:
        return region_overlap(polygon, box, bounds=image_size)
    return float(np.nan_to_num(iou(box, gt_box)[0], nan=0.0))


def vot_scores(status, boxes, gt, absent=None, burn_in: int = VOT_BURN_IN, polygons=None,
               image_size=None) -> dict:
    """Accuracy, failures and robustness of one VOT-style run (module doc).

    `status` (frames,): VOT_TRACKED where `boxes` (frames, 4) holds the box, else a VOT code.
    Frames beyond the shorter of status / gt are ignored (as pysot does). `polygons` (frames, 8):
    the ground truth as polygons (Sequence.polygons; `gt` are their bounding boxes), scored with
    the region overlap clipped to `image_size` (W, H) (vot_overlap).
    """
    status = np.asarray(status).reshape(-1)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    n = min(len(status), len(gt))
    status, boxes = status[:n], boxes[:n]
    keep = vot_accuracy_mask(status, burn_in) & valid_frames(gt[:n], None if absent is None else np.asarray(absent)[:n])
    if polygons is not None:
        polygons = np.asarray(polygons, dtype=np.float64).reshape(-1, 8)
        ov = np.array([vot_overlap(boxes[i], gt[i], polygons[i], image_size) for i in np.flatnonzero(keep)])
    else:
        ov = iou(boxes[keep], gt[:n][keep]) if keep.any() else np.zeros(0)
    ov = np.nan_to_num(ov, nan=0.0)  # a NaN box (never written by the tracker) overlaps nothing
    failures = int((status == VOT_FAILURE).sum())
    return {
        "frames": int(n),
        "frames_scored": int(len(ov)),
        "overlap_sum": float(ov.sum()),  # for pooling over sequences (pysot's overall accuracy)
        "accuracy": float(ov.mean()) if len(ov) else float("nan"),
        "failures": failures,
        "robustness": 100.0 * failures / n if n else float("nan"),
        "inits": int((status == VOT_INIT).sum()),
    }


def vot_overall(rows: list[dict]) -> dict:
    """pysot's overall numbers from per-sequence `vot_scores`: accuracy pooled over all scored
    frames (a sequence weighs by its scored frames), failures summed, robustness = total failures
    per 100 frames."""
    frames = sum(r["frames"] for r in rows)
    scored = sum(r["frames_scored"] for r in rows)
    failures = sum(r["failures"] for r in rows)
    return {
        "sequences": len(rows),
        "frames": int(frames),
        "frames_scored": int(scored),
        "accuracy": sum(r["overlap_sum"] for r in rows) / scored if scored else float("nan"),
        "failures": int(failures),
        "robustness": 100.0 * failures / frames if frames else float("nan"),
    }
