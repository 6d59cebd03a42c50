"""Annotation outliers: frames whose ground-truth box should not be sampled for training.

A wrong box teaches the network that background is the target (and the target background), and a
few such frames in a small domain are a large share of its samples. Every frame is checked by the
rules below, in this order, and counted under the first rule it fails (the counts are logged per
sequence):

| rule | a frame is dropped when |
|---|---|
| absent | the reader marked it absent (benchmark flag, NaN, no area, wholly outside) |
| degenerate | a side is shorter than `min_size` px |
| outside | less than `min_inside` of the box area lies inside the image |
| too_large | the box covers more than `max_image_fraction` of the image (no room for negatives; usually an annotation error) |
| jump | against BOTH its previous and next kept neighbours, the centre moves more than `jump_centre` x box size per frame of gap, or the area changes by more than `jump_size` x (box size = sqrt(area), mean of the pair) |

The jump rule asks for both neighbours so that a real fast motion (one large move, then the
target stays there) is kept and only an isolated spike is dropped; at the two ends of a sequence,
where there is one neighbour, a frame is dropped when it jumps against its neighbour and that
neighbour does not jump against the next one (so the odd one out is the end frame).
"""
from __future__ import annotations

import numpy as np

RULES = ("absent", "degenerate", "outside", "too_large", "jump")


def _inside_fraction(boxes: np.ndarray, image_size) -> np.ndarray:
    w_img, h_img = float(image_size[0]), float(image_size[1])
    x1 = np.clip(boxes[:, 0], 0, w_img)
    y1 = np.clip(boxes[:, 1], 0, h_img)
    x2 = np.clip(boxes[:, 0] + boxes[:, 2], 0, w_img)
    y2 = np.clip(boxes[:, 1] + boxes[:, 3], 0, h_img)
    area = boxes[:, 2] * boxes[:, 3]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(area > 0, (x2 - x1) * (y2 - y1) / area, 0.0)


def _jumps(a: np.ndarray, b: np.ndarray, gap: np.ndarray, centre_k: float, size_k: float) -> np.ndarray:
    """Row-wise: does box a -> box b (gap frames apart) move or resize too much?"""
    ca = a[:, :2] + a[:, 2:] / 2
    cb = b[:, :2] + b[:, 2:] / 2
    area_a = a[:, 2] * a[:, 3]
    area_b = b[:, 2] * b[:, 3]
    size = (np.sqrt(area_a) + np.sqrt(area_b)) / 2
    dist = np.hypot(*(ca - cb).T)
    ratio = np.maximum(area_a, area_b) / np.minimum(area_a, area_b)
    return (dist > centre_k * size * gap) | (ratio > size_k)


def find_outliers(boxes, absent, image_size, cfg) -> tuple[np.ndarray, dict]:
    """(bad mask (N,), counts {rule: frames}) for one sequence; `cfg` is an OutlierConfig."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    absent = np.asarray(absent, dtype=bool).reshape(-1)
    n = len(boxes)
    reason = np.full(n, -1, dtype=np.int64)  # index into RULES, -1 = kept

    def mark(mask, rule):
        reason[(reason < 0) & mask] = RULES.index(rule)

    finite = np.all(np.isfinite(boxes), axis=1)
    mark(absent | ~finite, "absent")
    safe = np.where(finite[:, None], boxes, 1.0)  # keep the arithmetic below NaN-free
    mark((safe[:, 2] < cfg.min_size) | (safe[:, 3] < cfg.min_size), "degenerate")
    mark(_inside_fraction(safe, image_size) < cfg.min_inside, "outside")
    image_area = float(image_size[0]) * float(image_size[1])
    mark(safe[:, 2] * safe[:, 3] > cfg.max_image_fraction * image_area, "too_large")

    kept = np.flatnonzero(reason < 0)
    if len(kept) >= 3:
        b = safe[kept]
        gap = np.diff(kept).astype(np.float64)
        # j[i]: does kept frame i jump against kept frame i+1
        j = _jumps(b[:-1], b[1:], gap, cfg.jump_centre, cfg.jump_size)
        spike = np.zeros(len(kept), dtype=bool)
        spike[1:-1] = j[:-1] & j[1:]
        spike[0] = j[0] and not j[1]
        spike[-1] = j[-1] and not j[-2]
        mark(np.isin(np.arange(n), kept[spike]), "jump")

    bad = reason >= 0
    counts = {rule: int((reason == k).sum()) for k, rule in enumerate(RULES)}
    return bad, counts


def describe_counts(name: str, counts: dict, total: int) -> str:
    dropped = sum(counts.values())
    parts = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
    return f"{name}: {total - dropped}/{total} frames usable" + (f" (dropped: {parts})" if parts else "")
