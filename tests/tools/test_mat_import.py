"""mdnet-import: MatConvNet .mat networks -> MDNet weight files, checked against MatConvNet's forward.

The .mat files are written here (scipy savemat for v5/v7, h5py laid out like MATLAB for v7.3) from
simplenn layer lists with random weights; the imported network's conv3 and fc5 outputs must equal a
numpy version of MatConvNet's forward over the same layers (tests/tools/matconvnet_ref.py).
"""
import hashlib
import importlib.util
import re
import subprocess
import sys
import time
from pathlib import Path

import h5py
import mxnet as mx
import numpy as np
import pytest

from online.crops import crop_regions
from online.network import NetSpec, Trunk, init_trunk
from online.weights import build_trunk, load_weights, params_from_trunk
from pretrain.config import InitConfig
from pretrain.model import MultiDomainNet
from tools.weights.mat_import import main

# The helper lives beside this file; load it by path (pytest runs with --import-mode=importlib).
_spec = importlib.util.spec_from_file_location("matconvnet_ref", Path(__file__).with_name("matconvnet_ref.py"))
ref = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ref)

REPO = Path(__file__).resolve().parents[2]
C, F = (8, 16, 16), 32


def _images(n=2, seed=0):
    """Raw 0..255 RGB pixels, NCHW, as the Trunk takes them."""
    return np.random.default_rng(seed).integers(0, 256, (n, 3, 107, 107)).astype(np.float32)


def _reference(layers, images, until):
    # MatConvNet sees HxWxC images with MDNet's mean 128 subtracted (utils/im_crop.m).
    return np.stack([ref.simplenn_forward(layers, im.transpose(1, 2, 0) - 128.0, until)
                     for im in images])


def _close(got, want, what):
    err = np.abs(got - want).max() / np.abs(want).max()
    assert err < 1e-4, f"{what}: relative error {err:.2e}"
    assert (want > 0).mean() > 0.2, f"{what}: reference output mostly zero, the test proves little"


def _import(tmp_path, *args, name="w.h5"):
    out = tmp_path / name
    rc = main([str(a) for a in args] + ["--out", str(out)])
    return rc, out


# ------------------------------------------------------------------------------- MDNet models


@pytest.mark.parametrize("fmt,style,bias_col", [
    ("v5", "filters", False), ("v7", "weights", True), ("v73", "filters", True),
    ("v73", "weights", False)])
def test_mdnet_model_matches_matconvnet_forward(tmp_path, capsys, fmt, style, bias_col):
    layers = ref.mdnet_layers(np.random.default_rng(1), C, F, style=style, bias_col=bias_col)
    mat = tmp_path / "mdnet_vot-otb.mat"
    ref.write(mat, {"layers": layers}, fmt)
    rc, out = _import(tmp_path, mat)
    assert rc == 0, capsys.readouterr().err

    wf = load_weights(out)
    # Widths come from the file; the preprocessing is MDNet's (NetSpec defaults).
    assert wf.spec == NetSpec(conv_channels=C, fc_width=F)
    trunk, prov = build_trunk(str(out))
    x = _images()
    conv3 = trunk.convs(mx.nd.array(x))  # outside autograd: inference mode, no dropout
    fc5 = trunk.fcs(conv3).asnumpy()
    # MatConvNet's conv3 map is H x W x C; MXNet flattens NCHW as C, H, W.
    want3 = _reference(layers, x, "relu3").transpose(0, 3, 1, 2).reshape(len(x), -1)
    _close(conv3.asnumpy(), want3, "conv3")
    _close(fc5, _reference(layers, x, "relu5").reshape(len(x), -1), "fc5")

    p = prov["provenance"]
    digest = hashlib.sha256(mat.read_bytes()).hexdigest()
    assert sorted(p["from_file"]) == ["conv1", "conv2", "conv3", "fc4", "fc5"]
    assert all(v["sha256"] == digest and v["file"] == mat.name for v in p["from_file"].values())
    assert p["from_file"]["fc4"]["shape"] == [3, 3, C[2], F] and p["paper_init"]["layers"] == []
    assert len(p["dropped"]) == 1 and "'fc6'" in p["dropped"][0]
    log = capsys.readouterr().out
    assert "dropped layer 17 'fc6'" in log and "subtracts 128" in log and "padding: none" in log


