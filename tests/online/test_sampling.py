"""MDNet's samplers (online/sampling.py) against the reference definitions (py-MDNet's
SampleGenerator with valid=False, MATLAB MDNet's gen_samples.m): centres inside the image, boxes
free to cross the border, IoU bands, aspect jitter, whole-image grid, determinism."""
import time

import numpy as np
import pytest

from online.boxes import iou
from online.sampling import SamplerSpec, clip_to_image, sample_boxes, sample_by_iou

IMAGE = (320, 240)  # (W, H)
BOX = np.array([120.0, 80.0, 60.0, 50.0])
KINDS = [SamplerSpec("gaussian", trans=0.1, scale=1.3),
         SamplerSpec("uniform", trans=1.0, scale=1.6),
         SamplerSpec("whole", scale=1.6, aspect=1.1)]
EDGE_BOXES = {"left": [-30.0, 100.0, 60.0, 40.0], "right": [290.0, 100.0, 60.0, 40.0],
              "top": [130.0, -20.0, 60.0, 40.0], "bottom": [130.0, 220.0, 60.0, 40.0]}


def _centres(b):
    return b[:, :2] + b[:, 2:] / 2


@pytest.mark.parametrize("spec", KINDS, ids=lambda s: s.kind)
@pytest.mark.parametrize("box", [BOX, [0.0, 0.0, 40.0, 30.0], *EDGE_BOXES.values()])
def test_centres_stay_in_the_image_and_sizes_in_range(spec, box):
    out = sample_boxes(np.random.default_rng(1), spec, box, IMAGE, 500)
    c = _centres(out)
    assert out.shape == (500, 4)
    assert np.all(c >= 0) and np.all(c[:, 0] <= IMAGE[0]) and np.all(c[:, 1] <= IMAGE[1])
    assert np.all(out[:, 2:] >= spec.min_size)
    assert np.all(out[:, 2] <= IMAGE[0] - spec.min_size) and np.all(out[:, 3] <= IMAGE[1] - spec.min_size)


@pytest.mark.parametrize("edge", sorted(EDGE_BOXES))
def test_positives_of_a_target_half_outside_cover_it(edge):
    """The old sampler clamped whole boxes into the image: positives of a target half out of
    frame could not be drawn. Now the IoU band fills, and samples reach past the border."""
    box = np.array(EDGE_BOXES[edge])
    pos = sample_by_iou(np.random.default_rng(0), SamplerSpec("gaussian", 0.1, 1.3), box, IMAGE, 500, (0.7, 1.0))
    assert len(pos) == 500
    assert iou(pos, box).min() >= 0.7
    past = {"left": pos[:, 0] < 0, "right": pos[:, 0] + pos[:, 2] > IMAGE[0],
            "top": pos[:, 1] < 0, "bottom": pos[:, 1] + pos[:, 3] > IMAGE[1]}[edge]
    assert past.mean() > 0.9
    # Candidates (the tracker's search) find the target: the best one overlaps it almost exactly.
    cands = sample_boxes(np.random.default_rng(1), SamplerSpec("gaussian", 0.6, 1.05), box, IMAGE, 256)
    assert iou(cands, box).max() > 0.9


def test_gaussian_and_uniform_statistics():
    rng = np.random.default_rng(2)
    n = 20000
    m = BOX[2:].mean()
    g = sample_boxes(rng, SamplerSpec("gaussian", trans=0.1, scale=1.3), BOX, IMAGE, n)
    off = (_centres(g) - (BOX[:2] + BOX[2:] / 2)) / m
    # r = clip(N(0, 0.5^2), -1, 1) per axis: mean 0, |r| <= 1, std just under 0.5.
    assert np.abs(off).max() <= 0.1 + 1e-9
    np.testing.assert_allclose(off.mean(axis=0), 0.0, atol=0.002)
    np.testing.assert_allclose(off.std(axis=0), 0.1 * 0.4754, rtol=0.03)  # std of clip(N(0,.25),-1,1)
    s = np.log(g[:, 2] / BOX[2]) / np.log(1.3)
    np.testing.assert_allclose(s, np.log(g[:, 3] / BOX[3]) / np.log(1.3))  # one scale per box, aspect kept
    assert np.abs(s).max() <= 1 + 1e-9
    u = sample_boxes(rng, SamplerSpec("uniform", trans=1.0, scale=1.6), BOX, IMAGE, n)
    off = (_centres(u) - (BOX[:2] + BOX[2:] / 2)) / m
    assert np.abs(off).max() <= 1 + 1e-9
    np.testing.assert_allclose(off.std(axis=0), 1 / np.sqrt(3), rtol=0.03)  # uniform in [-1, 1]


