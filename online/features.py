"""conv3 features of boxes for the tracker: exact (one crop per box) or fast (one map per region).

Both sources answer the same call, `features(image, groups) -> [NDArray (n_i, feat_dim)]`, where
`groups` is a list of `(boxes, anchor)`: the boxes whose features are wanted and the target box that
sets the scale (fast mode; exact mode ignores it). The tracker never knows which source it has.

- `CropFeatures` (exact, MDNet): every box cropped to 107x107 and pushed through conv1-3, in fixed
  batches of `batch` (the last one padded) so the hybridized graph keeps one shape.
- `RoIFeatures` (fast, RT-MDNet's idea; geometry in online/roi.py): the groups' regions are planned
  (same scale + overlapping -> one shared region), each region goes through conv1-3 once, every box
  is pooled from its region's map with RoIAlign. Maps of the current image are kept until `new_image()`,
  so a later call whose region lies inside one already computed (same scale) pools from it.

Both run conv1-3 at `precision` (TrackerConfig.trunk_dtype, online/trunk_precision.py): fp32 runs
the trunk's own block; bf16 (CPU) and fp16 (GPU) a converted copy made at construction; int8 a
quantized copy made on the first call, calibrated on inputs of that call (the tracker's first call
is the first frame's samples: positives, negatives, box-regression and update samples) and kept for
the source's life (a VOT re-initialisation keeps it, like the convs). Calibration time goes to the
timer's `calib_s` (and so to the first frame). Features come out as float32 in every case.
"""
from __future__ import annotations

import time

import mxnet as mx
import numpy as np

from online import roi, trunk_precision, trunks
from online.crops import crop_regions
from online.network import Trunk


class Timer:
    """Seconds spent in the network (`net_s`) and elsewhere, by name."""

    def __init__(self):
        self.net_s = 0.0
        self.parts: dict[str, float] = {}

    def add(self, name: str, seconds: float):
        self.parts[name] = self.parts.get(name, 0.0) + seconds

    def snapshot(self) -> dict:
        return {"net_s": self.net_s, **self.parts}


def split_rows(feats: mx.nd.NDArray, sizes: list[int]) -> list[mx.nd.NDArray]:
    out, start = [], 0
    for n in sizes:
        out.append(feats[start:start + n])
        start += n
    return out


def _as_boxes(b) -> np.ndarray:
    return np.asarray(b, dtype=np.float64).reshape(-1, 4)


