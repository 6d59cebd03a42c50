"""Fast mode's training windows: the part of a region's conv3 map that a set of RoIs reads.

A fast step mines its negatives on the conv3 maps of whole regions (inference, no autograd). The
training pass then needs the maps again, under autograd, but only where its 32 + 96 RoIs sample
them: per frame, the smallest window of map cells that holds every cell RoIAlign reads for that
frame's RoIs. Its pixels are a lattice-aligned slice of the region (cells c0..c1 are region
pixels 16 c0 .. 16 c1 + 75, see online/roi.py), so conv1-3 on the slice give the same cells as on
the whole region (every layer's offset is an integer: 8 c0, 4 c0, 2 c0, c0), and the RoIs, shifted
by (c0, r0), read the same values, including MXNet's clamping at the map's edges. The backward
pass (by far the dearest part of a step on CPU: MXNet 1.9's LRN gradient) then runs on those
windows only: on the synthetic benchmark, about a quarter to a half of the region's pixels.

RoIAlign here is MXNet's (`aligned=False`, `sample_ratio=1`): bin (i, j) of an RoI [x1, y1, x2, y2]
samples the point (x1 + (j + 0.5) w / n, y1 + (i + 0.5) h / n) bilinearly from cells
floor(x), floor(x) + 1 (clamped to the map; points beyond -1 or the map's size read 0).
"""
from __future__ import annotations

import numpy as np

from online import roi as R


def map_cells(region_px: int) -> int:
    """conv3 cells along a region side of `region_px` pixels (75 + 16 (cells - 1))."""
    return (int(region_px) - R.FIELD) // R.STRIDE + 1


def map_window(rois: np.ndarray, map_w: int, map_h: int, cells: int) -> tuple[int, int, int, int]:
    """(c0, r0, c1, r1), inclusive cell bounds of the window that holds every map cell the RoIs
    (N, 5) read with pooled_size (cells, cells); within [0, map_w - 1] x [0, map_h - 1]."""
    rois = np.asarray(rois, dtype=np.float64).reshape(-1, 5)
    # MXNet (aligned=False) stretches RoIs narrower than one cell to one cell.
    bw = np.maximum(rois[:, 3] - rois[:, 1], 1.0) / cells
    bh = np.maximum(rois[:, 4] - rois[:, 2], 1.0) / cells
    x_lo, x_hi = rois[:, 1] + 0.5 * bw, rois[:, 1] + (cells - 0.5) * bw
    y_lo, y_hi = rois[:, 2] + 0.5 * bh, rois[:, 2] + (cells - 0.5) * bh

    def span(lo, hi, size):
        a = int(np.floor(max(lo.min(), 0.0)))
        b = int(np.floor(max(hi.max(), 0.0))) + 1
        return min(max(a, 0), size - 1), min(max(b, 0), size - 1)
    c0, c1 = span(x_lo, x_hi, map_w)
    r0, r1 = span(y_lo, y_hi, map_h)
    return c0, r0, max(c1, c0), max(r1, r0)


def window_pixels(regions: np.ndarray, slot: int, window) -> np.ndarray:
    """(1, 3, h, w) view of region `slot`'s pixels whose conv3 map is the window's cells."""
    c0, r0, c1, r1 = window
    s = R.STRIDE
    return regions[slot:slot + 1, :, s * r0:s * r1 + R.FIELD, s * c0:s * c1 + R.FIELD]


def shift_rois(rois: np.ndarray, window) -> np.ndarray:
    """The RoIs on the window's map (batch index 0)."""
    c0, r0 = window[0], window[1]
    out = np.array(rois, dtype=np.float32, copy=True).reshape(-1, 5)
    out[:, 0] = 0
    out[:, [1, 3]] -= c0
    out[:, [2, 4]] -= r0
    return out


def frame_windows(rois: np.ndarray, regions_shape, cells: int):
    """Per frame slot present in `rois` (column 0): (slot, indices of its RoIs, window)."""
    rois = np.asarray(rois, dtype=np.float32).reshape(-1, 5)
    map_h, map_w = map_cells(regions_shape[2]), map_cells(regions_shape[3])
    slots = rois[:, 0].astype(np.int64)
    out = []
    for k in np.unique(slots):
        idx = np.flatnonzero(slots == k)
        out.append((int(k), idx, map_window(rois[idx], map_w, map_h, cells)))
    return out
