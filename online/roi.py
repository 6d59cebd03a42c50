"""Fast mode's geometry: one feature map per image region, every box's features pooled from it.

Exact MDNet warps each box to its own 107x107 crop (the box fills the central 75 px) and runs
conv1-3 on it: 3x3 conv3 cells per box. Fast mode (RT-MDNet's idea) warps one REGION of the image
at one scale, runs conv1-3 on it once, and pools a 3x3 grid of conv3 values for every box with
RoIAlign (`mx.nd.contrib.ROIAlign`). The geometry below makes the pooled grid land where exact
mode's conv3 cells are, so that for a box lying on the map's grid both are the same numbers:

- conv3 has stride 16 and a receptive field of 75 px (conv1 7/2, pool1 3/2, conv2 5/2, pool2 3/2,
  conv3 3/1, no padding). In a 107 px crop the three cells are centred at 37.5, 53.5, 69.5
  (continuous coordinates): -16, 0, +16 px around the crop centre, i.e. +-16/75 of the box size.
- The region is the image scaled so that the REFERENCE box (the target) maps to 75x75 px, as in
  its exact crop: separate x and y scales, as exact mode warps every box to a square. Scales are
  rounded to powers of 2^(1/8) (a target is 75 px +-4.4%) so that targets of similar size share a
  scale and therefore a map.
- Region origins lie on one global lattice per scale (multiples of 16 px of the scaled image), so
  a region's conv3 cell centres are always at scaled coordinates 16 m + 37.5: two regions at the
  same scale agree wherever both cover the same cells, whichever boxes made them. That is what
  makes merged maps (several targets, one region) give each target the same features as alone.
- A box's RoI is centred on its centre with 3 bins of pitch (box size at region scale) x 16/75 px,
  sampled once per bin (`sample_ratio=1`): a box of the target's size is sampled exactly where
  exact mode's cells are; larger boxes are sampled with a wider pitch (exact mode would instead
  shrink the image; that difference is what the accuracy comparison in docs/tracking.md measures).
- A region covers every RoI sample point plus the 37.5 px receptive-field margin, so no point falls
  off the map, up to `max_side` px per side (then the region is centred on the anchor box and
  points outside read the map's edge). Image pixels outside the frame are the mean (128), as in
  exact crops.

The numbers above are VGG-M's. Every function reads the geometry from the trunk's spec
(online/trunks): `map_stride` (16), `map_centre0` (where cell 0 of a crop's map is centred: 37.5 for
VGG-M's valid convolutions, 0.5 for MobileNetV2's padded ones), `map_field(stride)` (a region of
field + stride (cells - 1) px gives `cells` cells: 75 for VGG-M, the stride for padded convs) and
`map_margin` (region px kept around every sample point). A crop's grid of cells need not be
centred in the crop (MobileNetV2's sits 5 px up-left of centre): RoIs keep the same offset, in
box units, so a box's pooled cells fall where its exact crop's are.

Pretraining and the tracker both use these functions; nothing here knows which one calls.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

STRIDE = 16  # VGG-M conv3 stride in input pixels
FIELD = 75  # VGG-M conv3 receptive field in input pixels
SCALE_STEP = 2.0 ** (1.0 / 8.0)  # region scales are powers of this


def check_spec(spec) -> None:
    """Fast mode needs a crop's map to cover the crop (VGG-M: input_size = 75 + 16 (cells - 1))."""
    cells = spec.conv3_size
    field = spec.map_field(spec.map_stride)
    if cells < 1 or spec.input_size - field > spec.map_stride * (cells - 1):
        raise ValueError(f"fast mode needs input_size <= {field} + {spec.map_stride} x (cells - 1); "
                         f"input_size {spec.input_size} gives a {cells}x{cells} map")


def grid_offset(spec) -> float:
    """Crop px from the crop's centre to the centre of its map's grid of cells (0 for VGG-M)."""
    return spec.map_centre0 + spec.map_stride * (spec.conv3_size - 1) / 2.0 - spec.input_size / 2.0


def inner_size(spec) -> int:
    """Pixels a box spans in its exact crop (107 - 2 x 16 = 75)."""
    return spec.input_size - 2 * spec.padding


def region_scale(box, spec) -> tuple[float, float]:
    """(sx, sy): image pixels per region pixel so that `box` spans ~inner_size px, quantised."""
    w, h = float(box[2]), float(box[3])
    inner = inner_size(spec)

    def q(v):
        return SCALE_STEP ** round(math.log(max(v, 1e-6) / inner, SCALE_STEP))
    return q(w), q(h)


