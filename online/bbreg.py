"""MDNet's bounding-box regressor: ridge regression from conv3 features to box corrections.

Trained once, on the first frame, from samples around the target with IoU >= 0.6 (py-MDNet
`BBRegressor`, which uses sklearn's `Ridge(alpha=1000)`). Targets use the R-CNN / MDNet
parameterization relative to each sample box (centre cx, cy, size w, h):

    dx = (gt_cx - cx) / w,  dy = (gt_cy - cy) / h,  dw = log(gt_w / w),  dh = log(gt_h / h)

Solved in closed form with numpy, with an intercept (features and targets centred, the intercept
not penalised, as sklearn does). conv3 features have 4608 dimensions at full width and there are
about 1000 samples, so the dual form `W = Xc^T (Xc Xc^T + lambda I)^-1 Yc` (an n x n solve) is used
when n < d; it is the same solution as the primal `(Xc^T Xc + lambda I)^-1 Xc^T Yc`.
"""
from __future__ import annotations

import numpy as np

from online.boxes import iou


def box_targets(boxes: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(N,4) regression targets (dx, dy, log dw, log dh) taking each box to `gt` (4,) or (N,4)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    g = np.broadcast_to(np.asarray(gt, dtype=np.float64).reshape(-1, 4), b.shape)
    bc = b[:, :2] + b[:, 2:] / 2
    gc = g[:, :2] + g[:, 2:] / 2
    return np.concatenate([(gc - bc) / b[:, 2:], np.log(g[:, 2:] / b[:, 2:])], axis=1)


def apply_targets(boxes: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """Inverse of `box_targets`: boxes moved by (dx, dy, log dw, log dh)."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    d = np.asarray(deltas, dtype=np.float64).reshape(-1, 4)
    c = b[:, :2] + b[:, 2:] / 2 + d[:, :2] * b[:, 2:]
    wh = b[:, 2:] * np.exp(d[:, 2:])
    return np.concatenate([c - wh / 2, wh], axis=1)


class BBRegressor:
    """Ridge regressor; `fit(features, boxes, gt)` then `predict(features, boxes) -> boxes`."""

    def __init__(self, lam: float = 1000.0, min_overlap: float = 0.6, max_area_change: float = 2.0):
        self.lam = float(lam)
        # Training samples need IoU >= min_overlap with the target, and predictions that move a box
        # further than that (or change its area by more than max_area_change either way) are outside
        # what the regressor was trained on: those boxes are returned unchanged. py-MDNet uses the
        # same IoU band; its area check is one-sided ([1, 2] of sample/prediction), ours symmetric.
        self.min_overlap = float(min_overlap)
        self.max_area_change = float(max_area_change)
        self.weight: np.ndarray | None = None  # (D, 4)
        self.bias: np.ndarray | None = None  # (4,)
        self.n_train = 0

    @property
    def fitted(self) -> bool:
        return self.weight is not None

    def fit(self, features: np.ndarray, boxes: np.ndarray, gt: np.ndarray) -> "BBRegressor":
        """Fit on (N, D) features of (N, 4) sample boxes around the target box `gt`."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        keep = iou(boxes, gt) >= self.min_overlap
        if not keep.any():
            raise ValueError(f"BBRegressor.fit: none of {len(boxes)} samples has IoU >= {self.min_overlap} "
                             "with the target")
        X = np.asarray(features, dtype=np.float64).reshape(len(boxes), -1)[keep]
        Y = box_targets(boxes[keep], gt)
        self.fit_targets(X, Y)
        return self

    def fit_targets(self, X: np.ndarray, Y: np.ndarray) -> "BBRegressor":
        """Plain ridge regression X (N, D) -> Y (N, K) with an unpenalised intercept."""
        X = np.asarray(X, dtype=np.float64)
        Y = np.asarray(Y, dtype=np.float64)
        x_mean = X.mean(axis=0)
        y_mean = Y.mean(axis=0)
        Xc = X - x_mean
        Yc = Y - y_mean
        n, d = Xc.shape
        if n < d:
            # Dual form: an n x n system instead of d x d (1000 vs 4608 at full width).
            K = Xc @ Xc.T
            K[np.diag_indices_from(K)] += self.lam
            W = Xc.T @ np.linalg.solve(K, Yc)
        else:
            G = Xc.T @ Xc
            G[np.diag_indices_from(G)] += self.lam
            W = np.linalg.solve(G, Xc.T @ Yc)
        self.weight = W
        self.bias = y_mean - x_mean @ W
        self.n_train = n
        return self

    def predict_targets(self, features: np.ndarray) -> np.ndarray:
        if not self.fitted:
            raise RuntimeError("BBRegressor.predict before fit")
        X = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
        return X @ self.weight + self.bias

    def predict(self, features: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Refined boxes for (N, D) features of (N, 4) boxes; implausible moves are not applied."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        out = apply_targets(boxes, self.predict_targets(features))
        area = np.prod(out[:, 2:], axis=1) / np.prod(boxes[:, 2:], axis=1)
        ok = (np.all(np.isfinite(out), axis=1) & (iou(out, boxes) >= self.min_overlap)
              & (area <= self.max_area_change) & (area >= 1.0 / self.max_area_change))
        out[~ok] = boxes[~ok]
        return out
