"""Fast mode's steps (pretrain/minibatch.py, pretrain/windows.py, pretrain/model.py): one region per
frame, every box an RoI on its conv3 map.

Tolerances: on this project's CPU (MXNet 1.9.1, MKLDNN) the pooled features of a lattice box and
its exact crop's conv3 features are bit-identical at the tiny, bench and full VGG-M widths, and
window training scores differ from whole-map scores by at most 4e-7 (fc6 outputs of size ~0.7 at
full width; from fc4's GEMM over another batch size). The tests allow 1e-5 relative to the
values' scale so that other kernels (GPU, other CPUs) still pass.
"""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from online import roi
from online.crops import crop_regions
from online.head import mdnet_loss
from online.network import NetSpec
from online.sequence import Sequence
from pretrain import windows as W
from pretrain.config import InitConfig, SamplingConfig, ValConfig
from pretrain.domains import Domain
from pretrain.minibatch import prepare_step, region_batch, validation_samples
from pretrain.model import MultiDomainNet, to_input

SPEC = NetSpec(conv_channels=(8, 16, 16), fc_width=32)
RTOL = 1e-5


class _Frames:  # as in test_minibatch.py: random 120x90 frames, the target 40x30 at (30, 20)
    def __len__(self):
        return 20

    def __getitem__(self, i):
        return np.random.default_rng(i).integers(0, 256, (90, 120, 3), dtype=np.uint8)


def _domain(n=20):
    boxes = np.tile([30.0, 20.0, 40.0, 30.0], (n, 1))
    seq = Sequence(name="toy", frames=_Frames(), boxes=boxes, absent=np.zeros(n, bool))
    return Domain(index=0, name="toy", sequence=seq, split=16, train_frames=np.arange(16),
                  val_frames=np.arange(16, 20), image_size=(120, 90))


@pytest.fixture(scope="module")
def net():
    m = MultiDomainNet(SPEC, {0: "toy"}, mx.cpu())
    m.initialize(InitConfig(), seed=0)
    return m


def _step(mode, seed=7, pool=256):
    return prepare_step(_domain(), 7, np.random.default_rng([0, 0, seed]), SamplingConfig(), pool, SPEC, mode=mode)


def _sample_points(rois, n=3):
    """Outermost RoIAlign sample coordinates (x_lo, x_hi, y_lo, y_hi) of every RoI."""
    bw = (rois[:, 3] - rois[:, 1]) / n
    bh = (rois[:, 4] - rois[:, 2]) / n
    return (rois[:, 1] + bw / 2, rois[:, 3] - bw / 2, rois[:, 2] + bh / 2, rois[:, 4] - bh / 2)


def test_fast_step_draws_the_exact_steps_boxes():
    exact, fast = _step("exact"), _step("fast")
    assert np.array_equal(exact.frames, fast.frames)
    assert np.array_equal(exact.pos_boxes, fast.pos_boxes) and np.array_equal(exact.neg_boxes, fast.neg_boxes)
    assert np.array_equal(exact.pos_frame, fast.pos_frame) and np.array_equal(exact.neg_frame, fast.neg_frame)
    assert exact.regions is None and not exact.fast and fast.fast
    assert fast.pos.shape == (32, 5) and fast.neg.shape == (256, 5) and fast.pos.dtype == np.float32
    # Exact mode's crops are those boxes' crops.
    assert np.array_equal(exact.pos[:4], crop_regions(_domain().sequence.frame(int(exact.frames[0])),
                                                      exact.pos_boxes[:4]).astype(np.uint8))
    # The same generator, the same step: the same regions (a pure function of the rng).
    again = _step("fast")
    assert np.array_equal(fast.regions, again.regions) and np.array_equal(fast.neg, again.neg)


def test_fast_step_rois_lie_inside_their_frames_maps():
    b = _step("fast", pool=1024)
    f, c, h, w = b.regions.shape
    assert b.regions.dtype == np.uint8 and (f, c) == (8, 3)
    assert (h - roi.FIELD) % roi.STRIDE == 0 and (w - roi.FIELD) % roi.STRIDE == 0
    cells_h, cells_w = W.map_cells(h), W.map_cells(w)
    for rois, slots in ((b.pos, b.pos_frame), (b.neg, b.neg_frame)):
        assert np.array_equal(rois[:, 0], slots)  # batch index = the frame's slot
        x_lo, x_hi, y_lo, y_hi = _sample_points(rois)
        assert x_lo.min() >= 0 and y_lo.min() >= 0
        assert x_hi.max() <= cells_w - 1 and y_hi.max() <= cells_h - 1
    # Every region was grown to the step's size from its own top-left (on the lattice).
    assert all((r.width, r.height) == (w, h) for r in b.region_list)
    assert all(r.x0 % roi.STRIDE == 0 and r.y0 % roi.STRIDE == 0 for r in b.region_list)


