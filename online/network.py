"""The MDNet network: shared trunk (convs, fc4, fc5) and a 2-way fc6 head.

| layer | op                                                    | output     |
| convs | a registered conv trunk (online/trunks): VGG-M conv1-3 (the paper's, 512x3x3) or ImageNet MobileNetV2 features.0-13 (96x7x7) | feat_dim |
| fc4   | feat_dim -> 512 -> ReLU -> dropout 0.5                | 512        |
| fc5   | 512 -> 512 -> ReLU -> dropout 0.5                     | 512        |
| fc6   | 512 -> 2 (one per domain / target)                    | 2          |

The trunk is split into the conv stage (pixels in, flattened last conv map out) and `FcStage`
(fc4-fc5) because online tracking trains fc4-fc6 on cached conv features: the convs run once per
sample, the cheap fc layers run every iteration. Preprocessing happens inside the conv stage, so
whoever feeds the net passes raw 0..255 crops and cannot normalise differently.

Parameter names are fixed by explicit prefixes (`conv1_weight`, ..., `fc5_bias`), never by Gluon's
global counters: Horovod matches tensors across ranks by name, and the weight file stores them by
name.
"""
from __future__ import annotations

import mxnet as mx
from mxnet import gluon
from mxnet.gluon import nn

from online import trunks
from online.trunks.ops import relu as _relu
# VGG-M's spec and blocks under their historical names (MatConvNet import, py-MDNet tools, tests).
from online.trunks.vggm import (LRN_ALPHA, LRN_BETA, LRN_KNORM, LRN_NSIZE, ConvStage, FeatureMap,  # noqa: F401
                                NetSpec)

FC_LAYERS = ("fc4", "fc5")
SHARED_LAYERS = ("conv1", "conv2", "conv3") + FC_LAYERS  # VGG-M's shared layers (MatConvNet import)

class FcStage(gluon.HybridBlock):
    """fc4-fc5 with dropout.

    Called as `fcs(x)`, dropout is MXNet's (active only under autograd.record(train_mode=True),
    masks from MXNet's RNG: pretraining). Called as `fcs(x, mask4, mask5)`, the given masks are
    multiplied in instead (the tracker draws them from each target's own generator). A hybridized
    block keeps the form of its first call.
    """

    def __init__(self, spec, **kw):
        super().__init__(prefix="", **kw)
        with self.name_scope():
            self.fc4 = nn.Dense(spec.fc_width, in_units=spec.feat_dim, prefix="fc4_")
            self.fc5 = nn.Dense(spec.fc_width, in_units=spec.fc_width, prefix="fc5_")
            self.drop4 = nn.Dropout(spec.dropout)
            self.drop5 = nn.Dropout(spec.dropout)

    def hybrid_forward(self, F, x, *masks):
        if masks:
            m4, m5 = masks
            return _relu(F, self.fc5(_relu(F, self.fc4(x)) * m4)) * m5
        x = self.drop4(_relu(F, self.fc4(x)))
        return self.drop5(_relu(F, self.fc5(x)))


class Trunk(gluon.HybridBlock):
    """The shared layers: pixels -> fc5 features. `convs` (the spec's registered conv trunk) and
    `fcs` are usable on their own; `feature_map(stride)` gives fast mode's map block over the same
    conv parameters."""

    def __init__(self, spec=NetSpec(), trainable_convs: bool = False, **kw):
        super().__init__(prefix="", **kw)
        self.spec = spec
        with self.name_scope():
            self.convs = trunks.of(spec).ConvStage(spec, trainable=trainable_convs)
            self.fcs = FcStage(spec)

    def feature_map(self, stride: int = 16, convs=None) -> gluon.HybridBlock:
        """Region -> conv map block (stride 16 or 8) over `convs` (default: this trunk's)."""
        return trunks.of(self.spec).FeatureMap(convs or self.convs, stride)

    def hybrid_forward(self, F, x):
        return self.fcs(self.convs(x))


def make_head(spec, name: str = "fc6") -> nn.Dense:
    """A fresh 2-way fc6: weights N(0, 0.01), bias 0 (the paper's init)."""
    head = nn.Dense(2, in_units=spec.fc_width, prefix=f"{name}_",
                    weight_initializer=mx.init.Normal(0.01), bias_initializer="zeros")
    return head


def init_trunk(trunk: Trunk, ctx=None, seed: int | None = None):
    """Paper init for the fc layers (N(0, 0.01), bias 0.1); the trunk module's random init for the
    convs (He-normal: see online/trunks). MDNet starts its convs from ImageNet weights instead."""
    ctx = ctx or mx.cpu()
    if seed is not None:
        mx.random.seed(seed)
    trunks.of(trunk.spec).init_convs(trunk.convs, ctx, seed)
    for name in FC_LAYERS:
        fc = getattr(trunk.fcs, name)
        fc.weight.initialize(mx.init.Normal(0.01), ctx=ctx, force_reinit=True)
        fc.bias.initialize(mx.init.Constant(0.1), ctx=ctx, force_reinit=True)


def shared_params(trunk: Trunk) -> dict:
    """name -> Parameter for the convs and fc4-fc5, names as stored in the weight file."""
    return {p.name: p for p in trunk.collect_params().values()}


def layer_of(param_name: str) -> str:
    """The layer a shared parameter belongs to ("conv1", "mb7_dw", "fc4"): the name less its
    `_weight` / `_bias` suffix."""
    return param_name.rsplit("_", 1)[0]


def is_fc(param_name: str) -> bool:
    return layer_of(param_name) in FC_LAYERS


def param_names(spec) -> dict:
    """Expected name -> shape of every shared parameter for a spec (used to validate files)."""
    return {**spec.conv_param_shapes(),
            "fc4_weight": (spec.fc_width, spec.feat_dim), "fc4_bias": (spec.fc_width,),
            "fc5_weight": (spec.fc_width, spec.fc_width), "fc5_bias": (spec.fc_width,)}
