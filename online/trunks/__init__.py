"""The conv trunks MDNet can run on, by name: what exists, and the one way to get one.

A trunk is a module with the same five names (the interface every caller uses; nothing outside
this package asks which trunk it has):

- `Spec`: a frozen dataclass of everything the weight file records (TRUNK = the registry name;
  input_size, padding, mean, fc_width, dropout, feat_dim, conv3_size = cells per side of a crop's
  map, the map geometry fast mode reads: map_stride, map_centre0, map_margin, map_field(stride);
  to_dict / from_dict, validate(), conv_param_shapes(), describe()).
- `ConvStage(spec, trainable=False, share=None)`: raw 0..255 pixels -> flattened map (N, feat_dim).
- `FeatureMap(convs, stride)`: the same parameters, map output, stride 16 or 8 (fast mode).
- `init_convs(convs, ctx, seed)`: a random start (`random:SEED`).
- `FAST_TRAINABLE`: whether fast-mode pretraining can train the convs on map windows.
- `PRECISIONS`: the inference precisions built and measured for it (online/trunk_precision.py).
- `INFERENCE_BACKEND`: the subgraph backend its fp32 inference graph is partitioned with (or None).
- `Spec.MODEL_KEYS`: the pretraining config's model keys its spec takes (pretrain/config.py).

| name | module | what |
|---|---|---|
| vggm | online/trunks/vggm.py | VGG-M conv1-3, the paper's (MatConvNet import, py-MDNet parity) |
| mobilenetv2 | online/trunks/mobilenetv2.py | torchvision's ImageNet MobileNetV2 features.0-13, BN folded |
"""
from __future__ import annotations

from online.trunks import mobilenetv2, vggm

TRUNKS = {"mobilenetv2": mobilenetv2, "vggm": vggm}
DEFAULT = "vggm"  # a weight file without a `trunk` attribute predates the registry: VGG-M


def get(name: str):
    """The trunk module registered as `name`; an unknown name lists the known ones."""
    try:
        return TRUNKS[name]
    except KeyError:
        raise ValueError(f"unknown trunk {name!r}; known trunks: {', '.join(sorted(TRUNKS))}") from None


def of(spec):
    """The trunk module of a spec."""
    return get(spec.TRUNK)


def spec_from_dict(d):
    """A trunk spec from its flat dict (weight-file attributes, checkpoint JSON): `trunk` picks the
    module (absent: VGG-M, files written before the registry). KeyError names missing keys."""
    raw = d.get("trunk", DEFAULT)
    name = raw.decode() if isinstance(raw, bytes) else str(raw)
    return get(name).Spec.from_dict(d)


def default_spec(name: str, **fields):
    """The spec of trunk `name` with its defaults, `fields` overriding them."""
    return get(name).Spec(**fields)
