"""OTB-style tracking metrics: overlap (IoU) success AUC, centre-error precision, mean IoU.

Conventions (those of the OTB toolkit, so numbers compare with published tables):
- every frame with a usable ground-truth box counts, the first (initialisation) frame included;
  frames where the target is absent (or the ground truth is NaN / has no area) are skipped;
- success curve: fraction of frames with IoU > t for t = 0, 0.05, ..., 1 (21 thresholds); the
  AUC is the mean of that curve;
- precision: fraction of frames whose centre error is <= 20 px;
- a missing or non-finite prediction counts as IoU 0 and an infinite centre error.
"""
from __future__ import annotations

import numpy as np

from online.boxes import iou

SUCCESS_THRESHOLDS = np.linspace(0.0, 1.0, 21)
PRECISION_THRESHOLDS = np.arange(0, 51, dtype=np.float64)


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
    ious = np.asarray(ious, dtype=np.float64)
    if len(ious) == 0:
        return np.full(len(thresholds), np.nan)
    return (ious[None, :] > np.asarray(thresholds)[:, None]).mean(axis=1)


def success_auc(ious: np.ndarray) -> float:
    """Mean of the 21-point success curve (OTB 'AUC')."""
    return float(np.mean(success_curve(ious)))


def precision_curve(errors: np.ndarray, thresholds: np.ndarray = PRECISION_THRESHOLDS) -> np.ndarray:
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
