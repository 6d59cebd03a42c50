"""Sampling, crops and hard negative mining (pretrain/minibatch.py)."""
import numpy as np
import pytest

from online.boxes import iou
from online.mining import select_hardest
from online.network import NetSpec
from online.sequence import ImageFiles, Sequence
from pretrain.config import SamplingConfig, ValConfig
from pretrain.domains import Domain
from pretrain.minibatch import (negative_boxes, pick_frames, positive_boxes, prepare_step,
                                split_evenly, validation_samples)


def test_select_hardest_keeps_exactly_the_highest():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=1024)
    idx = select_hardest(scores, 96)
    assert len(idx) == 96 == len(set(idx.tolist()))
    assert set(idx.tolist()) == set(np.argsort(scores)[-96:].tolist())
    assert scores[idx].min() >= np.delete(scores, idx).max()
    assert np.all(np.diff(scores[idx]) <= 0)  # hardest first


def test_select_hardest_ties_and_limits():
    scores = np.array([1.0, 3.0, 3.0, 2.0, 3.0])
    assert select_hardest(scores, 2).tolist() == [1, 2]  # equal scores: pool order
    with pytest.raises(ValueError):
        select_hardest(scores, 6)


def test_split_evenly():
    assert split_evenly(32, 8).tolist() == [4] * 8
    assert split_evenly(10, 4).tolist() == [3, 3, 2, 2]
    assert split_evenly(96, 8).sum() == 96


def test_pick_frames_distinct_then_repeats():
    rng = np.random.default_rng(0)
    got = pick_frames(rng, np.arange(100), 8)
    assert len(set(got.tolist())) == 8
    got = pick_frames(rng, np.array([3, 5]), 8)
    assert len(got) == 8 and set(got.tolist()) == {3, 5}


@pytest.mark.parametrize("box", [(50.0, 40.0, 40.0, 30.0), (0.0, 0.0, 30.0, 60.0), (150.0, 100.0, 40.0, 40.0)])
def test_samples_respect_iou_bands(box):
    s = SamplingConfig()
    rng = np.random.default_rng(1)
    pos = positive_boxes(rng, box, (192, 144), 32, s)
    neg = negative_boxes(rng, box, (192, 144), 128, s)
    assert pos.shape == (32, 4) and neg.shape == (128, 4)
    assert iou(pos, box).min() >= s.overlap_pos
    assert iou(neg, box).max() <= s.overlap_neg


class _Frames:
    def __init__(self, n, size=(120, 90)):
        self.n, self.size = n, size

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        rng = np.random.default_rng(i)
        return rng.integers(0, 256, (self.size[1], self.size[0], 3), dtype=np.uint8)


def _domain(n=20):
    boxes = np.tile([30.0, 20.0, 40.0, 30.0], (n, 1))
    seq = Sequence(name="toy", frames=_Frames(n), boxes=boxes, absent=np.zeros(n, bool))
    return Domain(index=0, name="toy", sequence=seq, split=16, train_frames=np.arange(16),
                  val_frames=np.arange(16, 20), image_size=(120, 90))


def test_prepare_step_shapes_and_determinism():
    spec = NetSpec(conv_channels=(8, 8, 8), fc_width=8)
    s = SamplingConfig()
    a = prepare_step(_domain(), 7, np.random.default_rng([0, 0, 7]), s, 256, spec)
    b = prepare_step(_domain(), 7, np.random.default_rng([0, 0, 7]), s, 256, spec)
    assert a.pos.shape == (32, 3, 107, 107) and a.pos.dtype == np.uint8
    assert a.neg.shape == (256, 3, 107, 107)
    assert a.pos_frame.tolist() == np.repeat(np.arange(8), 4).tolist()
    assert np.array_equal(a.pos, b.pos) and np.array_equal(a.neg, b.neg)
    assert np.all(np.isin(a.frames, np.arange(16)))  # never a held-out frame


def test_crops_are_lossless_in_uint8():
    from online.crops import crop_regions
    img = _Frames(1)[0]
    boxes = np.array([[10.3, 5.7, 33.1, 21.9], [-5.0, -5.0, 60.0, 50.0]])
    f = crop_regions(img, boxes)
    assert np.array_equal(f, np.round(f))  # integral values: the uint8 cast loses nothing


def test_validation_samples_labels():
    spec = NetSpec(conv_channels=(8, 8, 8), fc_width=8)
    vs = validation_samples(_domain(), np.random.default_rng(0), SamplingConfig(), ValConfig(), spec)
    assert (vs.kind == 0).sum() == 32 and (vs.kind == 1).sum() == 96 and (vs.kind == 2).sum() == 2 * 64
    assert np.all(vs.label[vs.kind == 0] == 1) and np.all(vs.label[vs.kind == 1] == 0)
    assert set(np.unique(vs.label[vs.kind == 2]).tolist()) <= {-1, 0, 1}
    assert len(vs.crops) == len(vs.label) == len(vs.frame)
