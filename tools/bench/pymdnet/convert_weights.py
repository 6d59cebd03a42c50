"""Convert our MDNet weight file (.h5, format mdnet-weights v1) into py-MDNet's .pth.

Runs in the py-MDNet venv (torch + h5py), not in the project's venv; nothing imports it.

    python convert_weights.py /work/main/models/mdnet-vggm-real-cpu.h5 /work/pymdnet/mdnet-vggm-real-cpu.pth

py-MDNet's MDNet(model_path).load_model reads torch.load(path)['shared_layers'] into
MDNet.layers, an nn.Sequential whose parameters are conv1.0, conv2.0, conv3.0 (Conv2d),
fc4.0 (Linear) and fc5.1 (Linear; fc5.0 is its dropout). Our arrays have the same shapes and
memory order (conv: out,in,kh,kw; fc: out,in; fc4's input is conv3 flattened as channel,row,col),
so they are copied as they are. The fc6 branches are not stored: py-MDNet's tracker makes a
fresh one.
"""
import sys
from collections import OrderedDict

import h5py
import numpy as np
import torch

# our name -> py-MDNet's state_dict key (without .weight/.bias)
LAYERS = OrderedDict([("conv1", "conv1.0"), ("conv2", "conv2.0"), ("conv3", "conv3.0"),
                      ("fc4", "fc4.0"), ("fc5", "fc5.1")])
SHAPES = {"conv1": (96, 3, 7, 7), "conv2": (256, 96, 5, 5), "conv3": (512, 256, 3, 3),
          "fc4": (512, 4608), "fc5": (512, 512)}
# what py-MDNet + this folder's patch compute (PYMDNET_LRN=matconvnet, mean 128, 107x107 crops)
EXPECT_ATTRS = {"input_size": 107, "mean": 128.0, "lrn_nsize": 5, "lrn_alpha": 5e-4,
                "lrn_beta": 0.75, "lrn_knorm": 2.0}


def convert(h5_path, pth_path):
    shared = OrderedDict()
    with h5py.File(h5_path, "r") as f:
        if f.attrs.get("format") != "mdnet-weights":
            sys.exit(f"{h5_path}: not an mdnet-weights file (format={f.attrs.get('format')!r})")
        for key, want in EXPECT_ATTRS.items():
            got = f.attrs.get(key)
            if got is None or not np.isclose(float(got), want):
                print(f"warning: {key}={got}, py-MDNet computes {want}", file=sys.stderr)
        params = f["params"]
        for ours, theirs in LAYERS.items():
            w = np.asarray(params[ours + "_weight"], dtype=np.float32)
            b = np.asarray(params[ours + "_bias"], dtype=np.float32)
            assert w.shape == SHAPES[ours] and b.shape == (w.shape[0],), (ours, w.shape, b.shape)
            shared[theirs + ".weight"] = torch.from_numpy(np.ascontiguousarray(w))
            shared[theirs + ".bias"] = torch.from_numpy(np.ascontiguousarray(b))
    torch.save({"shared_layers": shared}, pth_path)
    print(f"wrote {pth_path}: " + ", ".join(f"{k} {tuple(v.shape)}" for k, v in shared.items()))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python convert_weights.py IN.h5 OUT.pth")
    convert(sys.argv[1], sys.argv[2])