def test_lattice_box_fast_forward_equals_exact_forward(net):
    rng = np.random.default_rng(0)
    img = np.repeat(np.repeat(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8), 4, 0), 4, 1)
    anchor = np.array([70.0, 50.0, 50.0, 40.0])
    sx, sy = roi.region_scale(anchor, SPEC)
    # Target-sized boxes (75 px at the region's scale) whose crops start on the lattice.
    boxes = np.array([[sx * 16 * k, sy * 16 * m, 75 * sx, 75 * sy] for k in range(2, 9) for m in range(2, 7)])
    regions, (region,) = region_batch([img], [(np.concatenate([boxes, anchor[None]]), anchor)], SPEC, 1024)
    rois = roi.rois(boxes, region, SPEC)
    x_lo, _, y_lo, _ = _sample_points(rois)
    assert np.array_equal(x_lo, np.round(x_lo)) and np.array_equal(y_lo, np.round(y_lo))  # on cell centres
    crops = crop_regions(img, boxes).astype(np.uint8)
    exact = net.trunk.convs(to_input(crops, mx.cpu())).asnumpy()
    fast = roi.pool(mx.nd, net.feature_maps(regions), mx.nd.array(rois), SPEC).asnumpy()
    assert np.abs(exact).max() > 0
    np.testing.assert_allclose(fast, exact, rtol=0, atol=RTOL * np.abs(exact).max())
    want = net.score(crops, 0, 64)
    scale = np.abs(want).max()
    np.testing.assert_allclose(net.score_fast(regions, rois, 0, 16), want, rtol=0, atol=RTOL * scale)
    np.testing.assert_allclose(net.window_scores(regions, rois, 0).asnumpy(), want, rtol=0, atol=RTOL * scale)


def test_window_scores_equal_whole_map_scores(net):
    b = _step("fast", seed=3)
    rois = np.concatenate([b.pos, b.neg[::5]])  # any subset, in pos-then-neg (not frame) order
    whole = net.score_fast(b.regions, rois, 0, 64)
    windowed = net.window_scores(b.regions, rois, 0).asnumpy()
    np.testing.assert_allclose(windowed, whole, rtol=0, atol=RTOL * np.abs(whole).max())
    # The windows are smaller than the regions (what makes the training pass cheaper).
    wins = W.frame_windows(rois, b.regions.shape, SPEC.conv3_size)
    assert [k for k, _, _ in wins] == list(range(8))
    assert any(W.window_pixels(b.regions, k, win).size < b.regions[k].size for k, _, win in wins)


def test_map_window_edges():
    # RoIs reaching past the map: the window is clipped to the map, never empty.
    rois = np.array([[0, -2.0, -2.0, 1.0, 1.0], [0, 8.0, 3.0, 12.0, 6.0]], np.float32)
    assert W.map_window(rois, 10, 6, 3) == (0, 0, 9, 5)
    assert W.map_window(rois[:1], 10, 6, 3) == (0, 0, 1, 1)
    assert W.shift_rois(rois[1:], (4, 2, 9, 5)).tolist() == [[0, 4.0, 1.0, 8.0, 4.0]]


def test_fast_training_step_moves_the_convs(net):
    b = _step("fast", seed=5)
    rois = np.concatenate([b.pos, b.neg[:96]])
    labels = mx.nd.array(np.r_[np.ones(len(b.pos)), np.zeros(96)])
    params = {**net.shared_params(), **{f"fc6.{k}": v for k, v in net.branch_params(0).items()}}
    before = {n: p.data().asnumpy().copy() for n, p in params.items()}
    trainer = mx.gluon.Trainer(params, "sgd", {"learning_rate": 0.1}, kvstore=None)
    with autograd.record():
        loss = mdnet_loss(mx.nd, net.window_scores(b.regions, rois, 0), labels).mean()
    loss.backward()
    for name in ("conv1_weight", "conv2_weight", "conv3_weight"):
        assert float(mx.nd.norm(params[name].grad()).asscalar()) > 0, name  # through RoIAlign
    trainer.step(1)
    for name in ("conv1_weight", "conv3_weight", "fc4_weight"):
        assert not np.array_equal(before[name], params[name].data().asnumpy()), name
    for n, p in params.items():  # put the shared net back for the other tests
        p.set_data(mx.nd.array(before[n]))


def test_fast_validation_samples_match_exact_ones():
    e = validation_samples(_domain(), np.random.default_rng(0), SamplingConfig(), ValConfig(), SPEC)
    f = validation_samples(_domain(), np.random.default_rng(0), SamplingConfig(), ValConfig(), SPEC, mode="fast")
    assert f.crops is None and e.regions is None
    assert np.array_equal(e.label, f.label) and np.array_equal(e.kind, f.kind) and np.array_equal(e.frame, f.frame)
    assert f.rois.shape == (len(f.label), 5) and np.array_equal(f.rois[:, 0], f.frame)
    assert f.regions.shape[:2] == (2, 3)


def test_mode_is_validated():
    from online.config import ConfigError
    from pretrain.config import load
    assert load(None, ["model.mode=fast"]).model.mode == "fast"
    with pytest.raises(ConfigError, match="model.mode"):
        load(None, ["model.mode=quick"])
    with pytest.raises(ConfigError, match="model.max_region"):
        load(None, ["model.max_region=100"])
    with pytest.raises(ValueError, match="mode"):
        _step("quick")
