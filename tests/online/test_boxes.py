"""Box geometry: IoU values (the samplers: test_sampling.py)."""
import numpy as np
import pytest

from online.boxes import iou, iou_matrix, valid_box



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


def test_valid_box():
    assert valid_box([1, 2, 3, 4]) and valid_box([-10, -10, 20, 20], (100, 80))
    assert not valid_box([0, 0, 0, 5]) and not valid_box([0, 0, np.nan, 5])
    assert not valid_box([100, 0, 10, 10], (100, 80))  # starts at the right edge: no overlap
