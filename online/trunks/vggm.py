"""VGG-M's conv1-3, MDNet's trunk (registry name "vggm"); the paper's path, MatConvNet import, py-MDNet parity.

| layer | op                                                    | output     |
| conv1 | 7x7/2, 96 -> ReLU -> LRN -> maxpool 3/2               | 96x25x25   |
| conv2 | 5x5/2, 256 -> ReLU -> LRN -> maxpool 3/2              | 256x5x5    |
| conv3 | 3x3/1, 512 -> ReLU                                    | 512x3x3    |

Mean subtraction happens inside `ConvStage`, so whoever feeds the net passes raw 0..255 crops and
cannot normalise differently. Parameter names are fixed by explicit prefixes (`conv1_weight`, ...),
never by Gluon's global counters: Horovod matches tensors across ranks by name, and the weight file
stores them by name. The trunk interface (what online/trunks/__init__.py expects of a module) is
`Spec`, `ConvStage`, `FeatureMap`, `init_convs` and `FAST_TRAINABLE`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import mxnet as mx
from mxnet import gluon
from mxnet.gluon import nn

from online.trunks.ops import MapBlock
from online.trunks.ops import relu as _relu

# MatConvNet VGG-M LRN: x / (kappa + alpha * sum_{n=5} x^2)^beta with kappa=2, alpha=1e-4, beta=0.75.
# MXNet's LRN divides alpha by nsize, so the equivalent MXNet alpha is 1e-4 * 5 = 5e-4.
LRN_NSIZE = 5
LRN_ALPHA = 5e-4
LRN_BETA = 0.75
LRN_KNORM = 2.0

CONV_LAYERS = ("conv1", "conv2", "conv3")


@dataclass(frozen=True)
class NetSpec:
    """Everything the weight file records about VGG-M's shape and preprocessing (trunk "vggm")."""
    TRUNK: ClassVar[str] = "vggm"
    MODEL_KEYS: ClassVar[tuple] = ("conv_channels",)  # the pretraining config's model keys it takes
    conv_channels: tuple = (96, 256, 512)
    fc_width: int = 512
    input_size: int = 107
    padding: int = 16  # context pixels on each side at input scale: the box fills the central 75 px
    mean: float = 128.0
    dropout: float = 0.5
    lrn: tuple = (LRN_NSIZE, LRN_ALPHA, LRN_BETA, LRN_KNORM)

    # One serialisation, used by the weight file (HDF5 attributes), checkpoints and export (JSON):
    # flat keys with plain values, LRN split into its four constants.
    KEYS: ClassVar[tuple] = ("conv_channels", "fc_width", "input_size", "padding", "mean", "dropout",
            "lrn_nsize", "lrn_alpha", "lrn_beta", "lrn_knorm")

    def to_dict(self) -> dict:
        nsize, alpha, beta, knorm = self.lrn
        return {"trunk": self.TRUNK, "conv_channels": [int(c) for c in self.conv_channels], "fc_width": int(self.fc_width),
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

    # Geometry of the last conv map, for fast mode (online/roi.py): cell k of a crop's map is
    # centred at `map_centre0 + map_stride * k` crop pixels; a region of `map_field + stride (c - 1)`
    # px gives c cells (valid convolutions: conv3's receptive field is 75 px).
    map_stride = 16
    map_centre0 = 37.5
    map_margin = 37.5  # region px kept around every sample point: conv3's whole receptive field

    def map_field(self, stride: int) -> int:
        return 75

    def describe(self) -> str:
        return f"vggm {'/'.join(map(str, self.conv_channels))}/{self.fc_width}"

    def validate(self) -> str | None:
        """Why this spec gives no usable network, or None."""
        if len(self.conv_channels) != 3:
            return f"conv_channels must have 3 values, found {self.conv_channels}"
        if self.input_size - 2 * self.padding <= 0 or self.conv3_size <= 0:
            return f"input_size {self.input_size} with padding {self.padding} does not give a valid network"
        return None

    def conv_param_shapes(self) -> dict:
        c1, c2, c3 = self.conv_channels
        return {"conv1_weight": (c1, 3, 7, 7), "conv1_bias": (c1,),
                "conv2_weight": (c2, c1, 5, 5), "conv2_bias": (c2,),
                "conv3_weight": (c3, c2, 3, 3), "conv3_bias": (c3,)}


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


class FeatureMap(MapBlock):
    """A ConvStage's conv1-3 without the flatten (same parameters): region -> conv3 map.

    `stride=16`: the net as it is (conv3 cells 16 px apart). `stride=8`: the same function
    evaluated twice as densely ("a trous"): pool2 with stride 1 and conv3 dilated by 2 compute the
    stride-16 net's conv3 output at every 8 px offset, exactly, with the same weights (RT-MDNet
    changes its net to this shape and retrains it; here exact-mode weights stay valid).
    """

    def __init__(self, convs: ConvStage, stride: int = 16, **kw):
        super().__init__(convs, stride, **kw)
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


def init_convs(convs: ConvStage, ctx, seed=None) -> None:
    """He-normal convs, zero bias: a random trunk that still passes signal through three ReLU
    layers (N(0, 0.01) would shrink it ~100x per layer and leave fc4 nothing to learn from).
    MDNet itself starts conv1-3 from ImageNet VGG-M (mdnet-import)."""
    for name in CONV_LAYERS:
        conv = getattr(convs, name)
        conv.weight.initialize(mx.init.MSRAPrelu(factor_type="in", slope=0.0), ctx=ctx, force_reinit=True)
        conv.bias.initialize(mx.init.Zero(), ctx=ctx, force_reinit=True)


# Fast-mode pretraining may train these convs through RoIAlign on map windows (pretrain/windows.py
# relies on valid convolutions: a lattice-aligned slice of a region gives the same cells).
FAST_TRAINABLE = True
Spec = NetSpec
# Inference precisions built and measured for this trunk (online/trunk_precision.py), and the
# subgraph backend its fp32 inference graph needs (none: it is oneDNN's throughout).
PRECISIONS = ("fp32", "bf16", "int8", "fp16")
INFERENCE_BACKEND = None