@dataclass(frozen=True)
class Region:
    """A window of the image warped to a grid: region pixel (i, j) covers scaled-image pixel
    (x0 + j, y0 + i); scaled-image coordinate u = image x / sx."""
    sx: float  # image px per region px
    sy: float
    x0: int  # top-left in scaled-image px, a multiple of STRIDE
    y0: int
    width: int  # region px: field + stride x (cells - 1)
    height: int
    stride: int = STRIDE  # map stride: 16 (conv3 as in MDNet) or 8 (dense: pool2 stride 1, conv3 dilated)
    field: int = FIELD  # the trunk's spec.map_field(stride): 75 for VGG-M, the stride for padded convs

    @property
    def scale(self) -> tuple[float, float]:
        return (self.sx, self.sy)

    @property
    def cells(self) -> tuple[int, int]:
        """conv3 map size (width, height)."""
        return ((self.width - self.field) // self.stride + 1, (self.height - self.field) // self.stride + 1)

    @property
    def extent(self) -> tuple[int, int, int, int]:
        return (self.x0, self.y0, self.x0 + self.width, self.y0 + self.height)

    def overlaps(self, other: "Region") -> bool:
        a, b = self.extent, other.extent
        return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]

    def contains(self, other: "Region") -> bool:
        a, b = self.extent, other.extent
        return (self.scale, self.stride) == (other.scale, other.stride) and a[0] <= b[0] and a[1] <= b[1] and b[2] <= a[2] and b[3] <= a[3]

    def bucketed(self, step: int, max_side: int) -> "Region":
        """This region grown (about its centre, on the lattice) to a whole number of `step` cells per
        side, where that stays within max_side: fewer distinct shapes, so oneDNN reuses its compiled
        convolutions across frames."""
        st = self.stride

        def grow(x0: int, size: int) -> tuple[int, int]:
            cells = (size - self.field) // st + 1
            extra = -cells % step
            if size + st * extra > max_side:
                return x0, size
            return x0 - st * (extra // 2), size + st * extra
        x0, w = grow(self.x0, self.width)
        y0, h = grow(self.y0, self.height)
        return Region(self.sx, self.sy, x0, y0, w, h, st, self.field)

    def union(self, other: "Region") -> "Region":
        a, b = self.extent, other.extent
        return _snap(self.sx, self.sy, min(a[0], b[0]), min(a[1], b[1]), max(a[2], b[2]), max(a[3], b[3]),
                     self.stride, self.field)


def _span(lo: float, hi: float, stride: int, field: int) -> tuple[int, int]:
    """Smallest lattice-aligned window [x0, x0 + field + stride k) containing [lo, hi)."""
    x0 = int(math.floor(lo / stride)) * stride
    k = max(int(math.ceil((hi - x0 - field) / stride)), 0)
    return x0, field + stride * k


def _snap(sx, sy, u1, v1, u2, v2, stride: int, field: int) -> Region:
    x0, w = _span(u1, u2, stride, field)
    y0, h = _span(v1, v2, stride, field)
    return Region(sx, sy, x0, y0, w, h, stride, field)


def _sample_span(boxes: np.ndarray, sx: float, sy: float, spec):
    """Scaled-image centres and the half-spread of each box's outer sample points (x and y)."""
    inner = inner_size(spec)
    half_cells = (spec.conv3_size - 1) / 2.0
    off = grid_offset(spec) / inner  # the grid's centre, in box sizes from the box's centre
    cu = (boxes[:, 0] + boxes[:, 2] * (0.5 + off)) / sx
    cv = (boxes[:, 1] + boxes[:, 3] * (0.5 + off)) / sy
    pu = boxes[:, 2] / sx * spec.map_stride / inner  # sample pitch in region px
    pv = boxes[:, 3] / sy * spec.map_stride / inner
    return cu, cv, half_cells * pu, half_cells * pv


def cover(boxes, scale: tuple[float, float], spec, max_side: int, anchor=None, stride: int = STRIDE) -> Region:
    """The region at `scale` whose map reaches every sample point of every box, with the spec's
    margin (VGG-M: the full receptive field); at most `max_side` px per side (then centred on
    `anchor`, default the boxes' mean centre)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    sx, sy = scale
    field = spec.map_field(stride)
    cu, cv, hu, hv = _sample_span(boxes, sx, sy, spec)
    m = spec.map_margin
    u1, u2 = float((cu - hu).min()) - m, float((cu + hu).max()) + m
    v1, v2 = float((cv - hv).min()) - m, float((cv + hv).max()) + m
    region = _snap(sx, sy, u1, v1, u2, v2, stride, field)
    limit = field + stride * max((int(max_side) - field) // stride, 0)
    if region.width <= limit and region.height <= limit:
        return region
    if anchor is None:
        ac, av = float(cu.mean()), float(cv.mean())
    else:
        a = np.asarray(anchor, dtype=np.float64)
        ac, av = (a[0] + a[2] / 2) / sx, (a[1] + a[3] / 2) / sy

    def fit(lo: int, size: int, c: float) -> tuple[int, int]:
        if size <= limit:
            return lo, size
        return int(math.floor((c - limit / 2.0) / stride)) * stride, limit
    x0, w = fit(region.x0, region.width, ac)
    y0, h = fit(region.y0, region.height, av)
    return Region(sx, sy, x0, y0, w, h, stride, field)


def window(anchor, spec, max_side: int, image_size) -> tuple[float, float, float, float]:
    """The image rectangle (x, y, w, h), cut to the image, in which anchor-sized boxes keep all their
    sample points inside one max_side region centred on `anchor` (fast mode's whole-image negatives
    are drawn here: a small target in a large image would otherwise need a huge map)."""
    a = np.asarray(anchor, dtype=np.float64)
    sx, sy = region_scale(a, spec)
    reach = (max_side / 2.0 - spec.map_margin - spec.map_stride * (spec.conv3_size - 1) / 2.0)  # region px
    cx, cy = a[0] + a[2] / 2, a[1] + a[3] / 2
    half_w = max(reach * sx, 0.0) + a[2] / 2
    half_h = max(reach * sy, 0.0) + a[3] / 2
    W, H = image_size
    x1, y1 = max(cx - half_w, 0.0), max(cy - half_h, 0.0)
    x2, y2 = min(cx + half_w, float(W)), min(cy + half_h, float(H))
    return (x1, y1, x2 - x1, y2 - y1)


def rois(boxes, region: Region, spec, batch_index: int = 0) -> np.ndarray:
    """(N, 5) RoIs [batch_index, x1, y1, x2, y2] in conv3-map cell coordinates, for
    ROIAlign(pooled_size=(cells, cells), spatial_scale=1, sample_ratio=1)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    cu, cv, _, _ = _sample_span(boxes, region.sx, region.sy, spec)
    inner = inner_size(spec)
    n = spec.conv3_size
    st = region.stride
    first = spec.map_centre0  # continuous coordinate of cell 0's centre in region px
    pitch = spec.map_stride  # a crop's cell pitch in crop px
    # Centre in map cells; half the RoI = n/2 bins, a bin = the crop's cell pitch (pitch crop px,
    # i.e. pitch x box px / inner at region scale) in map cells of `st` px.
    c = (cu - region.x0 - first) / st
    r = (cv - region.y0 - first) / st
    hw = n / 2.0 * boxes[:, 2] / region.sx / inner * pitch / st
    hh = n / 2.0 * boxes[:, 3] / region.sy / inner * pitch / st
    out = np.empty((len(boxes), 5), dtype=np.float32)
    out[:, 0] = batch_index
    out[:, 1] = c - hw
    out[:, 2] = r - hh
    out[:, 3] = c + hw
    out[:, 4] = r + hh
    return out


def warp_region(image: np.ndarray, region: Region, fill: float = 128.0, out: np.ndarray | None = None) -> np.ndarray:
    """The region's pixels (H x W x 3 uint8, same dtype as `image`); outside the frame = `fill`.

    One affine warp, with the same pixel-centre convention as online.crops.crop_regions, so a crop
    whose top-left lies on the lattice samples exactly the same image positions as the region.
    """
    sx, sy = region.sx, region.sy
    m = np.array([[sx, 0.0, region.x0 * sx + 0.5 * sx - 0.5],
                  [0.0, sy, region.y0 * sy + 0.5 * sy - 0.5]])
    return cv2.warpAffine(image, m, (region.width, region.height), dst=out,
                          flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=(fill, fill, fill))


def pool(F, fmap, roi_array, spec):
    """conv3 map(s) (B, C, h, w) + RoIs (N, 5) -> (N, C x cells x cells), the layout of
    ConvStage's flattened output (channel, row, column)."""
    n = spec.conv3_size
    return F.flatten(F.contrib.ROIAlign(fmap, roi_array, pooled_size=(n, n), spatial_scale=1.0,
                                        sample_ratio=1))


def plan(groups: list, spec, max_side: int, stride: int = STRIDE) -> tuple[list[Region], list[int]]:
    """Regions for several box groups [(boxes, anchor_box), ...]: each group's scale comes from its
    anchor; groups at the same scale whose regions overlap share one (their union, when it fits in
    max_side). Returns the regions and, per group, the index of its region."""
    regions: list[Region] = []
    owner: list[int] = []
    for boxes, anchor in groups:
        r = cover(boxes, region_scale(anchor, spec), spec, max_side, anchor, stride)
        for i, other in enumerate(regions):
            if (other.scale, other.stride) == (r.scale, r.stride) and other.overlaps(r):
                u = other.union(r)
                if max(u.width, u.height) <= max_side:
                    # Earlier groups on this region keep it; they are redirected to the union.
                    regions[i] = u
                    owner.append(i)
                    break
        else:
            regions.append(r)
            owner.append(len(regions) - 1)
    return regions, owner
