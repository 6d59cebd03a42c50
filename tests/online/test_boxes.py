"""Boxes: IoU values, samplers inside the image, IoU bands, determinism."""
import time

import numpy as np
import pytest

from online.boxes import SamplerSpec, clip_boxes, iou, iou_matrix, sample_boxes, sample_by_iou

IMAGE = (320, 240)  # (W, H)
BOX = np.array([120.0, 80.0, 60.0, 50.0])
KINDS = [SamplerSpec("gaussian", trans=0.1, scale=1.3),
         SamplerSpec("uniform", trans=1.0, scale=1.6),
         SamplerSpec("whole", trans=0.0, scale=1.6, aspect=1.1)]


def test_iou_known_values():
    a = [0, 0, 10, 10]
    assert iou([a], a)[0] == pytest.approx(1.0)
    assert iou([[20, 20, 10, 10]], a)[0] == 0.0
    assert iou([[10, 0, 10, 10]], a)[0] == 0.0  # touching edges
    assert iou([[5, 0, 10, 10]], a)[0] == pytest.approx(1 / 3)  # half overlap: 50 / 150
    assert iou([[0, 0, 5, 10]], a)[0] == pytest.approx(0.5)  # contained half
    assert iou([[3, 3, 0, 0]], a)[0] == 0.0  # empty box, no nan


def test_iou_row_wise_and_matrix_agree():
    rng = np.random.default_rng(0)
    a = np.c_[rng.uniform(0, 50, (7, 2)), rng.uniform(1, 40, (7, 2))]
    b = np.c_[rng.uniform(0, 50, (5, 2)), rng.uniform(1, 40, (5, 2))]
    m = iou_matrix(a, b)
    assert m.shape == (7, 5)
    for j in range(5):
        np.testing.assert_allclose(m[:, j], iou(a, b[j]))
    np.testing.assert_allclose(iou(a[:5], b), np.diag(m[:5]))
    assert np.all((m >= 0) & (m <= 1))
    np.testing.assert_allclose(iou_matrix(a, a).diagonal(), 1.0)


@pytest.mark.parametrize("spec", KINDS, ids=lambda s: s.kind)
@pytest.mark.parametrize("box", [BOX, [0.0, 0.0, 40.0, 30.0], [280.0, 200.0, 40.0, 40.0],
                                 [-20.0, 230.0, 60.0, 30.0]])
def test_samplers_stay_inside_the_image(spec, box):
    out = sample_boxes(np.random.default_rng(1), spec, box, IMAGE, 500)
    W, H = IMAGE
    assert out.shape == (500, 4)
    assert np.all(out[:, 0] >= 0) and np.all(out[:, 1] >= 0)
    assert np.all(out[:, 0] + out[:, 2] <= W + 1e-9) and np.all(out[:, 1] + out[:, 3] <= H + 1e-9)
    assert np.all(out[:, 2] >= spec.min_size) and np.all(out[:, 3] >= spec.min_size)


def test_gaussian_samples_centre_on_the_box():
    out = sample_boxes(np.random.default_rng(2), KINDS[0], BOX, IMAGE, 2000)
    centre = out[:, :2] + out[:, 2:] / 2
    np.testing.assert_allclose(centre.mean(axis=0), BOX[:2] + BOX[2:] / 2, atol=1.0)


def test_clip_boxes():
    out = clip_boxes([[-5, -5, 400, 5], [310, 230, 20, 20]], IMAGE, min_size=10)
    np.testing.assert_allclose(out, [[0, 0, 310, 10], [300, 220, 20, 20]])


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
        sample_boxes(np.random.default_rng(0), SamplerSpec("ring"), BOX, IMAGE, 4)