class CropFeatures:
    """Exact mode: conv1-3 on 107x107 crops of boxes, in fixed batches of `batch`."""

    def __init__(self, trunk: Trunk, batch: int, ctx, timer: Timer, precision: str = "fp32"):
        trunk_precision.check_supported(precision, ctx, trunk=trunks.of(trunk.spec))
        self.spec = trunk.spec
        self.precision = precision
        self.fp32_convs = trunk.convs
        self.fp32_convs.hybridize(static_alloc=True, static_shape=True)
        self.backend = trunk_precision.inference_backend(trunks.of(self.spec), ctx)
        # What runs: the trunk's block (fp32; fused by the trunk's inference backend where it names
        # one), a bf16 / fp16 copy made now, an int8 copy made on the first call.
        self.convs = None if precision == "int8" else trunk_precision.convert(self.fp32_convs, precision, ctx,
                                                                              backend=self.backend)
        self.batch = batch
        self.ctx = ctx
        self.timer = timer
        s = self.spec.input_size
        # Rows beyond the last real crop keep stale pixels: each image's conv result does not depend
        # on the other images in the batch, so padding needs no clearing.
        self._buf = np.full((batch, 3, s, s), self.spec.mean, dtype=np.float32)
        # Copying into a preallocated device array is ~8x faster than mx.nd.array() on the CPU,
        # which allocates (and page-faults) 35 MB per batch at 107x107x256.
        self._x = mx.nd.zeros(self._buf.shape, ctx=ctx)

    def new_image(self) -> None:
        pass

    def window(self, anchor, image_size) -> None:
        return None  # exact crops reach anywhere: whole-image negatives use the whole image

    def covered(self, boxes, anchor) -> np.ndarray:
        """Every box can be cropped: all True (see RoIFeatures.covered)."""
        return np.ones(len(_as_boxes(boxes)), dtype=bool)

    def __call__(self, image: np.ndarray, groups: list, reuse: bool = False) -> list[mx.nd.NDArray]:
        boxes = [_as_boxes(b) for b, _ in groups]
        return split_rows(self.crops(image, np.concatenate(boxes)), [len(b) for b in boxes])

    def _calibrate(self, image: np.ndarray, boxes: np.ndarray) -> None:
        """int8: quantize the convs, calibrated on CALIB_CROPS crops spread evenly over `boxes`
        (for the first frame: every sample kind, in the order the tracker passes them)."""
        t0 = time.perf_counter()
        n = min(len(boxes), trunk_precision.CALIB_CROPS)
        pick = np.unique(np.linspace(0, len(boxes) - 1, n).round().astype(int))
        crops = crop_regions(image, boxes[pick], self.spec.input_size, self.spec.padding, self.spec.mean)
        self.convs = trunk_precision.convert(self.fp32_convs, self.precision, self.ctx,
                                             calib=[mx.nd.array(crops, ctx=self.ctx)])
        self.timer.add("calib_s", time.perf_counter() - t0)

    def crops(self, image: np.ndarray, boxes: np.ndarray) -> mx.nd.NDArray:
        if self.convs is None and len(boxes):
            self._calibrate(image, boxes)
        outs = []
        for start in range(0, len(boxes), self.batch):
            chunk = boxes[start:start + self.batch]
            t0 = time.perf_counter()
            crop_regions(image, chunk, self.spec.input_size, self.spec.padding, self.spec.mean, out=self._buf)
            self._x[:] = self._buf  # waits until the previous batch's conv has read it
            t1 = time.perf_counter()
            y = self.convs(self._x)
            y.wait_to_read()
            t2 = time.perf_counter()
            self.timer.add("crop_s", t1 - t0)
            self.timer.add("conv_s", t2 - t1)
            self.timer.net_s += t2 - t1
            outs.append(y[:len(chunk)] if len(chunk) < self.batch else y)
        if not outs:
            return mx.nd.zeros((0, self.spec.feat_dim), ctx=self.ctx)
        return outs[0] if len(outs) == 1 else mx.nd.concat(*outs, dim=0)


