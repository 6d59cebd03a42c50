"""Stage two and three of the data path: a step's frames and boxes, then labelled crops.

One step = one domain, `sampling.frames` frames (8) drawn from its training frames, and per frame
boxes from online/sampling.py (defaults: py-MDNet's pretraining samplers, see SamplingConfig):
- positives: IoU >= 0.7 with the ground truth (uniform, trans 0.1, scale 1.3);
- negatives: IoU <= 0.5 (uniform, trans 2, scale 1.6; optionally a fraction anywhere in the image).
With hard mining on, the negatives drawn are the POOL (`mining.pool`, 1024 per step); the network
scores them in the main thread and online.mining.select_hardest keeps the `sampling.neg` (96) with
the highest positive score. Mining needs the current weights, so workers can only prepare the pool.

Counts are split over the frames as evenly as possible (32 positives over 8 frames: 4 each). A
frame where the IoU band cannot be filled (tiny images) is topped up by repeating its own samples,
so every step has the same batch shape.

Everything random comes from the generator passed in, which the caller seeds from (seed, rank,
step): a step's samples do not depend on which worker thread made them or when.

Crops are stored as uint8: `crop_regions` warps uint8 frames with an integer-valued result, so the
cast is lossless and a prefetched step takes a quarter of the memory (36 MB instead of 145 MB for
1056 crops of 107 px).

Fast mode (`model.mode: fast`, RT-MDNet's idea; geometry in online/roi.py) draws exactly the same
boxes from the same generator, then makes no crops: each frame becomes ONE region of the image at
the target's scale (`roi.region_scale`) that covers every box of the frame (`roi.cover`, anchored
on the ground truth, at most `model.max_region` px per side), and every box becomes an RoI on that
region's conv3 map (`roi.rois`, batch index = the frame's slot). Padding policy: all frames of a
step go into one (F, 3, H, W) uint8 tensor, so every region is grown to the step's largest width
and height (x0, y0 kept; sides are 75 + 16 k px, so the grown region stays on the lattice) BEFORE
it is warped; the extra pixels are real image (or the mean outside the frame), never a pad value
the network would see only in training. Memory is bounded by max_region: at most F x 3 x
max_region^2 bytes per prepared step (8 MB at 8 frames and 1024 px; typically 4 MB).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from online import roi
from online.boxes import iou
from online.crops import crop_regions
from online.sampling import SamplerSpec, sample_boxes, sample_by_iou


MODES = ("exact", "fast")


@dataclass
class StepBatch:
    """One step's samples. Exact mode: `pos`/`neg` are uint8 crops. Fast mode: `pos`/`neg` are
    float32 RoIs (N, 5) [slot, x1, y1, x2, y2] on the conv3 maps of `regions`."""
    step: int
    domain: int
    frames: np.ndarray  # (F,) frame indices in the sequence
    pos: np.ndarray  # exact: (P, 3, S, S) uint8 crops; fast: (P, 5) float32 RoIs
    pos_frame: np.ndarray  # (P,) slot 0..F-1 of the frame each positive comes from
    neg: np.ndarray  # exact: (M, 3, S, S) uint8 crops; fast: (M, 5) RoIs. The mining pool, or the negatives
    neg_frame: np.ndarray  # (M,)
    prep_s: float = 0.0  # worker time spent making it
    pos_boxes: np.ndarray | None = None  # (P, 4) image boxes x, y, w, h (both modes)
    neg_boxes: np.ndarray | None = None  # (M, 4)
    regions: np.ndarray | None = None  # fast: (F, 3, H, W) uint8 region pixels, slot order
    region_list: list | None = None  # fast: the F (padded) online.roi.Region of the slots

    @property
    def fast(self) -> bool:
        return self.regions is not None


def split_evenly(total: int, parts: int) -> np.ndarray:
    """`total` as `parts` integers differing by at most one, larger first: 10 over 4 -> 3 3 2 2."""
    base, extra = divmod(int(total), int(parts))
    return np.array([base + (1 if i < extra else 0) for i in range(parts)], dtype=np.int64)


def pick_frames(rng: np.random.Generator, frames: np.ndarray, n: int) -> np.ndarray:
    """n distinct frames when there are enough, else all of them plus repeats."""
    frames = np.asarray(frames)
    if len(frames) == 0:
        raise ValueError("no usable frames to sample from")
    if len(frames) >= n:
        return np.sort(rng.choice(frames, n, replace=False))
    extra = rng.choice(frames, n - len(frames), replace=True)
    return np.sort(np.concatenate([frames, extra]))


def _fill(rng: np.random.Generator, boxes: np.ndarray, n: int, fallback) -> np.ndarray:
    """Exactly n boxes: repeat drawn ones when short (or use `fallback` when none were found)."""
    if len(boxes) >= n:
        return boxes[:n]
    if len(boxes) == 0:
        boxes = np.asarray(fallback, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([boxes, boxes[rng.integers(0, len(boxes), n - len(boxes))]], axis=0)


def positive_boxes(rng, box, image_size, n: int, s) -> np.ndarray:
    """n positives (IoU >= s.overlap_pos) around `box`; `s` is a SamplingConfig."""
    if n <= 0:
        return np.zeros((0, 4))
    spec = SamplerSpec(s.sampler_pos, trans=s.trans_pos, scale=s.scale_pos, min_size=s.min_box_size)
    found = sample_by_iou(rng, spec, box, image_size, n, (s.overlap_pos, 1.0))
    return _fill(rng, found, n, box)  # the ground truth itself is the positive of last resort


def negative_boxes(rng, box, image_size, n: int, s) -> np.ndarray:
    """n negatives (IoU <= s.overlap_neg): around `box`, and a fraction anywhere in the image."""
    if n <= 0:
        return np.zeros((0, 4))
    n_whole = int(round(n * s.neg_whole_fraction))
    n_near = n - n_whole
    whole = SamplerSpec("whole", scale=s.scale_neg, min_size=s.min_box_size)
    parts = []
    if n_near:
        spec = SamplerSpec(s.sampler_neg, trans=s.trans_neg, scale=s.scale_neg, min_size=s.min_box_size)
        parts.append(sample_by_iou(rng, spec, box, image_size, n_near, (0.0, s.overlap_neg)))
    if n_whole:
        parts.append(sample_by_iou(rng, whole, box, image_size, n_whole, (0.0, s.overlap_neg)))
    found = np.concatenate(parts, axis=0)
    if len(found) == 0:
        # Nothing in the band (target fills the image): the least-overlapping whole-image boxes.
        cand = sample_boxes(rng, whole, box, image_size, 4 * n)
        found = cand[np.argsort(iou(cand, box), kind="stable")[:n]]
    return _fill(rng, found, n, found)


def crop_u8(image: np.ndarray, boxes: np.ndarray, spec, out: np.ndarray) -> None:
    """Crops of `boxes` into the uint8 array `out` (len(boxes), 3, S, S)."""
    # crop_regions works in float32 (its output is integral); cast per frame into the uint8 buffer.
    out[:] = crop_regions(image, boxes, spec.input_size, spec.padding)


def region_batch(images: list, groups: list, spec, max_region: int) -> tuple[np.ndarray, list]:
    """Fast mode's pixels for several frames: `groups[i]` = (boxes (N, 4), anchor box) of
    `images[i]`. Each frame's region is `roi.cover` of its boxes at the anchor's scale; all are
    grown to the largest width and height (top-left kept, so cells stay on the lattice) and warped
    into one (F, 3, H, W) uint8 array. Returns it and the F grown Regions."""
    regions = [roi.cover(boxes, roi.region_scale(anchor, spec), spec, max_region, anchor=anchor)
               for boxes, anchor in groups]
    width = max(r.width for r in regions)
    height = max(r.height for r in regions)
    regions = [dataclasses.replace(r, width=width, height=height) for r in regions]
    out = np.empty((len(regions), 3, height, width), np.uint8)
    buf = np.empty((height, width, 3), np.uint8)
    for i, (image, region) in enumerate(zip(images, regions)):
        roi.warp_region(image, region, out=buf)
        out[i] = buf.transpose(2, 0, 1)
    return out, regions


def prepare_step(domain, step: int, rng: np.random.Generator, sampling, n_neg: int, spec,
                 mode: str = "exact", max_region: int = 1024) -> StepBatch:
    """Frames, boxes and samples of one step (`n_neg` = pool size with mining, else neg): uint8
    crops (exact mode) or one region per frame and RoIs (fast mode). Both modes draw the same boxes
    from the same generator."""
    import time
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    t0 = time.perf_counter()
    fast = mode == "fast"
    seq = domain.sequence
    frames = pick_frames(rng, domain.train_frames, sampling.frames)
    n_pos = split_evenly(sampling.pos, len(frames))
    n_negs = split_evenly(n_neg, len(frames))
    s = spec.input_size
    if not fast:
        pos = np.empty((int(n_pos.sum()), 3, s, s), np.uint8)
        neg = np.empty((int(n_negs.sum()), 3, s, s), np.uint8)
    pos_frame = np.repeat(np.arange(len(frames)), n_pos)
    neg_frame = np.repeat(np.arange(len(frames)), n_negs)
    p_off = n_off = 0
    pos_boxes, neg_boxes, images, groups = [], [], [], []
    for slot, f in enumerate(frames):
        image = seq.frame(int(f))
        size = (image.shape[1], image.shape[0])
        box = seq.boxes[int(f)]
        pb = positive_boxes(rng, box, size, int(n_pos[slot]), sampling)
        nb = negative_boxes(rng, box, size, int(n_negs[slot]), sampling)
        pos_boxes.append(pb)
        neg_boxes.append(nb)
        if fast:
            images.append(image)
            groups.append((np.concatenate([pb, nb], axis=0), box))
            continue
        crop_u8(image, pb, spec, pos[p_off:p_off + len(pb)])
        crop_u8(image, nb, spec, neg[n_off:n_off + len(nb)])
        p_off += len(pb)
        n_off += len(nb)
    regions = region_list = None
    if fast:
        regions, region_list = region_batch(images, groups, spec, max_region)
        pos = np.concatenate([roi.rois(pb, r, spec, batch_index=k)
                              for k, (pb, r) in enumerate(zip(pos_boxes, region_list))], axis=0)
        neg = np.concatenate([roi.rois(nb, r, spec, batch_index=k)
                              for k, (nb, r) in enumerate(zip(neg_boxes, region_list))], axis=0)
    return StepBatch(step=step, domain=domain.index, frames=frames, pos=pos, pos_frame=pos_frame,
                     neg=neg, neg_frame=neg_frame, prep_s=time.perf_counter() - t0,
                     pos_boxes=np.concatenate(pos_boxes, axis=0), neg_boxes=np.concatenate(neg_boxes, axis=0),
                     regions=regions, region_list=region_list)


@dataclass
class ValSamples:
    """Held-out samples of one domain: sampled pos/neg (loss, accuracies) and tracker-like candidates.

    Validation scores the net the way it is trained: exact mode crops every sample; fast mode
    pools every sample from its frame's region (`crops` is None, `regions` + `rois` are set)."""
    crops: np.ndarray | None  # (N, 3, S, S) uint8: pos, then neg, then candidates (per frame); None in fast mode
    label: np.ndarray  # (N,) 1 positive, 0 negative, -1 neither (candidate with 0.5 < IoU < 0.7)
    kind: np.ndarray  # (N,) 0 sampled positive, 1 sampled negative, 2 candidate
    frame: np.ndarray  # (N,) slot of the frame
    regions: np.ndarray | None = None  # fast: (F, 3, H, W) uint8
    rois: np.ndarray | None = None  # fast: (N, 5) float32 RoIs on the regions' conv3 maps


