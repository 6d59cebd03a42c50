"""Box geometry: IoU values (the samplers: test_sampling.py)."""
import numpy as np
import pytest

from online.boxes import box_polygon, clip_polygon, iou, iou_matrix, polygon_area, region_overlap, valid_box



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


# ---------------------------------------------------------------------------------------------
# Polygon overlap (the VOT protocol's), hand-made cases

DIAMOND = [10, 0, 20, 10, 10, 20, 0, 10]  # a 20x20 square turned 45 degrees: area 200


def test_region_overlap_of_axis_aligned_squares_is_their_iou():
    a = [0, 0, 10, 10]
    for b in ([5, 0, 10, 10], [0, 0, 5, 10], [2.5, 3.5, 10, 7], [0, 0, 10, 10]):
        assert region_overlap(a, b) == pytest.approx(iou([b], a)[0])
        assert region_overlap(box_polygon(a).ravel(), b) == pytest.approx(iou([b], a)[0])  # as 8 values


def test_rotated_square_against_its_bounding_box_is_one_half():
    assert polygon_area(np.reshape(DIAMOND, (-1, 2))) == pytest.approx(200)
    assert region_overlap(DIAMOND, [0, 0, 20, 20]) == pytest.approx(0.5)  # 200 / 400
    # The bounding box's corner misses the rotated target although their boxes overlap.
    assert iou([[0, 0, 4, 4]], [0, 0, 20, 20])[0] > 0 and region_overlap(DIAMOND, [0, 0, 4, 4]) == 0.0
    # Either orientation of the corners.
    assert region_overlap(np.reshape(DIAMOND, (-1, 2))[::-1], [0, 0, 20, 20]) == pytest.approx(0.5)


def test_overlap_is_computed_on_the_parts_inside_the_image():
    gt = [-10, 0, 20, 20]  # half outside a 100x100 image
    assert region_overlap(gt, [0, 0, 10, 20]) == pytest.approx(0.5)  # unbounded: 200 / 400
    assert region_overlap(gt, [0, 0, 10, 20], bounds=(100, 100)) == pytest.approx(1.0)  # clipped: equal
    assert region_overlap(gt, [-10, 0, 10, 20], bounds=(100, 100)) == 0.0  # overlaps outside only
    assert region_overlap([95, 95, 10, 10], [90, 90, 10, 10], bounds=(100, 100)) == pytest.approx(25 / 100)


def test_disjoint_empty_and_non_finite_regions_overlap_nothing():
    assert region_overlap([0, 0, 10, 10], [50, 50, 10, 10]) == 0.0
    assert region_overlap([0, 0, 10, 10], [10, 0, 10, 10]) == 0.0  # touching edges
    assert region_overlap(DIAMOND, [30, 30, 5, 5], bounds=(40, 40)) == 0.0
    assert region_overlap([0, 0, 10, 10], [np.nan, 0, 10, 10]) == 0.0
    assert region_overlap([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0
    assert clip_polygon(DIAMOND, [[0, 0], [1, 0], [2, 0]]).shape == (0, 2)  # degenerate clip


def test_region_overlap_agrees_with_opencv_on_random_convex_pairs():
    import cv2
    rng = np.random.default_rng(0)
    for _ in range(50):
        centre, half = rng.uniform(20, 60, 2), rng.uniform(5, 30, 2)
        angle = rng.uniform(0, np.pi)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        poly = centre + (np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half) @ rot.T
        box = np.r_[rng.uniform(10, 50, 2), rng.uniform(5, 40, 2)]
        inter, _ = cv2.intersectConvexConvex(poly.astype(np.float32), box_polygon(box).astype(np.float32))
        union = 4 * half.prod() + box[2] * box[3] - inter
        assert region_overlap(poly, box) == pytest.approx(inter / union, abs=1e-4)
