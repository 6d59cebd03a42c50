"""Weights -> trunk, the one step every way of driving the tracker shares: `mdnet-track`
(online/cli.py), the OpenCV-style API (online/api.py), the GOT-10k adapter and the TraX server.

    trunk, provenance, weights = load_trunk(None)                 # the shipped model
    trunk, provenance, weights = load_trunk("random:0", widths=(32, 64, 128, 128))
    tracker = build_tracker(weights=None, mode="fast", seed=0)   # online.tracker.MDNetTracker

`weights` None means the shipped model (online/shipped.py DEFAULT_WEIGHTS, the one constant that
names it), so a new default model changes every entry point at once.
"""
from __future__ import annotations

import os

from online.shipped import DEFAULT_WEIGHTS
from online.weights import WeightFileError, build_trunk, parse_random_seed


def resolve_weights(weights) -> str:
    """`weights` as a string; None -> the shipped model (WeightFileError when it is missing, e.g.
    an installed wheel without the source tree's models/)."""
    if weights is None:
        if not DEFAULT_WEIGHTS.is_file():
            raise WeightFileError(f"no weights given and the shipped model {DEFAULT_WEIGHTS} is missing (it lives "
                                  "in the source tree's models/); give a weight file (.h5) or random:SEED")
        return str(DEFAULT_WEIGHTS)
    return os.fspath(weights)


def load_trunk(weights=None, widths=None, ctx=None) -> tuple:
    """(trunk, provenance, weights string) from a weight file, `random:SEED` or None (the shipped
    model). `widths` (C1, C2, C3, FC) only for random:SEED: a weight file records its own widths."""
    from online.network import NetSpec

    weights = resolve_weights(weights)
    is_random = parse_random_seed(weights) is not None  # raises WeightFileError on a bad random:X
    spec = None
    if widths is not None:
        if not is_random:
            raise WeightFileError("--widths applies to random:SEED trunks only; a weight file records its "
                                  "own widths")
        c1, c2, c3, fc = widths
        spec = NetSpec(conv_channels=(c1, c2, c3), fc_width=fc)
    trunk, provenance = build_trunk(weights, ctx=ctx, spec=spec)
    return trunk, provenance, weights


def build_tracker(weights=None, mode: str = "exact", seed: int = 0, config=None, overrides=(), widths=None,
                  ctx=None, trunk=None):
    """An online.tracker.MDNetTracker (one target) for the APIs (online/api.py, the GOT-10k adapter,
    the TraX server): the tracker config (`config` YAML + `overrides` KEY=VALUE, as mdnet-track's
    --config / --set) with `mode`, on `trunk` or the trunk of `weights`. ValueError on a bad mode,
    config or weights (ConfigError and WeightFileError are ValueErrors), before anything is tracked."""
    import mxnet as mx

    from online.config import load_config
    from online.tracker import MDNetTracker
    from online.tracker_config import MODES, TrackerConfig

    if mode not in MODES:
        raise ValueError(f"mode {mode!r}: expected one of {', '.join(MODES)}")
    cfg = load_config(TrackerConfig, config, [*overrides, f"mode={mode}"])
    ctx = ctx or mx.cpu()
    if trunk is None:
        trunk, _, _ = load_trunk(weights, widths, ctx)
    return MDNetTracker(trunk, cfg, ctx, seed=seed)