def validation_samples(domain, rng, sampling, val, spec, mode: str = "exact",
                       max_region: int = 1024) -> ValSamples | None:
    """Samples from `val.frames_per_domain` held-out frames (the first ones when there are few);
    the same boxes in both modes."""
    frames = np.asarray(domain.val_frames)
    if len(frames) == 0:
        return None
    nf = min(val.frames_per_domain, len(frames))
    # Evenly spread over the held-out tail, so the same frames are used every epoch.
    frames = frames[np.linspace(0, len(frames) - 1, nf).round().astype(int)]
    n_pos = split_evenly(sampling.pos, nf)
    n_neg = split_evenly(sampling.neg, nf)
    cand_spec = SamplerSpec("gaussian", trans=val.trans_cand, scale=val.scale_cand, min_size=sampling.min_box_size)
    if mode not in MODES:
        raise ValueError(f"mode {mode!r} is not one of {', '.join(MODES)}")
    fast = mode == "fast"
    crops, label, kind, slot, images, groups = [], [], [], [], [], []
    seq = domain.sequence
    for k, f in enumerate(frames):
        image = seq.frame(int(f))
        size = (image.shape[1], image.shape[0])
        box = seq.boxes[int(f)]
        pb = positive_boxes(rng, box, size, int(n_pos[k]), sampling)
        nb = negative_boxes(rng, box, size, int(n_neg[k]), sampling)
        cb = sample_boxes(rng, cand_spec, box, size, val.candidates)
        r = iou(cb, box)
        cl = np.where(r >= sampling.overlap_pos, 1, np.where(r <= sampling.overlap_neg, 0, -1))
        boxes = np.concatenate([pb, nb, cb], axis=0)
        if fast:
            images.append(image)
            groups.append((boxes, box))
        else:
            out = np.empty((len(boxes), 3, spec.input_size, spec.input_size), np.uint8)
            crop_u8(image, boxes, spec, out)
            crops.append(out)
        label.append(np.concatenate([np.ones(len(pb)), np.zeros(len(nb)), cl]))
        kind.append(np.concatenate([np.zeros(len(pb)), np.ones(len(nb)), np.full(len(cb), 2)]))
        slot.append(np.full(len(boxes), k))
    regions = rois = None
    if fast:
        regions, region_list = region_batch(images, groups, spec, max_region)
        rois = np.concatenate([roi.rois(b, r, spec, batch_index=k)
                               for k, ((b, _), r) in enumerate(zip(groups, region_list))], axis=0)
    return ValSamples(crops=np.concatenate(crops) if crops else None, label=np.concatenate(label).astype(np.int64),
                      kind=np.concatenate(kind).astype(np.int64), frame=np.concatenate(slot).astype(np.int64),
                      regions=regions, rois=rois)
