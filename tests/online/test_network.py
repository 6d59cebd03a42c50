"""The network: MatConvNet-equal LRN, shapes, fixed parameter names, init, dropout, hybridize."""
import mxnet as mx
import numpy as np
import pytest
from mxnet import autograd

from online.network import (LRN_ALPHA, LRN_BETA, LRN_KNORM, LRN_NSIZE, ConvStage, NetSpec, Trunk,
                            init_trunk, make_head, param_names, shared_params)

SMALL = NetSpec(conv_channels=(16, 32, 64), fc_width=64)
EXPECTED_NAMES = ["conv1_weight", "conv1_bias", "conv2_weight", "conv2_bias", "conv3_weight",
                  "conv3_bias", "fc4_weight", "fc4_bias", "fc5_weight", "fc5_bias"]


def matconvnet_lrn(x, n=5, kappa=2.0, alpha=1e-4, beta=0.75):
    """MatConvNet vl_nnnormalize: y = x / (kappa + alpha * sum_{|c'-c| <= n//2} x_c'^2)^beta."""
    x = np.asarray(x, dtype=np.float64)
    sq = np.pad(x ** 2, [(0, 0), (n // 2, n // 2), (0, 0), (0, 0)])
    c = x.shape[1]
    window = sum(sq[:, i:i + c] for i in range(n))
    return x / (kappa + alpha * window) ** beta


def _pixels(n=2, seed=0, size=107):
    return mx.nd.array(np.random.default_rng(seed).uniform(0, 255, (n, 3, size, size)))


def _trunk(spec=SMALL, seed=0):
    t = Trunk(spec)
    init_trunk(t, seed=seed)
    return t


# ------------------------------------------------------------------------------------------ LRN


def test_lrn_constants_match_matconvnet():
    # Values around 50 make alpha * sum(x^2) ~ 1, comparable to kappa = 2: a wrong alpha shows.
    x = np.random.default_rng(0).uniform(-100, 100, (2, 12, 5, 5)).astype(np.float32)
    want = matconvnet_lrn(x)
    got = mx.nd.LRN(mx.nd.array(x), nsize=LRN_NSIZE, alpha=LRN_ALPHA, beta=LRN_BETA,
                    knorm=LRN_KNORM).asnumpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert NetSpec().lrn == (LRN_NSIZE, LRN_ALPHA, LRN_BETA, LRN_KNORM)


def test_lrn_with_matconvnet_alpha_in_mxnet_is_wrong():
    # MXNet divides alpha by nsize: passing MatConvNet's 1e-4 verbatim gives a different layer.
    # This is the mistake the constants guard against; the check must be able to see it.
    x = np.random.default_rng(0).uniform(-100, 100, (2, 12, 5, 5)).astype(np.float32)
    wrong = mx.nd.LRN(mx.nd.array(x), nsize=5, alpha=1e-4, beta=0.75, knorm=2.0).asnumpy()
    rel = np.abs(wrong - matconvnet_lrn(x)) / np.abs(matconvnet_lrn(x))
    assert rel.max() > 0.1
    assert not np.allclose(wrong, matconvnet_lrn(x), rtol=1e-5, atol=1e-6)


def test_conv_stage_graph_uses_the_lrn_constants():
    sym = ConvStage(SMALL)(mx.sym.var("data"))
    lrns = {k: v for k, v in sym.attr_dict().items() if k.startswith("lrn")}
    assert len(lrns) == 2
    for attrs in lrns.values():
        assert int(attrs["nsize"]) == 5
        assert float(attrs["alpha"]) == pytest.approx(5e-4)
        assert float(attrs["beta"]) == pytest.approx(0.75)
        assert float(attrs["knorm"]) == pytest.approx(2.0)


def test_conv_stage_matches_reference_pipeline():
    # The whole stage against a step-by-step reference with the numpy (MatConvNet) LRN: checks the
    # mean subtraction, the op order and the LRN together (with alpha=1e-4 in the stage it fails).
    spec = NetSpec(conv_channels=(8, 12, 16), fc_width=16)
    trunk = _trunk(spec)
    p = {k: v.data() for k, v in shared_params(trunk).items()}
    x = _pixels(2)

    def conv(h, name, stride):
        w = p[f"{name}_weight"]
        return mx.nd.Convolution(h, w, p[f"{name}_bias"], kernel=w.shape[2:], stride=(stride,) * 2,
                                 num_filter=w.shape[0])

    def pool(h):
        return mx.nd.Pooling(h, kernel=(3, 3), stride=(2, 2), pool_type="max")

    h = mx.nd.relu(conv(x - 128.0, "conv1", 2))
    h = pool(mx.nd.array(matconvnet_lrn(h.asnumpy())))
    h = mx.nd.relu(conv(h, "conv2", 2))
    h = pool(mx.nd.array(matconvnet_lrn(h.asnumpy())))
    want = mx.nd.relu(conv(h, "conv3", 1)).asnumpy().reshape(2, -1)
    got = trunk.convs(x).asnumpy()
    assert np.abs(want).max() > 1  # the LRN saw large values, so its constants mattered
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


# --------------------------------------------------------------------------------------- shapes


def test_full_width_conv_output_and_layer_sizes():
    spec = NetSpec()
    assert spec.conv3_size == 3 and spec.feat_dim == 4608
    stage = ConvStage(spec)
    stage.initialize(mx.init.Xavier())
    assert stage(_pixels(2)).shape == (2, 4608)

    internals = stage(mx.sym.var("data")).get_internals()
    _, shapes, _ = internals.infer_shape(data=(1, 3, 107, 107))
    by_name = dict(zip(internals.list_outputs(), shapes))
    pools = [s for n, s in by_name.items() if n.startswith("pooling")]
    assert pools == [(1, 96, 25, 25), (1, 256, 5, 5)]
    conv3 = [s for n, s in by_name.items() if n.startswith("conv3") and n.endswith("_output")]
    assert conv3 == [(1, 512, 3, 3)]


def test_narrow_widths():
    trunk = _trunk(SMALL)
    x = _pixels(3)
    assert trunk.convs(x).shape == (3, 64 * 9)
    assert trunk(x).shape == (3, 64)
    for name, shape in param_names(SMALL).items():
        assert shared_params(trunk)[name].shape == shape


# ---------------------------------------------------------------------------- names and init


def test_parameter_names_are_fixed_and_deterministic():
    a = Trunk(SMALL)
    make_head(SMALL)  # advance Gluon's global name counters between constructions
    mx.gluon.nn.Dense(3)
    b = Trunk(NetSpec())
    assert list(shared_params(a)) == EXPECTED_NAMES
    assert list(shared_params(b)) == EXPECTED_NAMES
    assert list(param_names(SMALL)) == EXPECTED_NAMES
    assert sorted(make_head(SMALL).collect_params().keys()) == ["fc6_bias", "fc6_weight"]


def test_same_seed_same_init():
    pa = {k: v.data().asnumpy() for k, v in shared_params(_trunk(seed=4)).items()}
    pb = {k: v.data().asnumpy() for k, v in shared_params(_trunk(seed=4)).items()}
    for k in pa:
        np.testing.assert_array_equal(pa[k], pb[k])


def test_paper_init():
    trunk = _trunk(NetSpec(), seed=0)  # full width: enough samples to measure the std
    p = {k: v.data().asnumpy() for k, v in shared_params(trunk).items()}
    np.testing.assert_array_equal(p["fc4_bias"], 0.1)
    np.testing.assert_array_equal(p["fc5_bias"], 0.1)
    assert p["fc4_weight"].std() == pytest.approx(0.01, rel=0.02)
    assert p["fc5_weight"].std() == pytest.approx(0.01, rel=0.02)
    assert abs(p["fc4_weight"].mean()) < 1e-4
    head = make_head(NetSpec())
    head.initialize()
    np.testing.assert_array_equal(head.bias.data().asnumpy(), 0.0)
    assert head.weight.data().asnumpy().std() == pytest.approx(0.01, rel=0.15)


# ------------------------------------------------------------------------- dropout, hybridize


def test_dropout_only_in_training():
    trunk = _trunk()
    feats = trunk.convs(_pixels(4))
    a = trunk.fcs(feats).asnumpy()
    b = trunk.fcs(feats).asnumpy()
    np.testing.assert_array_equal(a, b)
    with autograd.record(train_mode=True):
        c = trunk.fcs(feats).asnumpy()
        d = trunk.fcs(feats).asnumpy()
    assert not np.array_equal(c, d)
    assert (c == 0).mean() > (a == 0).mean() + 0.2  # about half the units dropped
    # record() alone (train_mode=False) is inference: no dropout.
    with autograd.record(train_mode=False):
        e = trunk.fcs(feats).asnumpy()
    np.testing.assert_array_equal(a, e)


def test_hybridized_equals_imperative():
    trunk = _trunk()
    x = _pixels(3)
    want = trunk(x).asnumpy()
    trunk.hybridize()
    got = trunk(x).asnumpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
