"""Where MDNet's sampling lives: the three box samplers and sampling inside an IoU band.

Both halves draw every box from here: the tracker (first-frame, update, box-regression samples and
per-frame candidates) and pretraining (per-step positives, negatives and validation candidates).

The samplers follow py-MDNet's `SampleGenerator` (and MDNet's utils/gen_samples.m), with one
parameter naming everywhere:

- `trans`: translation range as a fraction of mean(w, h) of the reference box;
- `scale`: sizes are multiplied by scale ** r;
- `aspect`: w and h are multiplied by aspect ** r_w and aspect ** r_h, two INDEPENDENT draws in
  [-1, 1] (py-MDNet), so aspect jitter also changes the size a little;
- `min_size`: smallest side (py-MDNet: 10 px); sizes are clipped to [min_size, image - min_size].

`gaussian` draws r = clip(N(0, 0.5^2), -1, 1) (centre offsets per axis, one scale per box);
`uniform` draws r uniformly in [-1, 1]; `whole` puts centres on a shuffled grid over the image
(MATLAB MDNet: centres in [w/2, W - w/2]; py-MDNet's formula reaches W - 1) with uniform scale.

At the image border a sample's CENTRE is kept inside the image ([0, W] x [0, H]); the box itself
may extend past the border, exactly as MDNet and py-MDNet (`valid=False`) do: crops fill outside
pixels with the mean, and a target that is partly out of frame still gets samples that cover it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from online.boxes import iou

KINDS = ("gaussian", "uniform", "whole")


@dataclass(frozen=True)
class SamplerSpec:
    kind: str  # one of KINDS
    trans: float = 0.0
    scale: float = 1.0
    aspect: float | None = None  # None: keep the reference box's aspect ratio
    min_size: float = 10.0

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"unknown sampler kind {self.kind!r}; valid: {', '.join(KINDS)}")


def _whole_grid_centres(rng: np.random.Generator, n: int, box_wh: np.ndarray, image_wh: np.ndarray) -> np.ndarray:
    """n centres from a shuffled m x m grid (m = int(2 sqrt(n)), as py-MDNet) over [w/2, W - w/2]."""
    m = max(int(2 * np.sqrt(n)), 1)
    g = np.linspace(0.0, 1.0, m)
    xy = np.stack(np.meshgrid(g, g), axis=-1).reshape(-1, 2)
    xy = xy[rng.permutation(len(xy))[:n]]
    if len(xy) < n:  # only for n so small that the grid is smaller than n (m^2 >= 4n otherwise)
        xy = np.concatenate([xy, rng.uniform(0, 1, (n - len(xy), 2))])
    lo = box_wh / 2
    span = np.maximum(image_wh - box_wh, 0.0)  # target larger than the image: centre at w/2
    return lo + xy * span


def sample_boxes(rng: np.random.Generator, spec: SamplerSpec, box, image_size, n: int) -> np.ndarray:
    """`n` boxes `[x, y, w, h]` drawn by `spec` around `box` in an image of (W, H)."""
    img = np.asarray(image_size, dtype=np.float64).reshape(2)
    b = np.asarray(box, dtype=np.float64).reshape(4)
    c = np.tile(b[:2] + b[2:] / 2, (n, 1))
    wh = np.tile(b[2:], (n, 1))
    if spec.aspect is not None:
        wh = wh * spec.aspect ** rng.uniform(-1, 1, (n, 2))
    m = b[2:].mean()
    if spec.kind == "gaussian":
        c = c + spec.trans * m * np.clip(0.5 * rng.standard_normal((n, 2)), -1, 1)
        wh = wh * spec.scale ** np.clip(0.5 * rng.standard_normal((n, 1)), -1, 1)
    elif spec.kind == "uniform":
        c = c + spec.trans * m * rng.uniform(-1, 1, (n, 2))
        wh = wh * spec.scale ** rng.uniform(-1, 1, (n, 1))
    else:  # whole
        c = _whole_grid_centres(rng, n, b[2:], img)
        wh = wh * spec.scale ** rng.uniform(-1, 1, (n, 1))
    return clip_to_image(np.concatenate([c - wh / 2, wh], axis=1), img, spec.min_size)


def clip_to_image(boxes: np.ndarray, image_size, min_size: float = 10.0) -> np.ndarray:
    """Sizes into [min_size, image - min_size], centres into the image; boxes may cross the border."""
    img = np.asarray(image_size, dtype=np.float64).reshape(2)
    out = np.array(boxes, dtype=np.float64, copy=True).reshape(-1, 4)
    c = out[:, :2] + out[:, 2:] / 2
    wh = np.clip(out[:, 2:], min_size, np.maximum(img - min_size, min_size))
    c = np.clip(c, 0.0, img)
    out[:, :2] = c - wh / 2
    out[:, 2:] = wh
    return out


def sample_by_iou(rng: np.random.Generator, spec: SamplerSpec, box, image_size, n: int, iou_range,
                  area_range=None, max_rounds: int = 20) -> np.ndarray:
    """Up to `n` boxes from `spec` whose IoU with `box` lies in [lo, hi] (and, with `area_range`,
    whose area / the box's area lies in [lo, hi]: py-MDNet's `scale_range`, used for box-regression
    samples). Fewer only when the band cannot be filled.

    Over-samples in rounds (like MDNet's gen_samples) and keeps a random subset, so the result is
    an unbiased draw from the sampler restricted to the band.
    """
    lo, hi = iou_range
    b = np.asarray(box, dtype=np.float64).reshape(4)
    kept, have = [], 0
    draw = max(2 * n, 64)
    for _ in range(max_rounds):
        cand = sample_boxes(rng, spec, b, image_size, draw)
        r = iou(cand, b)
        ok = (r >= lo) & (r <= hi)
        if area_range is not None:
            a = cand[:, 2] * cand[:, 3] / (b[2] * b[3])
            ok &= (a >= area_range[0]) & (a <= area_range[1])
        kept.append(cand[ok])
        have += int(ok.sum())
        if have >= n:
            break
        draw = min(2 * draw, max(16 * n, 4096))  # capped: 20 uncapped doublings = 2^19 x draws
    out = np.concatenate(kept, axis=0)
    if len(out) > n:
        out = out[rng.choice(len(out), n, replace=False)]
    return out
