"""The conv gradients pretraining computes are the true ones (online/network.py ConvStage, trainable).

MXNet 1.9.1's oneDNN backward of LRN -> max pooling returns wrong input gradients, so conv1's and
conv2's weight gradients came out wrong until the trainable stage put a reshape after each LRN.
Reference: the same net on MXNet's plain CPU kernels (MXNET_MKLDNN_ENABLED=0, read at start-up, so
each variant runs in its own process); those agree with finite differences (checked when the bug
was found: converged central differences to 1e-3).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]

_GRADS = r"""
import numpy as np, mxnet as mx
from mxnet import autograd
from online.network import NetSpec, Trunk, init_trunk
spec = NetSpec(conv_channels=(8, 16, 16), fc_width=16)
trunk = Trunk(spec, trainable_convs={trainable})
init_trunk(trunk, mx.cpu(), seed=3)
trunk.hybridize(static_alloc=True)
x = mx.nd.array(np.random.RandomState(0).randint(0, 256, (6, 3, 107, 107)).astype(np.float32))
with autograd.record():
    loss = (trunk(x) ** 2).sum()
loss.backward()
np.savez({out!r}, **{{n: p.grad().asnumpy() for n, p in trunk.collect_params().items()}})
"""


def _grads(tmp_path, trainable: bool, onednn: bool) -> dict:
    out = tmp_path / f"grads-{trainable}-{onednn}.npz"
    env = dict(os.environ, MXNET_MKLDNN_ENABLED="1" if onednn else "0", OMP_NUM_THREADS="1",
               PYTHONPATH=str(REPO))
    subprocess.run([sys.executable, "-c", _GRADS.format(trainable=trainable, out=str(out))], env=env, cwd=REPO,
                   check=True, capture_output=True, timeout=300)
    return dict(np.load(out))


def _rel(a, b) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def test_trainable_stage_gives_the_plain_kernels_gradients(tmp_path):
    import mxnet as mx
    if not mx.runtime.Features().is_enabled("MKLDNN"):
        pytest.skip("an MXNet build without oneDNN has no such bug to work around")
    plain = _grads(tmp_path, trainable=False, onednn=False)
    fixed = _grads(tmp_path, trainable=True, onednn=True)
    for name in ("conv1_weight", "conv1_bias", "conv2_weight", "conv2_bias", "conv3_weight", "fc4_weight"):
        assert _rel(fixed[name], plain[name]) < 1e-4, name
    # The bug itself, so that a future MXNet that fixes it shows up here (then the reshape can go).
    broken = _grads(tmp_path, trainable=False, onednn=True)
    assert _rel(broken["conv1_weight"], plain["conv1_weight"]) > 0.05
    assert _rel(broken["conv3_weight"], plain["conv3_weight"]) < 1e-4


def test_pretraining_inference_graphs_share_parameters_and_values():
    # Mining and validation run the stage without the reshape, over the same parameters.
    import mxnet as mx

    from online.network import NetSpec
    from pretrain.model import MultiDomainNet

    class Init:
        weights = None
        layers = ()
    net = MultiDomainNet(NetSpec(conv_channels=(8, 16, 16), fc_width=16), {0: "a"}, mx.cpu())
    net.initialize(Init(), seed=1)
    assert net.infer_convs.conv1.weight is net.trunk.convs.conv1.weight
    assert net.trunk.convs.trainable and not net.infer_convs.trainable
    crops = np.random.RandomState(2).randint(0, 256, (5, 3, 107, 107)).astype(np.uint8)
    x = mx.nd.array(crops).astype(np.float32)
    train_graph = net.branches[0](net.trunk(x)).asnumpy()
    assert np.array_equal(net.score(crops, 0, batch=5), train_graph)
    regions = np.random.RandomState(3).randint(0, 256, (2, 3, 139, 139)).astype(np.uint8)
    a = net.infer_fmap(mx.nd.array(regions).astype(np.float32)).asnumpy()
    b = net.feature_maps(regions).asnumpy()
    assert np.array_equal(a, b)
