"""Crops: each box becomes a 107x107 patch where the box fills the central 75 px.

The crop region is the box widened about its centre by `input_size / (input_size - 2 * padding)`
(107/75), so at network scale there are `padding` (16) pixels of context on each side. One affine
warp per crop (cv2.warpAffine with WARP_INVERSE_MAP computes only the 107x107 output pixels, however
large the frame); pixels outside the image are 128 (the mean, i.e. zero after mean subtraction).
Output is NCHW float32 in 0..255: the network subtracts its own mean.
"""
from __future__ import annotations

import cv2
import numpy as np


def crop_regions(image: np.ndarray, boxes: np.ndarray, input_size: int = 107, padding: int = 16,
                 fill: float = 128.0, out: np.ndarray | None = None) -> np.ndarray:
    """Crops of `boxes` (N,4 x,y,w,h) from an RGB uint8 HxWx3 `image` -> N x 3 x S x S float32."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    n, s = len(boxes), input_size
    if out is None:
        out = np.empty((n, 3, s, s), dtype=np.float32)
    elif out.shape[0] < n or out.shape[1:] != (3, s, s):
        raise ValueError(f"out buffer {out.shape} cannot hold {n} crops of 3x{s}x{s}")
    inner = s - 2 * padding
    border = (fill, fill, fill)
    patch = np.empty((s, s, 3), dtype=np.uint8)
    for i, (x, y, w, h) in enumerate(boxes):
        # Source pixels per output pixel along each axis.
        sx = w / inner
        sy = h / inner
        x0 = x + w / 2 - sx * s / 2  # left edge of the crop region in the image
        y0 = y + h / 2 - sy * s / 2
        # Output pixel j has its centre at j + 0.5; its source centre is x0 + (j + 0.5) * sx, and
        # OpenCV addresses pixel centres at integer coordinates, hence the -0.5.
        m = np.array([[sx, 0.0, x0 + 0.5 * sx - 0.5], [0.0, sy, y0 + 0.5 * sy - 0.5]])
        cv2.warpAffine(image, m, (s, s), dst=patch,
                       flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                       borderMode=cv2.BORDER_CONSTANT, borderValue=border)
        out[i] = patch.transpose(2, 0, 1)
    return out[:n]


def crop_box_region(box, input_size: int = 107, padding: int = 16) -> np.ndarray:
    """The image region (x, y, w, h) that a crop of `box` covers (for tests and visualisation)."""
    x, y, w, h = np.asarray(box, dtype=np.float64)
    f = input_size / (input_size - 2 * padding)
    cw, ch = w * f, h * f
    return np.array([x + w / 2 - cw / 2, y + h / 2 - ch / 2, cw, ch])