def test_full_mdnet_shapes_layout(tmp_path):
    """MDNet's real shapes (96/256/512, fc 512): layout and forward, in a few seconds."""
    t0 = time.perf_counter()
    layers = ref.mdnet_layers(np.random.default_rng(2), (96, 256, 512), 512, style="filters")
    mat = tmp_path / "mdnet_otb-vot15.mat"
    ref.write(mat, {"layers": layers}, "v5")
    rc, out = _import(tmp_path, mat)
    assert rc == 0
    wf = load_weights(out)
    assert wf.spec == NetSpec()  # the default network is MDNet's
    f1, b1 = ref.conv_weights(layers[0])
    assert np.array_equal(wf.params["conv1_weight"], f1.transpose(3, 2, 0, 1))
    assert np.array_equal(wf.params["conv1_bias"], b1.ravel())
    f4, _ = ref.conv_weights(layers[10])
    w4 = wf.params["fc4_weight"]
    assert w4.shape == (512, 4608)
    # Dense input index c*9 + h*3 + w (MXNet flatten of NCHW) holds filter element (h, w, c).
    for o, c, h, w in [(0, 0, 0, 0), (5, 300, 2, 1), (511, 511, 1, 2)]:
        assert w4[o, c * 9 + h * 3 + w] == f4[h, w, c, o]
    f5, _ = ref.conv_weights(layers[13])
    assert np.array_equal(wf.params["fc5_weight"], f5[0, 0].T)
    trunk, _ = build_trunk(str(out))
    x = _images(1, seed=3)
    got = trunk.fcs(trunk.convs(mx.nd.array(x))).asnumpy()
    _close(got, _reference(layers, x, "relu5").reshape(1, -1), "fc5 at full width")
    assert time.perf_counter() - t0 < 5.0


def test_conv1_input_channels_are_rgb(tmp_path):
    """conv1's Cin axis is R, G, B: an R-only filter sees a red image through the project's crops."""
    rng = np.random.default_rng(4)
    layers = ref.conv1_3_layers(rng, C, style="weights")
    for layer in (layers[0], layers[4], layers[8]):
        f, b = layer["weights"]
        f[...] = np.abs(f)  # positive weights, zero bias: signal passes, nothing from nowhere
        b[...] = 0
    layers[0]["weights"][0][:, :, 1:, :] = 0  # conv1 looks at channel 1 (MATLAB) = R only
    mat = tmp_path / "r.mat"
    ref.write(mat, {"layers": layers}, "v73")
    rc, out = _import(tmp_path, mat)
    assert rc == 0
    trunk, _ = build_trunk(str(out))

    def response(rgb):
        image = np.zeros((60, 60, 3), np.uint8) + 128
        image[...] = rgb  # an RGB image, as online/crops.py takes it
        crop = crop_regions(image, np.array([[10.0, 10.0, 40.0, 40.0]]))
        return trunk.convs(mx.nd.array(crop)).asnumpy()

    assert response((255, 128, 128)).max() > 1.0  # red: R - 128 > 0
    assert response((128, 128, 255)).max() == 0.0  # blue: R - 128 = 0, nothing passes
    assert response((128, 255, 128)).max() == 0.0


# ------------------------------------------------------------------------------- VGG-M


@pytest.mark.parametrize("fmt", ["v5", "v73"])
def test_vggm_takes_conv1_3_and_paper_inits_fc(tmp_path, capsys, fmt):
    layers = ref.vggm_layers(np.random.default_rng(5), C, F)
    mat = tmp_path / "imagenet-vgg-m.mat"
    ref.write(mat, {"layers": layers, "meta": ref.vggm_meta()}, fmt)
    rc, out = _import(tmp_path, mat, "--seed", 7, "--fc-width", F)
    assert rc == 0, capsys.readouterr().err
    log = capsys.readouterr().out

    wf = load_weights(out)
    assert wf.spec == NetSpec(conv_channels=C, fc_width=F)
    # MDNet drops VGG-M's padding: the imported conv3 equals MatConvNet's forward with pad 0.
    unpadded = [dict(l, pad=0) if l["type"] in ("conv", "pool") else l for l in layers]
    trunk, _ = build_trunk(str(out))
    x = _images()
    want = _reference(unpadded, x, "relu3").transpose(0, 3, 1, 2).reshape(len(x), -1)
    _close(trunk.convs(mx.nd.array(x)).asnumpy(), want, "conv3")
    # fc4 / fc5 are exactly the seeded paper init.
    init = Trunk(wf.spec)
    init_trunk(init, seed=7)
    for name, v in params_from_trunk(init).items():
        if name.startswith("fc"):
            assert np.array_equal(wf.params[name], v), name

    p = wf.provenance
    assert sorted(p["from_file"]) == ["conv1", "conv2", "conv3"]
    assert p["paper_init"] == {"layers": ["fc4", "fc5"], "seed": 7,
                               "init": "online.network.init_trunk (fc: N(0, 0.01), bias 0.1)"}
    ignored = " ".join(p["ignored"])
    for name in ("conv4", "conv5", "fc6", "fc7", "fc8"):
        assert f"'{name}'" in ignored and re.search(rf"ignored layer \d+ '{name}' .*not an MDNet", log)
    assert "conv2 pad [1 1 1 1]" in log and "pool1 pad [0 1 0 1]" in log and "dropped" in log
    assert "subtracts 128" in log and "123.68 116.78 103.94" in log and "224x224x3" in log

    # Another seed, another init of the missing layers; conv1-3 unchanged.
    rc, out2 = _import(tmp_path, mat, "--seed", 8, "--fc-width", F, name="w8.h5")
    w8 = load_weights(out2).params
    assert rc == 0 and not np.array_equal(w8["fc4_weight"], wf.params["fc4_weight"])
    assert np.array_equal(w8["conv3_weight"], wf.params["conv3_weight"])


