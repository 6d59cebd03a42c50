"""Crop geometry: the box fills the central 75 px of a 107 px crop; outside pixels are 128.

A 75x75 box at integer coordinates gives a crop at scale 1 whose region (box widened by 16 px
each side) starts at an integer pixel, so the crop must equal an exact slice of the image.
"""
import numpy as np
import pytest

from online.crops import crop_box_region, crop_regions

RED, BLUE = (200, 10, 20), (5, 30, 220)


def _random_image(h=240, w=320, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _rect_image(box, h=240, w=320):
    img = np.empty((h, w, 3), np.uint8)
    img[:] = BLUE
    x, y, bw, bh = box
    img[y:y + bh, x:x + bw] = RED
    return img


def test_scale_one_crop_is_an_exact_slice():
    img = _random_image()
    x, y = 50, 40
    crop = crop_regions(img, [[x, y, 75, 75]])
    assert crop.shape == (1, 3, 107, 107) and crop.dtype == np.float32
    want = img[y - 16:y - 16 + 107, x - 16:x - 16 + 107].transpose(2, 0, 1)
    np.testing.assert_array_equal(crop[0], want.astype(np.float32))
    np.testing.assert_allclose(crop_box_region([x, y, 75, 75]), [x - 16, y - 16, 107, 107])


def test_box_fills_the_central_75_pixels():
    box = (100, 60, 75, 75)
    crop = crop_regions(_rect_image(box), [box])[0]
    inner = crop[:, 16:91, 16:91]
    for c in range(3):
        assert np.all(inner[c] == RED[c])
    ring = np.ones((107, 107), bool)
    ring[16:91, 16:91] = False
    for c in range(3):
        assert np.all(crop[c][ring] == BLUE[c])


def test_channels_stay_rgb():
    img = np.empty((100, 100, 3), np.uint8)
    img[:] = (10, 20, 30)
    crop = crop_regions(img, [[10, 10, 30, 40]])[0]
    for c, v in enumerate((10, 20, 30)):
        np.testing.assert_array_equal(crop[c], v)


def test_outside_pixels_are_128_at_the_corner():
    img = _random_image()
    crop = crop_regions(img, [[0, 0, 75, 75]])[0]
    assert np.all(crop[:, :16, :] == 128) and np.all(crop[:, :, :16] == 128)
    np.testing.assert_array_equal(crop[:, 16:, 16:], img[:91, :91].transpose(2, 0, 1))
    # Bottom-right corner too.
    h, w = img.shape[:2]
    crop = crop_regions(img, [[w - 75, h - 75, 75, 75]])[0]
    assert np.all(crop[:, 91:, :] == 128) and np.all(crop[:, :, 91:] == 128)
    np.testing.assert_array_equal(crop[:, :91, :91], img[h - 91:, w - 91:].transpose(2, 0, 1))


def test_box_entirely_outside_is_all_fill():
    crop = crop_regions(_random_image(), [[1000, 1000, 50, 50]], fill=128.0)
    assert np.all(crop == 128)


def test_non_square_box_scales_each_axis():
    # 150x75 box: 2 source pixels per output pixel in x, 1 in y; still fills the central 75x75.
    box = (60, 80, 150, 75)
    crop = crop_regions(_rect_image(box), [box])[0]
    for c in range(3):
        assert np.all(crop[c, 16:91, 16:91] == RED[c])
        assert np.all(crop[c, :, :16] == BLUE[c]) and np.all(crop[c, :, 91:] == BLUE[c])
        assert np.all(crop[c, :16, :] == BLUE[c]) and np.all(crop[c, 91:, :] == BLUE[c])
    np.testing.assert_allclose(crop_box_region(box), [60 - 32, 80 - 16, 214, 107])


def test_downscaled_box_keeps_its_centre():
    # A large box (scale 1/4): the crop is a shrunken image of it, still centred.
    box = (20, 10, 280, 200)
    img = _rect_image(box)
    crop = crop_regions(img, [box])[0]
    for c in range(3):
        assert np.all(crop[c, 20:87, 20:87] == RED[c])
    assert crop.shape == (3, 107, 107)


def test_batch_equals_single_crops_and_out_buffer():
    img = _random_image(seed=1)
    boxes = np.array([[50, 40, 75, 75], [10.5, 20.25, 33.3, 61.0], [200, 100, 120, 80],
                      [-30, -20, 60, 60]])
    batch = crop_regions(img, boxes)
    assert batch.shape == (4, 3, 107, 107) and batch.dtype == np.float32
    for i, b in enumerate(boxes):
        np.testing.assert_array_equal(batch[i], crop_regions(img, [b])[0])
    buf = np.zeros((8, 3, 107, 107), np.float32)
    out = crop_regions(img, boxes, out=buf)
    assert out.shape == (4, 3, 107, 107) and np.shares_memory(out, buf)
    np.testing.assert_array_equal(out, batch)
    with pytest.raises(ValueError, match="cannot hold"):
        crop_regions(img, boxes, out=np.zeros((2, 3, 107, 107), np.float32))


def test_other_input_size():
    img = _random_image()
    # input 59, padding 8 -> inner 43: a 43x43 box is scale 1 and an exact slice again.
    crop = crop_regions(img, [[30, 30, 43, 43]], input_size=59, padding=8)
    assert crop.shape == (1, 3, 59, 59)
    np.testing.assert_array_equal(crop[0], img[22:81, 22:81].transpose(2, 0, 1))
