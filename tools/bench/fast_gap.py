"""mdnet-bench fast-gap: how far fast mode's features are from exact mode's, and what makes them differ.

    mdnet-bench fast-gap ../shared/data --weights models/mdnet-vggm-real-cpu.h5 [--stride 16] [--no-scale-rounding]

For the first frame of every sequence under ROOT: boxes drawn by the tracker's own samplers around
the first box (candidates: gaussian 0.6 / 1.05; positives: gaussian 0.1 / 1.3; update negatives:
uniform 2.0 / 1.3; `--boxes` of each), their conv3 features from exact crops (CropFeatures) and
from fast mode's region map (RoIFeatures, as the tracker pools them), and the relative L2 error of
the conv3 features and of fc5's output (the pretrained fc4-fc5 on both). The error is reported
by box kind, by the box's scale against its region's, and by how far the box centre lies off the
map's lattice -- the factors fast mode's geometry introduces (online/roi.py). Medians.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

KINDS = {"candidates": ("gaussian", 0.6, 1.05), "positives": ("gaussian", 0.1, 1.3),
         "update negatives": ("uniform", 2.0, 1.3)}
SCALE_BINS = ((0.0, 0.03), (0.03, 0.1), (0.1, 0.2), (0.2, 0.4), (0.4, 9.0))
OFFSET_BINS = ((0.0, 0.1), (0.1, 0.2), (0.2, 0.3), (0.3, 0.51))


def add_fast_gap_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("fast-gap", help="fast vs exact mode features: error by box kind, scale and lattice offset",
                              description=__doc__.split("\n\n", 2)[2], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("roots", nargs="+", metavar="ROOT", help="benchmark root(s) or sequence folder(s)")
    p.add_argument("--weights", default="models/mdnet-vggm-real-cpu.h5", help="weight file or random:SEED (default the shipped model)")
    p.add_argument("--stride", type=int, choices=(8, 16), default=8, help="fast mode's map stride (default 8)")
    p.add_argument("--no-scale-rounding", action="store_true",
                   help="regions at each target's exact scale instead of powers of 2^(1/8)")
    p.add_argument("--boxes", type=int, default=256, help="boxes of each kind per sequence (default 256)")
    p.add_argument("--threads", type=int, default=None, help="OpenMP threads (default: every usable core)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    p.set_defaults(func=bench_fast_gap)
    return p


def _box_factors(boxes, anchor, spec, stride):
    """|log2| of each box's scale against its region's, and its centre's offset off the map
    lattice in cells (0 = on a cell, 0.5 = midway; the larger of x and y)."""
    from online import roi
    sx, sy = roi.region_scale(anchor, spec)
    inner = roi.inner_size(spec)
    rel = np.abs(np.log2(np.sqrt(boxes[:, 2] / (sx * inner) * boxes[:, 3] / (sy * inner))))
    fu = (((boxes[:, 0] + boxes[:, 2] / 2) / sx - roi.FIELD / 2.0) / stride) % 1.0
    fv = (((boxes[:, 1] + boxes[:, 3] / 2) / sy - roi.FIELD / 2.0) / stride) % 1.0
    off = np.maximum(np.minimum(fu, 1 - fu), np.minimum(fv, 1 - fv))
    return rel, off


def measure(trunk, sequences, stride: int, boxes: int, scale_rounding: bool = True) -> dict:
    import mxnet as mx

    from online import roi
    from online.features import CropFeatures, RoIFeatures, Timer
    from online.sampling import SamplerSpec, sample_boxes

    saved = roi.SCALE_STEP
    if not scale_rounding:
        roi.SCALE_STEP = 2.0 ** (1.0 / 4096)  # every target at (almost exactly) its own scale
    try:
        exact = CropFeatures(trunk, 256, mx.cpu(), Timer())
        fast = RoIFeatures(trunk, 1024, mx.cpu(), Timer(), stride)
        rows = []  # (sequence, kind, conv3 error, fc5 error, |log2 scale|, lattice offset)
        for si, seq in enumerate(sequences):
            image, anchor = seq.frame(0), seq.boxes[0]
            size = (image.shape[1], image.shape[0])
            rng = np.random.default_rng(si)
            for kind, (sampler, trans, scale) in KINDS.items():
                b = sample_boxes(rng, SamplerSpec(sampler, trans, scale), anchor, size, boxes)
                fe = exact(image, [(b, anchor)])[0]
                fast.new_image()
                ff = fast(image, [(b, anchor)])[0]
                e3 = (mx.nd.norm(ff - fe, axis=1) / (mx.nd.norm(fe, axis=1) + 1e-6)).asnumpy()
                g_e, g_f = trunk.fcs(fe).asnumpy(), trunk.fcs(ff).asnumpy()
                e5 = np.linalg.norm(g_f - g_e, axis=1) / (np.linalg.norm(g_e, axis=1) + 1e-6)
                rel, off = _box_factors(b, anchor, trunk.spec, stride)
                rows += [(seq.name, kind, *r) for r in zip(e3, e5, rel, off)]
    finally:
        roi.SCALE_STEP = saved

    def summary(sel):
        if not sel:
            return {"boxes": 0}
        return {"boxes": len(sel), "conv3_error": float(np.median([r[2] for r in sel])),
                "fc5_error": float(np.median([r[3] for r in sel]))}
    near = [r for r in rows if r[4] < 0.1]
    return {
        "stride": stride, "scale_rounding": scale_rounding, "sequences": len(sequences),
        "by_kind": {k: summary([r for r in rows if r[1] == k]) for k in KINDS},
        "by_scale": {f"{lo}-{hi}": summary([r for r in rows if lo <= r[4] < hi]) for lo, hi in SCALE_BINS},
        "by_lattice_offset": {f"{lo}-{hi}": summary([r for r in near if lo <= r[5] < hi]) for lo, hi in OFFSET_BINS},
        "candidates_by_sequence": {s: summary([r for r in rows if r[0] == s and r[1] == "candidates"])
                                   for s in dict.fromkeys(r[0] for r in rows)},
    }


def bench_fast_gap(args) -> int:
    from online.threads import set_threads
    set_threads(args.threads)
    from online.readers import discover
    from online.weights import build_trunk

    sequences = [s for root in args.roots for s in discover(root) if not s.absent[0]]
    if not sequences:
        raise SystemExit(f"mdnet-bench fast-gap: no sequences with a first box under {' '.join(args.roots)}")
    trunk, _ = build_trunk(args.weights)
    out = measure(trunk, sequences, args.stride, args.boxes, not args.no_scale_rounding)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"fast (stride {out['stride']}, scale rounding {'on' if out['scale_rounding'] else 'off'}) vs exact, "
          f"{out['sequences']} sequences, first frame; relative L2 error, medians")
    for title, key in (("box kind", "by_kind"), ("|log2 box scale / region scale|", "by_scale"),
                       ("centre off the lattice, cells (scale within 7%)", "by_lattice_offset"),
                       ("candidates, per sequence", "candidates_by_sequence")):
        print(f"--- {title}")
        for name, v in out[key].items():
            if v["boxes"]:
                print(f"  {name:>20}: conv3 {v['conv3_error']:.3f}  fc5 {v['fc5_error']:.3f}  ({v['boxes']} boxes)")
    return 0
