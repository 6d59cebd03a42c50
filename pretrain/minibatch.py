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
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from online.boxes import iou
from online.crops import crop_regions
from online.sampling import SamplerSpec, sample_boxes, sample_by_iou


@dataclass
class StepBatch:
    step: int
    domain: int
    frames: np.ndarray  # (F,) frame indices in the sequence
    pos: np.ndarray  # (P, 3, S, S) uint8 crops
    pos_frame: np.ndarray  # (P,) slot 0..F-1 of the frame each positive comes from
    neg: np.ndarray  # (M, 3, S, S) uint8 crops: the mining pool, or the negatives themselves
    neg_frame: np.ndarray  # (M,)
    prep_s: float = 0.0  # worker time spent making it


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


def prepare_step(domain, step: int, rng: np.random.Generator, sampling, n_neg: int, spec) -> StepBatch:
    """Frames, boxes and uint8 crops of one step (`n_neg` = pool size with mining, else neg)."""
    import time
    t0 = time.perf_counter()
    seq = domain.sequence
    frames = pick_frames(rng, domain.train_frames, sampling.frames)
    n_pos = split_evenly(sampling.pos, len(frames))
    n_negs = split_evenly(n_neg, len(frames))
    s = spec.input_size
    pos = np.empty((int(n_pos.sum()), 3, s, s), np.uint8)
    neg = np.empty((int(n_negs.sum()), 3, s, s), np.uint8)
    pos_frame = np.repeat(np.arange(len(frames)), n_pos)
    neg_frame = np.repeat(np.arange(len(frames)), n_negs)
    p_off = n_off = 0
    for slot, f in enumerate(frames):
        image = seq.frame(int(f))
        size = (image.shape[1], image.shape[0])
        box = seq.boxes[int(f)]
        pb = positive_boxes(rng, box, size, int(n_pos[slot]), sampling)
        nb = negative_boxes(rng, box, size, int(n_negs[slot]), sampling)
        crop_u8(image, pb, spec, pos[p_off:p_off + len(pb)])
        crop_u8(image, nb, spec, neg[n_off:n_off + len(nb)])
        p_off += len(pb)
        n_off += len(nb)
    return StepBatch(step=step, domain=domain.index, frames=frames, pos=pos, pos_frame=pos_frame,
                     neg=neg, neg_frame=neg_frame, prep_s=time.perf_counter() - t0)


@dataclass
class ValSamples:
    """Held-out samples of one domain: sampled pos/neg (loss, accuracies) and tracker-like candidates."""
    crops: np.ndarray  # (N, 3, S, S) uint8: pos, then neg, then candidates
    label: np.ndarray  # (N,) 1 positive, 0 negative, -1 neither (candidate with 0.5 < IoU < 0.7)
    kind: np.ndarray  # (N,) 0 sampled positive, 1 sampled negative, 2 candidate
    frame: np.ndarray  # (N,) slot of the frame


def validation_samples(domain, rng, sampling, val, spec) -> ValSamples | None:
    """Samples from `val.frames_per_domain` held-out frames (the first ones when there are few)."""
    frames = np.asarray(domain.val_frames)
    if len(frames) == 0:
        return None
    nf = min(val.frames_per_domain, len(frames))
    # Evenly spread over the held-out tail, so the same frames are used every epoch.
    frames = frames[np.linspace(0, len(frames) - 1, nf).round().astype(int)]
    n_pos = split_evenly(sampling.pos, nf)
    n_neg = split_evenly(sampling.neg, nf)
    cand_spec = SamplerSpec("gaussian", trans=val.trans_cand, scale=val.scale_cand, min_size=sampling.min_box_size)
    crops, label, kind, slot = [], [], [], []
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
        out = np.empty((len(boxes), 3, spec.input_size, spec.input_size), np.uint8)
        crop_u8(image, boxes, spec, out)
        crops.append(out)
        label.append(np.concatenate([np.ones(len(pb)), np.zeros(len(nb)), cl]))
        kind.append(np.concatenate([np.zeros(len(pb)), np.ones(len(nb)), np.full(len(cb), 2)]))
        slot.append(np.full(len(boxes), k))
    return ValSamples(crops=np.concatenate(crops), label=np.concatenate(label).astype(np.int64),
                      kind=np.concatenate(kind).astype(np.int64), frame=np.concatenate(slot).astype(np.int64))