def test_aspect_jitter_draws_w_and_h_independently():
    out = sample_boxes(np.random.default_rng(3), SamplerSpec("uniform", trans=0.0, scale=1.0, aspect=1.1),
                       BOX, IMAGE, 5000)
    rw, rh = np.log(out[:, 2] / BOX[2]) / np.log(1.1), np.log(out[:, 3] / BOX[3]) / np.log(1.1)
    assert np.abs(rw).max() <= 1 + 1e-9 and np.abs(rh).max() <= 1 + 1e-9
    assert abs(np.corrcoef(rw, rh)[0, 1]) < 0.05  # independent (py-MDNet), not w*a, h/a


def test_whole_image_centres_on_a_grid_inside_half_box_margins():
    out = sample_boxes(np.random.default_rng(4), SamplerSpec("whole", scale=1.0), BOX, IMAGE, 2500)
    c = _centres(out)
    W, H = IMAGE
    w, h = BOX[2:]
    assert c[:, 0].min() >= w / 2 - 1e-9 and c[:, 0].max() <= W - w / 2 + 1e-9
    assert c[:, 1].min() >= h / 2 - 1e-9 and c[:, 1].max() <= H - h / 2 + 1e-9
    # A grid (m = int(2 sqrt(n)) = 100 values per axis), spread over the whole range, and no pile-up
    # against the border (the old sampler put 53% of its boxes exactly against an edge).
    assert len(np.unique(np.round(c[:, 0], 6))) == 100
    at_edge = (out[:, 0] <= 0) | (out[:, 1] <= 0) | (out[:, 0] + out[:, 2] >= W) | (out[:, 1] + out[:, 3] >= H)
    assert at_edge.mean() < 0.05
    assert np.abs(np.histogram(c[:, 0], bins=5)[0] / len(c) - 0.2).max() < 0.03


def test_clip_to_image_keeps_centres_and_sizes():
    out = clip_to_image([[-50, -5, 400, 5], [310, 230, 20, 20]], IMAGE, min_size=10)
    # Sizes into [10, image - 10]; centres into the image; the boxes may still cross the border.
    np.testing.assert_allclose(out[0, 2:], [310, 10])
    np.testing.assert_allclose(_centres(out), [[150, 0], [320, 240]])
    np.testing.assert_allclose(out[1], [310, 230, 20, 20])


@pytest.mark.parametrize("spec,band,n", [
    (KINDS[0], (0.7, 1.0), 500),  # positives
    (KINDS[1], (0.0, 0.5), 300),  # negatives, uniform
    (KINDS[2], (0.0, 0.5), 300),  # negatives, whole image
    (SamplerSpec("gaussian", trans=0.3, scale=1.3), (0.6, 1.0), 200),  # regression samples
])
def test_sample_by_iou_respects_band(spec, band, n):
    out = sample_by_iou(np.random.default_rng(3), spec, BOX, IMAGE, n, band)
    assert out.shape == (n, 4)
    r = iou(out, BOX)
    assert r.min() >= band[0] and r.max() <= band[1]


def test_area_range_filters_box_regression_samples():
    spec = SamplerSpec("uniform", trans=0.3, scale=1.6, aspect=1.1)
    out = sample_by_iou(np.random.default_rng(5), spec, BOX, IMAGE, 1000, (0.6, 1.0), area_range=(1.0, 2.0))
    a = out[:, 2] * out[:, 3] / (BOX[2] * BOX[3])
    assert len(out) == 1000 and a.min() >= 1.0 and a.max() <= 2.0 and iou(out, BOX).min() >= 0.6


@pytest.mark.parametrize("spec", KINDS, ids=lambda s: s.kind)
def test_sample_by_iou_impossible_band_returns_fewer_quickly(spec):
    # Default max_rounds: the per-round draw must stay bounded (it once doubled 19 times).
    t0 = time.perf_counter()
    out = sample_by_iou(np.random.default_rng(0), spec, BOX, IMAGE, 50, (1.5, 2.0))
    assert out.shape == (0, 4)
    assert time.perf_counter() - t0 < 5.0


@pytest.mark.parametrize("spec,band", [(KINDS[0], (0.7, 1.0)), (KINDS[1], (0.0, 0.5)),
                                       (KINDS[2], (0.0, 0.5))], ids=["gaussian", "uniform", "whole"])
def test_determinism(spec, band):
    a = sample_by_iou(np.random.default_rng(7), spec, BOX, IMAGE, 100, band)
    b = sample_by_iou(np.random.default_rng(7), spec, BOX, IMAGE, 100, band)
    c = sample_by_iou(np.random.default_rng(8), spec, BOX, IMAGE, 100, band)
    assert a.shape == (100, 4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_unknown_kind():
    with pytest.raises(ValueError, match="unknown sampler kind 'ring'.*gaussian, uniform, whole"):
        SamplerSpec("ring")
