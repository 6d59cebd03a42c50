"""The MDNet network: shared trunk (conv1-3, fc4, fc5) and a 2-way fc6 head.

| layer | op                                                    | output     |
| conv1 | 7x7/2, 96 -> ReLU -> LRN -> maxpool 3/2               | 96x25x25   |
| conv2 | 5x5/2, 256 -> ReLU -> LRN -> maxpool 3/2              | 256x5x5    |
| conv3 | 3x3/1, 512 -> ReLU                                    | 512x3x3    |
| fc4   | 4608 -> 512 -> ReLU -> dropout 0.5                    | 512        |
| fc5   | 512 -> 512 -> ReLU -> dropout 0.5                     | 512        |
| fc6   | 512 -> 2 (one per domain / target)                    | 2          |

The trunk is split into `ConvStage` (conv1-3, pixels in, flattened conv3 out) and `FcStage`
(fc4-fc5) because online tracking trains fc4-fc6 on cached conv3 features: the convs run once per
sample, the cheap fc layers run every iteration. Mean subtraction happens inside `ConvStage`, so
whoever feeds the net passes raw 0..255 crops and cannot normalise differently.

Parameter names are fixed by explicit prefixes (`conv1_weight`, ..., `fc5_bias`), never by Gluon's
global counters: Horovod matches tensors across ranks by name, and the weight file stores them by
name.
"""
from __future__ import annotations

from dataclasses import dataclass

import mxnet as mx
from mxnet import gluon
from mxnet.gluon import nn

# MatConvNet VGG-M LRN: x / (kappa + alpha * sum_{n=5} x^2)^beta with kappa=2, alpha=1e-4, beta=0.75.
# MXNet's LRN divides alpha by nsize, so the equivalent MXNet alpha is 1e-4 * 5 = 5e-4.
LRN_NSIZE = 5
LRN_ALPHA = 5e-4
LRN_BETA = 0.75
LRN_KNORM = 2.0

SHARED_LAYERS = ("conv1", "conv2", "conv3", "fc4", "fc5")


@dataclass(frozen=True)
class NetSpec:
    """Everything the weight file records about the trunk's shape and preprocessing."""
    conv_channels: tuple = (96, 256, 512)
    fc_width: int = 512
    input_size: int = 107
    padding: int = 16  # context pixels on each side at input scale: the box fills the central 75 px
    mean: float = 128.0
    dropout: float = 0.5
    lrn: tuple = (LRN_NSIZE, LRN_ALPHA, LRN_BETA, LRN_KNORM)

    # One serialisation, used by the weight file (HDF5 attributes), checkpoints and export (JSON):
    # flat keys with plain values, LRN split into its four constants.
    KEYS = ("conv_channels", "fc_width", "input_size", "padding", "mean", "dropout",
            "lrn_nsize", "lrn_alpha", "lrn_beta", "lrn_knorm")

    def to_dict(self) -> dict:
        nsize, alpha, beta, knorm = self.lrn
        return {"conv_channels": [int(c) for c in self.conv_channels], "fc_width": int(self.fc_width),
                "input_size": int(self.input_size), "padding": int(self.padding), "mean": float(self.mean),
                "dropout": float(self.dropout), "lrn_nsize": int(nsize), "lrn_alpha": float(alpha),
                "lrn_beta": float(beta), "lrn_knorm": float(knorm)}

    @classmethod
    def from_dict(cls, d) -> "NetSpec":
        """Inverse of to_dict; KeyError names the missing keys, ValueError a malformed value."""
        missing = [k for k in cls.KEYS if k not in d]
        if missing:
            raise KeyError(f"missing network keys {missing}")
        import numpy as np  # attribute values may come back from HDF5 as numpy scalars/arrays
        channels = tuple(int(c) for c in np.asarray(d["conv_channels"]).reshape(-1))
        if len(channels) != 3:
            raise ValueError(f"conv_channels must have 3 values, found {channels}")
        return cls(conv_channels=channels, fc_width=int(d["fc_width"]), input_size=int(d["input_size"]),
                   padding=int(d["padding"]), mean=float(d["mean"]), dropout=float(d["dropout"]),
                   lrn=(int(d["lrn_nsize"]), float(d["lrn_alpha"]), float(d["lrn_beta"]), float(d["lrn_knorm"])))

    @property
    def conv3_size(self) -> int:
        s = (self.input_size - 7) // 2 + 1  # conv1
        s = (s - 3) // 2 + 1  # pool1
        s = (s - 5) // 2 + 1  # conv2
        s = (s - 3) // 2 + 1  # pool2
        return s - 2  # conv3 3x3 stride 1

    @property
    def feat_dim(self) -> int:
        return self.conv_channels[2] * self.conv3_size ** 2


