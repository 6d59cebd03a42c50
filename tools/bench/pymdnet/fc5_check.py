"""Numeric check: fc5 outputs of py-MDNet (torch, converted .pth) against our trunk (MXNet, .h5).

Four steps, two interpreters (see README.md):
    python fc5_check.py crops CROPS.npy SEQ_DIR         # any python with numpy + pillow
    python fc5_check.py torch CROPS.npy OUT.npy MODEL.pth  # py-MDNet venv, cwd = py-MDNet source
    python fc5_check.py mxnet CROPS.npy OUT.npy MODEL.h5   # project venv, cwd = repo, PYTHONPATH=.
    python fc5_check.py compare MXNET.npy TORCH.npy
Crops are raw 0..255 float32 NCHW 107x107: 2 of uniform noise, 2 cut from frame 1 of SEQ_DIR.
Both nets run in inference mode (dropout off). Nothing in the repo imports this file.
"""
import os
import sys

import numpy as np


def make_crops(out, seq_dir):
    from PIL import Image
    rs = np.random.RandomState(0)
    noise = rs.uniform(0, 255, (2, 3, 107, 107))
    img = np.asarray(Image.open(os.path.join(seq_dir, "img", "0001.jpg")).convert("RGB"))
    real = []
    for _ in range(2):
        y = rs.randint(0, img.shape[0] - 107)
        x = rs.randint(0, img.shape[1] - 107)
        real.append(img[y:y + 107, x:x + 107].transpose(2, 0, 1))
    np.save(out, np.concatenate([noise, np.stack(real)]).astype(np.float32))


def run_torch(crops, out, model):
    import torch
    sys.path.insert(0, ".")
    from modules.model import MDNet
    torch.set_num_threads(2)
    net = MDNet(model).eval()
    x = torch.from_numpy(np.load(crops)) - 128.0  # what py-MDNet's RegionExtractor feeds
    with torch.no_grad():
        np.save(out, net(x, out_layer="fc5").numpy())


def run_mxnet(crops, out, model):
    import mxnet as mx
    from online.weights import build_trunk
    trunk, _ = build_trunk(model)
    np.save(out, trunk(mx.nd.array(np.load(crops))).asnumpy())  # raw pixels; mean is inside


def compare(ref, other):
    a, b = np.load(ref), np.load(other)
    assert a.shape == b.shape, (a.shape, b.shape)
    d = np.abs(a - b)
    big = np.abs(a) > 1e-3 * np.abs(a).max()
    print(f"fc5 {a.shape}: max|ref| {np.abs(a).max():.4g}, max|diff| {d.max():.3g}, "
          f"max|diff|/max|ref| {d.max() / np.abs(a).max():.3g}, "
          f"max elementwise rel diff (|ref| > 1e-3 max) {(d[big] / np.abs(a[big])).max():.3g}")


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    {"crops": make_crops, "torch": run_torch, "mxnet": run_mxnet, "compare": compare}[mode](*args)