def test_conv1_3_subset_default_fc_width(tmp_path, capsys):
    """imagenet-vgg-m-conv1-3.mat: `layers` only, conv1..relu3; fc width defaults to MDNet's 512."""
    layers = ref.conv1_3_layers(np.random.default_rng(6), C, style="weights", lrn_type="normalize")
    mat = tmp_path / "imagenet-vgg-m-conv1-3.mat"
    ref.write(mat, {"layers": layers}, "v5")
    rc, out = _import(tmp_path, mat)
    assert rc == 0
    wf = load_weights(out)
    assert wf.spec == NetSpec(conv_channels=C, fc_width=512)
    assert wf.provenance["paper_init"]["layers"] == ["fc4", "fc5"] and not wf.provenance["ignored"]
    # --fc-width must agree with a file that has fc layers.
    mdnet = tmp_path / "m.mat"
    ref.write(mdnet, {"layers": ref.mdnet_layers(np.random.default_rng(0), C, F)}, "v5")
    capsys.readouterr()
    rc, _ = _import(tmp_path, mdnet, "--fc-width", 64, name="x.h5")
    assert rc == 2 and "--fc-width 64 but the file's fc4/fc5 are 32 wide" in capsys.readouterr().err


# ------------------------------------------------------------------------------- consumers


def test_pretraining_init_accepts_import(tmp_path):
    """`init.weights: W.h5` in a pretraining config loads an imported file at matching widths."""
    layers = ref.vggm_layers(np.random.default_rng(7), C, F)
    mat = tmp_path / "imagenet-vgg-m.mat"
    ref.write(mat, {"layers": layers, "meta": ref.vggm_meta()}, "v73")
    rc, out = _import(tmp_path, mat, "--fc-width", F)
    assert rc == 0
    wf = load_weights(out)
    spec = NetSpec(conv_channels=C, fc_width=F)
    net = MultiDomainNet(spec, {0: "seq-a", 1: "seq-b"}, mx.cpu())
    msgs = []
    net.initialize(InitConfig(weights=str(out)), seed=3, log=msgs.append)
    own = params_from_trunk(net.trunk)
    for name in ("conv1_weight", "conv1_bias", "conv2_weight", "conv3_weight", "conv3_bias"):
        assert np.array_equal(own[name], wf.params[name]), name
    assert "conv1, conv2, conv3 from" in msgs[0]
    assert net.score(np.zeros((2, 3, 107, 107), np.uint8), 0, batch=2).shape == (2, 2)


# ------------------------------------------------------------------------------- errors


def _mdnet_file(path, fmt="v5", edit=None):
    layers = ref.mdnet_layers(np.random.default_rng(9), C, F)
    if edit:
        layers = edit(layers)
    ref.write(path, {"layers": layers}, fmt)
    return path


def _without(names):
    return lambda layers: [l for l in layers if l["name"] not in names]


def _reshape(index, shape):
    def edit(layers):
        layers[index] = dict(layers[index], filters=np.ones(shape, np.float32),
                             biases=np.zeros((1, shape[3]), np.float32))
        return layers
    return edit


def _truncate(path, fraction):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    return path


