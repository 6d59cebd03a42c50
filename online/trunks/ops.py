"""Small ops every trunk and the fc stage share."""
from __future__ import annotations

from mxnet import gluon


def relu(F, x):
    # Activation(relu), not F.relu: the same values (bitwise), but MXNet 1.9.1 runs `relu` outside
    # oneDNN, converting every conv output out of and back into oneDNN's blocked layout; measured
    # 1.3x on 256 crops through conv1-3 at VGG-M width, up to 3x on a narrow region map.
    return F.Activation(x, act_type="relu")


class MapBlock(gluon.HybridBlock):
    """What every trunk's FeatureMap shares: a region -> map block over a ConvStage's parameters,
    at stride 16 (the net as it is) or 8 (the same function evaluated every 8 px)."""

    STRIDES = (8, 16)

    def __init__(self, convs, stride: int = 16, **kw):
        super().__init__(prefix="", **kw)
        if stride not in self.STRIDES:
            raise ValueError(f"feature map stride must be 8 or 16, got {stride}")
        self.convs = convs
        self.stride = stride
