"""Box regression: the parameterization round-trips, ridge is solved right, known maps are recovered."""
import numpy as np
import pytest

from online.bbreg import BBRegressor, apply_targets, box_targets
from online.boxes import iou
from online.sampling import SamplerSpec, sample_by_iou


def test_targets_round_trip():
    rng = np.random.default_rng(0)
    boxes = np.c_[rng.uniform(0, 100, (50, 2)), rng.uniform(5, 60, (50, 2))]
    gt = np.array([40.0, 30.0, 25.0, 35.0])
    d = box_targets(boxes, gt)
    np.testing.assert_allclose(apply_targets(boxes, d), np.tile(gt, (50, 1)), atol=1e-9)
    # MDNet's parameterization: centre offsets relative to the box size, log size ratios.
    b = np.array([[10.0, 20.0, 20.0, 40.0]])
    g = np.array([15.0, 30.0, 40.0, 20.0])  # centre (35, 40) vs (20, 40)
    np.testing.assert_allclose(box_targets(b, g), [[15 / 20, 0.0, np.log(2.0), np.log(0.5)]])


def test_ridge_matches_primal_solution_and_recovers_a_linear_map():
    rng = np.random.default_rng(1)
    n, d = 300, 40
    X = rng.normal(size=(n, d))
    W = rng.normal(size=(d, 4))
    b = rng.normal(size=4)
    Y = X @ W + b
    # Tiny penalty: the exact linear map and intercept come back.
    reg = BBRegressor(lam=1e-8).fit_targets(X, Y)
    np.testing.assert_allclose(reg.weight, W, atol=1e-6)
    np.testing.assert_allclose(reg.bias, b, atol=1e-6)
    # n < d takes the dual path; it must equal the primal ridge solution with a free intercept.
    Xw = rng.normal(size=(30, 80))
    Yw = rng.normal(size=(30, 4))
    reg = BBRegressor(lam=5.0).fit_targets(Xw, Yw)
    Xc, Yc = Xw - Xw.mean(0), Yw - Yw.mean(0)
    primal = np.linalg.solve(Xc.T @ Xc + 5.0 * np.eye(80), Xc.T @ Yc)
    np.testing.assert_allclose(reg.weight, primal, atol=1e-8)
    np.testing.assert_allclose(reg.bias, Yw.mean(0) - Xw.mean(0) @ primal, atol=1e-8)


def test_regressor_moves_boxes_onto_the_target():
    # Features that linearly encode each sample's offset from the target (as conv3 features of a
    # well-trained net roughly do), mixed into 200 dimensions with noise, scaled like ReLU features.
    rng = np.random.default_rng(2)
    gt = np.array([100.0, 80.0, 40.0, 60.0])
    spec = SamplerSpec("uniform", trans=0.3, scale=1.6, aspect=1.1)
    train = sample_by_iou(rng, spec, gt, (320, 240), 1000, (0.6, 1.0))
    test = sample_by_iou(rng, spec, gt, (320, 240), 200, (0.6, 1.0))
    mix = rng.normal(size=(4, 200)) * 100.0

    def feats(boxes):
        return box_targets(boxes, gt) @ mix + rng.normal(scale=0.5, size=(len(boxes), 200))

    reg = BBRegressor(lam=1000.0, min_overlap=0.6).fit(feats(train), train, gt)
    assert reg.n_train == len(train)
    out = reg.predict(feats(test), test)
    before, after = iou(test, gt), iou(out, gt)
    assert before.mean() < 0.8
    assert after.mean() > 0.97, after.mean()
    assert np.all(after >= before - 1e-6)


def test_regressor_rejects_implausible_moves_and_needs_samples():
    gt = np.array([10.0, 10.0, 20.0, 20.0])
    reg = BBRegressor(lam=1.0)
    reg.weight = np.zeros((3, 4))
    reg.bias = np.array([5.0, 0.0, 0.0, 0.0])  # move every box by 5 widths: far outside IoU 0.6
    out = reg.predict(np.zeros((2, 3)), np.tile(gt, (2, 1)))
    np.testing.assert_array_equal(out, np.tile(gt, (2, 1)))
    with pytest.raises(ValueError, match="IoU >= 0.6"):
        BBRegressor(min_overlap=0.6).fit(np.zeros((1, 3)), np.array([[100.0, 100.0, 5.0, 5.0]]), gt)
    with pytest.raises(RuntimeError):
        BBRegressor().predict(np.zeros((1, 3)), gt[None])
