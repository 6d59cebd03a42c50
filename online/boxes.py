"""Boxes: vectorized IoU and the three MDNet samplers (gaussian, uniform, whole-image).

All boxes are float arrays `[x, y, w, h]` (see online/sequence.py for the convention). Samplers
work on centres so scale changes keep the box centred, and clip results to the image the way MDNet
does: sizes kept within [min_size, image - min_size], then the box shifted inside the image.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def iou(boxes: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """IoU of each row of `boxes` (N,4) with `ref` (4,) or row-wise with `ref` (N,4)."""
    a = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(ref, dtype=np.float64)
    b = b.reshape(-1, 4)
    x1 = np.maximum(a[:, 0], b[:, 0])
    y1 = np.maximum(a[:, 1], b[:, 1])
    x2 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(union > 0, inter / union, 0.0)
    return out


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,M) IoU between every row of `a` and every row of `b`."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(1, -1, 4)
    x1 = np.maximum(a[..., 0], b[..., 0])
    y1 = np.maximum(a[..., 1], b[..., 1])
    x2 = np.minimum(a[..., 0] + a[..., 2], b[..., 0] + b[..., 2])
    y2 = np.minimum(a[..., 1] + a[..., 3], b[..., 1] + b[..., 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def valid_box(box, image_size=None) -> bool:
    """Finite, positive size, and (when image_size=(W,H) is given) overlapping the image."""
    b = np.asarray(box, dtype=np.float64)
    if b.shape != (4,) or not np.all(np.isfinite(b)) or b[2] <= 0 or b[3] <= 0:
        return False
    if image_size is not None:
        w, h = image_size
        if b[0] >= w or b[1] >= h or b[0] + b[2] <= 0 or b[1] + b[3] <= 0:
            return False
    return True


@dataclass(frozen=True)
class SamplerSpec:
    kind: str  # "gaussian" | "uniform" | "whole"
    trans: float = 0.1  # translation range as a fraction of mean(w, h) (gaussian: std-like)
    scale: float = 1.3  # scale factor range: sizes multiplied by scale ** r, r in [-1, 1]
    aspect: float | None = None  # aspect factor range (w *= a**r, h /= a**r), None = keep aspect
    min_size: float = 10.0  # smallest side kept after clipping to the image


def sample_boxes(rng: np.random.Generator, spec: SamplerSpec, box, image_size, n: int) -> np.ndarray:
    """`n` boxes around `box` drawn by `spec`, clipped to the image (W, H)."""
    W, H = float(image_size[0]), float(image_size[1])
    b = np.asarray(box, dtype=np.float64)
    cx, cy = b[0] + b[2] / 2, b[1] + b[3] / 2
    w = np.full(n, b[2])
    h = np.full(n, b[3])
    if spec.kind == "gaussian":
        m = (b[2] + b[3]) / 2
        cx = cx + spec.trans * m * np.clip(0.5 * rng.standard_normal(n), -1, 1)
        cy = cy + spec.trans * m * np.clip(0.5 * rng.standard_normal(n), -1, 1)
        s = spec.scale ** np.clip(0.5 * rng.standard_normal(n), -1, 1)
        w, h = w * s, h * s
    elif spec.kind == "uniform":
        m = (b[2] + b[3]) / 2
        cx = cx + spec.trans * m * rng.uniform(-1, 1, n)
        cy = cy + spec.trans * m * rng.uniform(-1, 1, n)
        s = spec.scale ** rng.uniform(-1, 1, n)
        w, h = w * s, h * s
    elif spec.kind == "whole":
        # Anywhere in the image, sizes from the target's size scaled up to the image's size.
        s = spec.scale ** rng.uniform(-1, 1, n)
        w, h = w * s, h * s
        cx = rng.uniform(0, W, n)
        cy = rng.uniform(0, H, n)
    else:
        raise ValueError(f"unknown sampler kind {spec.kind!r}; valid: gaussian, uniform, whole")
    if spec.aspect is not None:
        r = spec.aspect ** rng.uniform(-1, 1, n)
        w, h = w * r, h / r
    out = np.stack([cx - w / 2, cy - h / 2, w, h], axis=1)
    return clip_boxes(out, (W, H), spec.min_size)


def clip_boxes(boxes: np.ndarray, image_size, min_size: float = 10.0) -> np.ndarray:
    """Sizes into [min_size, image - min_size], then positions so the box lies in the image."""
    W, H = float(image_size[0]), float(image_size[1])
    out = np.array(boxes, dtype=np.float64, copy=True).reshape(-1, 4)
    max_w = max(W - min_size, min_size)
    max_h = max(H - min_size, min_size)
    out[:, 2] = np.clip(out[:, 2], min_size, max_w)
    out[:, 3] = np.clip(out[:, 3], min_size, max_h)
    out[:, 0] = np.clip(out[:, 0], 0, np.maximum(W - out[:, 2], 0))
    out[:, 1] = np.clip(out[:, 1], 0, np.maximum(H - out[:, 3], 0))
    return out


def sample_by_iou(rng: np.random.Generator, spec: SamplerSpec, box, image_size, n: int,
                  iou_range: tuple, max_rounds: int = 20) -> np.ndarray:
    """`n` boxes from `spec` whose IoU with `box` lies in [lo, hi]; fewer only if none can be found.

    Over-samples in rounds (like MDNet's gen_samples) and keeps a random subset, so the result is
    an unbiased draw from the sampler restricted to the IoU band.
    """
    lo, hi = iou_range
    kept = []
    have = 0
    draw = max(2 * n, 64)
    for _ in range(max_rounds):
        cand = sample_boxes(rng, spec, box, image_size, draw)
        r = iou(cand, box)
        cand = cand[(r >= lo) & (r <= hi)]
        kept.append(cand)
        have += len(cand)
        if have >= n:
            break
        draw = min(2 * draw, max(16 * n, 4096))  # capped: 20 uncapped doublings = 2^19 x draws
    out = np.concatenate(kept, axis=0) if kept else np.zeros((0, 4))
    if len(out) > n:
        out = out[rng.choice(len(out), n, replace=False)]
    return out