class RoIFeatures:
    """Fast mode: one conv1-3 pass per planned region, every box pooled with RoIAlign."""

    BUCKET_CELLS = 4  # region sides rounded up to 4 conv3 cells (64 px): few shapes, compiled once

    def __init__(self, trunk: Trunk, max_side: int, ctx, timer: Timer, stride: int = 8,
                 precision: str = "fp32"):
        trunk_precision.check_supported(precision, ctx, trunk=trunks.of(trunk.spec))
        self.spec = trunk.spec
        roi.check_spec(self.spec)
        self.stride = int(stride)
        self.precision = precision
        self.fp32_maps = trunk.feature_map(self.stride)
        # Region sizes change from frame to frame: a cached graph re-plans per shape (no static_shape).
        self.fp32_maps.hybridize()
        self.backend = trunk_precision.inference_backend(trunks.of(self.spec), ctx)
        # What runs: the block itself (fp32; fused where the trunk names a backend), a bf16 / fp16
        # copy made now, an int8 copy made on the first region (calibrated on that region's pixels:
        # the first frame's region around the target).
        self.maps = (None if precision == "int8"
                     else trunk_precision.convert(self.fp32_maps, precision, ctx, static_shape=False,
                                                  backend=self.backend))
        self.max_side = int(max_side)
        self.ctx = ctx
        self.timer = timer
        self._cache: list[tuple[roi.Region, mx.nd.NDArray]] = []
        self.regions_run = 0  # conv passes so far (a benchmark figure)
        self.region_px = 0  # region pixels pushed through the convs so far

    def new_image(self) -> None:
        """Forget the previous image's maps (the tracker calls this once per frame)."""
        self._cache = []

    def window(self, anchor, image_size) -> tuple[float, float, float, float]:
        """The image rectangle (x, y, w, h) whose anchor-sized boxes all fit in one region around
        `anchor`: where fast mode draws whole-image negatives when the image is larger than that."""
        return roi.window(anchor, self.spec, self.max_side, image_size)

    def covered(self, boxes, anchor, searched=None) -> np.ndarray:
        """Which boxes have every sample point (and the spec's margin) inside a map this image
        already has at `anchor`'s scale: their features can be pooled without another conv pass
        (TrackerConfig.stored_region = candidates). `searched` = (boxes, anchor) of an earlier call:
        only the region that call alone would have planned counts (not a larger one shared with
        other targets), so a target keeps the same samples alone or beside others."""
        boxes = _as_boxes(boxes)
        scale = roi.region_scale(_as_boxes(anchor)[0], self.spec)
        out = np.zeros(len(boxes), dtype=bool)
        if not len(boxes):
            return out
        cu, cv, hu, hv = roi._sample_span(boxes, scale[0], scale[1], self.spec)
        m = self.spec.map_margin
        def inside(region):
            x1, y1, x2, y2 = region.extent
            return (cu - hu - m >= x1) & (cu + hu + m <= x2) & (cv - hv - m >= y1) & (cv + hv + m <= y2)
        for have, _ in self._cache:
            if (have.scale, have.stride) == (scale, self.stride):
                out |= inside(have)
        if searched is not None:
            s_boxes, s_anchor = _as_boxes(searched[0]), _as_boxes(searched[1])[0]
            own = roi.cover(s_boxes, roi.region_scale(s_anchor, self.spec), self.spec, self.max_side, s_anchor,
                            self.stride).bucketed(self.BUCKET_CELLS, self.max_side)
            out &= inside(own) if (own.scale, own.stride) == (scale, self.stride) else False
        return out

    def _map_for(self, image: np.ndarray, region: roi.Region, reuse: bool = False
                 ) -> tuple[roi.Region, mx.nd.NDArray]:
        for have, fmap in self._cache:
            if have.contains(region):
                return have, fmap
        if reuse:
            # Boxes checked with `covered`: any map of this scale that overlaps them holds their
            # sample points (the planned region itself may be bucketed past the map's edge).
            for have, fmap in self._cache:
                if (have.scale, have.stride) == (region.scale, region.stride) and have.overlaps(region):
                    return have, fmap
        t0 = time.perf_counter()
        pixels = roi.warp_region(image, region, self.spec.mean)
        x = mx.nd.array(pixels.transpose(2, 0, 1)[None], ctx=self.ctx, dtype=np.float32)
        t1 = time.perf_counter()
        self.timer.add("crop_s", t1 - t0)
        if self.maps is None:
            self.maps = trunk_precision.convert(self.fp32_maps, self.precision, self.ctx, calib=[x],
                                                static_shape=False)
            t_cal = time.perf_counter()
            self.timer.add("calib_s", t_cal - t1)
            t1 = t_cal
        fmap = self.maps(x)
        fmap.wait_to_read()
        t2 = time.perf_counter()
        self.timer.add("conv_s", t2 - t1)
        self.timer.net_s += t2 - t1
        self.regions_run += 1
        self.region_px += region.width * region.height
        self._cache.append((region, fmap))
        return region, fmap

    def __call__(self, image: np.ndarray, groups: list, reuse: bool = False) -> list[mx.nd.NDArray]:
        """`reuse`: the boxes are `covered` by a map of this image: pool from it, never a new pass."""
        groups = [(_as_boxes(b), _as_boxes(a)[0]) for b, a in groups]
        out: list = [None] * len(groups)
        live = [i for i, (b, _) in enumerate(groups) if len(b)]
        for i in set(range(len(groups))) - set(live):
            out[i] = mx.nd.zeros((0, self.spec.feat_dim), ctx=self.ctx)
        regions, owner = roi.plan([groups[i] for i in live], self.spec, self.max_side, self.stride)
        for r_index, region in enumerate(regions):
            region = region.bucketed(self.BUCKET_CELLS, self.max_side)
            mine = [live[k] for k, o in enumerate(owner) if o == r_index]
            have, fmap = self._map_for(image, region, reuse)
            sizes = [len(groups[i][0]) for i in mine]
            t0 = time.perf_counter()
            rois = np.concatenate([roi.rois(groups[i][0], have, self.spec) for i in mine])
            pooled = roi.pool(mx.nd, fmap, mx.nd.array(rois, ctx=self.ctx), self.spec)
            pooled.wait_to_read()
            self.timer.net_s += time.perf_counter() - t0
            self.timer.add("pool_s", time.perf_counter() - t0)
            for i, f in zip(mine, split_rows(pooled, sizes)):
                out[i] = f
        return out