ERRORS = {
    "truncated v7": (lambda p: _truncate(_mdnet_file(p, "v7"), 0.5), "cannot read MATLAB v5 file"),
    "truncated v5": (lambda p: _truncate(_mdnet_file(p, "v5"), 0.3), "cannot read MATLAB v5 file"),
    "truncated v73": (lambda p: _truncate(_mdnet_file(p, "v73"), 0.5), "cannot read MATLAB 7.3"),
    "text file": (lambda p: p.write_text("layers = {}\n" * 20), "not a MATLAB v5/v7/v7.3 MAT-file"),
    "empty file": (lambda p: p.write_bytes(b""), "shorter than the 128-byte MAT header"),
    "hdf5 without header": (lambda p: h5py.File(p, "w").close(), "without the MATLAB 7.3 header"),
    "no layers": (lambda p: ref.write_v5(p, {"net2": {"a": 1.0}}), "no 'layers' variable"),
    "dagnn": (lambda p: ref.write_v5(p, {"layers": {"name": "conv1", "type": "dagnn.Conv"}}),
              "'layers' is a struct array (a DagNN network?)"),
    "missing conv3": (lambda p: _mdnet_file(p, edit=lambda l: l[:8]),
                      "missing layer conv3: the file has 2 conv layer(s)"),
    "missing fc5": (lambda p: _mdnet_file(p, "v73", edit=_without({"fc5", "fc6"})),
                    "missing layer fc5: the file's conv layers end at layer 11 'fc4' (conv) 3x3x16x32"),
    "conv2 Cin": (lambda p: _mdnet_file(p, edit=_reshape(4, (5, 5, 6, 16))),
                  "layer 5 'conv2' (conv) (MDNet conv2): filters 5x5x6x16, expected 5x5x8xC: kernel "
                  "5x5 and Cin 8 (the Cout of layer 1 'conv1' (conv), filters 7x7x3x8)"),
    "conv1 grey": (lambda p: _mdnet_file(p, edit=_reshape(0, (7, 7, 1, 8))),
                   "filters 7x7x1x8, expected 7x7x3xC: kernel 7x7 and Cin 3 (RGB input)"),
    "fc4 kernel": (lambda p: _mdnet_file(p, "v73", edit=_reshape(10, (2, 2, 16, 32))),
                   "layer 11 'fc4' (conv) (MDNet fc4): filters 2x2x16x32 pad [0 0 0 0], expected 3x3x16xF"),
    "fc5 shape": (lambda p: _mdnet_file(p, edit=_reshape(13, (1, 1, 32, 30))),
                  "layer 14 'fc5' (conv) (MDNet fc5): filters 1x1x32x30 pad [0 0 0 0], expected "
                  "1x1x32x32 with pad 0 after fc4 layer 11 'fc4' (conv) 3x3x16x32"),
    "bias length": (lambda p: _mdnet_file(p, edit=lambda l: [dict(l[0], biases=np.zeros((1, 7), np.float32))] + l[1:]),
                    "layer 1 'conv1' (conv) biases have shape 1x7, expected 1x8 or 8x1"),
    "lrn alpha": (lambda p: _mdnet_file(p, edit=lambda l: l[:2] + [dict(l[2], param=np.array([[5, 2, 5e-4, 0.75]]))] + l[3:]),
                  "layer 3 'norm1' (lrn): LRN param [5.0, 2.0, 0.0005, 0.75], MDNet's (VGG-M's) is [5 2 1e-4 0.75]"),
    "no lrn": (lambda p: _mdnet_file(p, edit=_without({"norm2"})),
               "after layer 5 'conv2' (conv) (MDNet conv2) the file has [relu, pool], MDNet has [relu, lrn, pool]"),
    "conv1 stride": (lambda p: _mdnet_file(p, edit=lambda l: [dict(l[0], stride=1.0)] + l[1:]),
                     "layer 1 'conv1' (conv) (MDNet conv1): stride [1 1] dilate [1 1], MDNet uses stride 2"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors_are_one_line_and_name_the_file(tmp_path, capsys, case):
    make, expected = ERRORS[case]
    mat = tmp_path / "bad.mat"
    make(mat)
    capsys.readouterr()
    rc, out = _import(tmp_path, mat)
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith(f"mdnet-import: {mat}: "), err
    assert expected in err, err
    assert not out.exists() and not list(tmp_path.glob(".w.h5.*"))


def test_missing_input_and_help():
    assert main(["/nonexistent/x.mat", "--out", "/tmp/never.h5"]) == 2
    # `python -m tools.weights.mat_import --help` works and says which files, what is kept and dropped.
    res = subprocess.run([sys.executable, "-m", "tools.weights.mat_import", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    text = res.stdout
    for words in ("imagenet-vgg-m.mat (layers, meta)", "imagenet-vgg-m-conv1-3.mat (layers)",
                  "mdnet_otb-vot15.mat", "fc6 (1x1xFx2) dropped", "conv4-5, fc6-8 ignored",
                  "pixel - 128", "v7.3", "--seed", "--out", "mdnet-import imagenet-vgg-m.mat --out "
                  "weights/imagenet-vgg-m.h5"):
        assert words in text, words