def _relu(F, x):
    # Activation(relu), not F.relu: the same values (bitwise), but MXNet 1.9.1 runs `relu` outside
    # oneDNN, converting every conv output out of and back into oneDNN's blocked layout; measured
    # 1.3x on 256 crops through conv1-3 at VGG-M width, up to 3x on a narrow region map.
    return F.Activation(x, act_type="relu")


class ConvStage(gluon.HybridBlock):
    """conv1-conv3; input N x 3 x S x S raw pixels (0..255), output N x feat_dim.

    `trainable=True` for a stage whose conv weights get gradients (pretraining): MXNet 1.9.1's
    oneDNN backward of LRN followed by max pooling returns WRONG input gradients, so conv1's and
    conv2's weight gradients are wrong (measured on the real-cpu checkpoint: ~110-130% relative
    error for conv1, ~17-22% for conv2; conv3-fc5 and every forward value are right; a 4-layer
    conv->ReLU->LRN->pool repro gave a gradient norm of 6.2e5 against 1.7e5 from MXNet's plain
    kernels, MXNET_MKLDNN_ENABLED=0, which agree with finite differences). A reshape to the same
    shape after each LRN hands the pooling its input in plain layout and the gradients come out as
    the plain kernels' (tests/pretrain/test_lrn_gradient.py). The reshape costs a layout
    conversion per LRN in the forward pass (256 crops: ~23% slower), so inference stages (the
    tracker's frozen convs, pretraining's mining pass) leave it out; the values are bitwise the same.
    """

    def __init__(self, spec: NetSpec, trainable: bool = False, share: "ConvStage | None" = None, **kw):
        """`share`: another stage whose parameters (the same arrays) this one uses."""
        super().__init__(prefix="", **kw)
        self.spec = spec
        self.trainable = bool(trainable)
        c1, c2, c3 = spec.conv_channels

        def shared(name):
            return None if share is None else getattr(share, name).collect_params()
        with self.name_scope():
            self.conv1 = nn.Conv2D(c1, 7, strides=2, in_channels=3, prefix="conv1_", params=shared("conv1"))
            self.conv2 = nn.Conv2D(c2, 5, strides=2, in_channels=c1, prefix="conv2_", params=shared("conv2"))
            self.conv3 = nn.Conv2D(c3, 3, strides=1, in_channels=c2, prefix="conv3_", params=shared("conv3"))

    def hybrid_forward(self, F, x):
        return F.flatten(self.feature_map(F, x))

    def _lrn(self, F, x):
        nsize, alpha, beta, knorm = self.spec.lrn
        x = F.LRN(x, nsize=nsize, alpha=alpha, beta=beta, knorm=knorm)
        # See the class docstring: without it oneDNN's backward through LRN -> pool is wrong.
        return F.reshape(x, shape=(0, 0, 0, 0)) if self.trainable else x

    def feature_map(self, F, x, conv3=None):
        """conv3 output (N, C, h, w) of raw pixels of any size >= 75 px (fast mode's region maps).
        `conv3` replaces the last stage (FeatureMap's dense variant); default: the net's own."""
        x = x - self.spec.mean
        x = _relu(F, self.conv1(x))
        x = self._lrn(F, x)
        x = F.Pooling(x, kernel=(3, 3), stride=(2, 2), pool_type="max")
        x = _relu(F, self.conv2(x))
        x = self._lrn(F, x)
        if conv3 is not None:
            return conv3(F, x)
        x = F.Pooling(x, kernel=(3, 3), stride=(2, 2), pool_type="max")
        return _relu(F, self.conv3(x))


class FeatureMap(gluon.HybridBlock):
    """A ConvStage's conv1-3 without the flatten (same parameters): region -> conv3 map.

    `stride=16`: the net as it is (conv3 cells 16 px apart). `stride=8`: the same function
    evaluated twice as densely ("a trous"): pool2 with stride 1 and conv3 dilated by 2 compute the
    stride-16 net's conv3 output at every 8 px offset, exactly, with the same weights (RT-MDNet
    changes its net to this shape and retrains it; here exact-mode weights stay valid).
    """

    def __init__(self, convs: ConvStage, stride: int = 16, **kw):
        super().__init__(prefix="", **kw)
        if stride not in (8, 16):
            raise ValueError(f"feature map stride must be 8 or 16, got {stride}")
        self.convs = convs
        self.stride = stride
        if stride == 8:
            c2, c3 = convs.spec.conv_channels[1:]
            # Shares conv3's parameters (same names, same arrays), only the dilation differs.
            self.conv3_dense = nn.Conv2D(c3, 3, strides=1, dilation=2, in_channels=c2, prefix="conv3_",
                                         params=convs.conv3.collect_params())

    def _dense_conv3(self, F, x):
        x = F.Pooling(x, kernel=(3, 3), stride=(1, 1), pool_type="max")
        return _relu(F, self.conv3_dense(x))

    def hybrid_forward(self, F, x):
        return self.convs.feature_map(F, x, self._dense_conv3 if self.stride == 8 else None)


class FcStage(gluon.HybridBlock):
    """fc4-fc5 with dropout.

    Called as `fcs(x)`, dropout is MXNet's (active only under autograd.record(train_mode=True),
    masks from MXNet's RNG: pretraining). Called as `fcs(x, mask4, mask5)`, the given masks are
    multiplied in instead (the tracker draws them from each target's own generator). A hybridized
    block keeps the form of its first call.
    """

    def __init__(self, spec: NetSpec, **kw):
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
    """The shared layers: pixels -> fc5 features. `convs` and `fcs` are usable on their own."""

    def __init__(self, spec: NetSpec = NetSpec(), trainable_convs: bool = False, **kw):
        super().__init__(prefix="", **kw)
        self.spec = spec
        with self.name_scope():
            self.convs = ConvStage(spec, trainable=trainable_convs)
            self.fcs = FcStage(spec)

    def hybrid_forward(self, F, x):
        return self.fcs(self.convs(x))


def make_head(spec: NetSpec, name: str = "fc6") -> nn.Dense:
    """A fresh 2-way fc6: weights N(0, 0.01), bias 0 (the paper's init)."""
    head = nn.Dense(2, in_units=spec.fc_width, prefix=f"{name}_",
                    weight_initializer=mx.init.Normal(0.01), bias_initializer="zeros")
    return head


def init_trunk(trunk: Trunk, ctx=None, seed: int | None = None):
    """Paper init for the fc layers (N(0, 0.01), bias 0.1); He-normal for convs.

    MDNet starts its convs from ImageNet VGG-M; when no weight file is given we use He init so a
    random trunk still passes signal through three ReLU layers (N(0, 0.01) would shrink it ~100x per
    layer and leave fc4 nothing to learn from).
    """
    ctx = ctx or mx.cpu()
    if seed is not None:
        mx.random.seed(seed)
    for name in ("conv1", "conv2", "conv3"):
        conv = getattr(trunk.convs, name)
        conv.weight.initialize(mx.init.MSRAPrelu(factor_type="in", slope=0.0), ctx=ctx, force_reinit=True)
        conv.bias.initialize(mx.init.Zero(), ctx=ctx, force_reinit=True)
    for name in ("fc4", "fc5"):
        fc = getattr(trunk.fcs, name)
        fc.weight.initialize(mx.init.Normal(0.01), ctx=ctx, force_reinit=True)
        fc.bias.initialize(mx.init.Constant(0.1), ctx=ctx, force_reinit=True)


def shared_params(trunk: Trunk) -> dict:
    """name -> Parameter for conv1..fc5, names as stored in the weight file."""
    return {p.name: p for p in trunk.collect_params().values()}


def param_names(spec: NetSpec) -> dict:
    """Expected name -> shape of every shared parameter for a spec (used to validate files)."""
    c1, c2, c3 = spec.conv_channels
    return {
        "conv1_weight": (c1, 3, 7, 7), "conv1_bias": (c1,),
        "conv2_weight": (c2, c1, 5, 5), "conv2_bias": (c2,),
        "conv3_weight": (c3, c2, 3, 3), "conv3_bias": (c3,),
        "fc4_weight": (spec.fc_width, spec.feat_dim), "fc4_bias": (spec.fc_width,),
        "fc5_weight": (spec.fc_width, spec.fc_width), "fc5_bias": (spec.fc_width,),
    }
