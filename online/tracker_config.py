"""Online tracking parameters: py-MDNet's `tracking/options.yaml` defaults, one typed config.

The network shape (widths, input size, padding, mean, LRN) is not here: it comes from the weight
file, so a tracker can never crop or normalise differently from the net it loads. The device is not
here either (`mdnet-track --gpu N`): the same config file runs anywhere.

Sampler parameters follow py-MDNet's SampleGenerator semantics as implemented in online/sampling.py:
`trans` is a fraction of mean(w, h), `scale` a factor raised to a power in [-1, 1]; sample centres
stay inside the image, boxes may extend past its border.
Where py-MDNet and the MATLAB MDNet differ, the comment says which one a default follows.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from online.config import ConfigError, opt

MODES = ("exact", "fast")
# conv1-3 inference precision (online/trunk_precision.py); fp32 is the reference, never changed silently.
TRUNK_DTYPES = ("fp32", "bf16", "int8", "fp16")
MINING_DTYPES = ("auto", "fp32", "bf16")
STORED_REGIONS = ("auto", "own", "candidates")
ONLINE_FC4 = ("auto", "train", "first", "frozen")


@dataclass(frozen=True)
class TrackerConfig:
    # --- where conv3 features come from (online/features.py) ---
    mode: str = opt("exact", "exact: every box cropped to 107x107 and run through conv1-3 (MDNet); fast: one region per target and frame through conv1-3, every box pooled with RoIAlign (RT-MDNet's idea, online/roi.py)")
    fast_stride: int = opt(8, "fast mode: map stride in px, 8 (the net evaluated densely: pool2 stride 1, conv3 dilated 2; same weights) or 16 (conv3 as it is; cheaper, coarser)")
    max_region: int = opt(1024, "fast mode: largest region side in px at the target's 75 px scale (bounds memory; whole-image negatives are drawn inside it)")
    trunk_dtype: str = opt("fp32", "conv1-3 inference precision, both modes: fp32 (reference, any device); bf16 (CPU: oneDNN, CPUs with avx512_bf16; LRN stays fp32); int8 (CPU: oneDNN, CPUs with VNNI; calibrated on the first frame's crops); fp16 (GPU only: cuDNN, tensor cores; LRN stays fp32). fc4-fc6 and online training stay fp32")

    # --- first frame: training samples (py-MDNet n_pos_init / n_neg_init / overlap_*_init) ---
    n_pos_init: int = opt(500, "first-frame positives (gaussian around the target)")
    n_neg_init: int = opt(5000, "first-frame negatives: half uniform around the target, half whole-image")
    overlap_pos_init: float = opt(0.7, "positives need IoU >= this with the target")
    overlap_neg_init: float = opt(0.5, "negatives need IoU <= this with the target")
    trans_pos: float = opt(0.1, "positive sampler translation (gaussian, x mean(w,h))")
    scale_pos: float = opt(1.3, "positive sampler scale factor")
    trans_neg_init: float = opt(1.0, "first-frame uniform negative sampler translation")
    scale_neg_init: float = opt(1.6, "first-frame uniform negative sampler scale factor")
    scale_neg_whole: float = opt(1.0, "whole-image negative sampler scale factor (py-MDNet: 1, target size)")
    maxiter_init: int = opt(50, "first-frame training iterations")
    lr_init: float = opt(5e-4, "first-frame learning rate (fc4, fc5; fc6 gets x lr_mult_fc6)")

    # --- online updates (py-MDNet n_*_update / overlap_*_update / maxiter_update / lr_update) ---
    n_pos_update: int = opt(50, "positives kept per successful frame")
    n_neg_update: int = opt(200, "negatives kept per successful frame")
    overlap_pos_update: float = opt(0.7, "update positives need IoU >= this with the estimate")
    overlap_neg_update: float = opt(0.3, "update negatives need IoU <= this with the estimate")
    trans_neg: float = opt(2.0, "update negative sampler translation (uniform)")
    scale_neg: float = opt(1.3, "update negative sampler scale factor")
    maxiter_update: int = opt(15, "iterations of each long- or short-term update")
    online_fc4: str = opt("auto", "fc4 online: train (MDNet: fc4-fc6 fine-tuned on the first frame and in every update); first (fc4-fc6 trained on the first frame, then fc4 frozen: every stored sample keeps its fc4 output, fc_width = 512 wide, computed once, so updates, their hard mining and the candidates' scoring run fc5-fc6 on 512-d rows: mining a 1024-row pool costs 512x512 per row instead of feat_dim x 512); frozen (fc4 stays the weight file's from the start: the first frame's training is as cheap as the updates); auto (first in fast mode, train in exact mode: exact mode stays the paper's algorithm)")
    lr_update: float = opt(1e-3, "learning rate of online updates (fc6 gets x lr_mult_fc6)")
    stored_region: str = opt("auto", "where a successful frame's stored samples come from. own: their own conv pass (fast mode: a region around the estimate; MDNet: negatives up to trans_neg target sizes away); candidates (fast mode only): pooled from the candidates' map of the same frame, no second pass, keeping of the drawn samples those that map holds (the near negatives); auto: candidates in fast mode, own in exact mode")
    n_frames_long: int = opt(100, "positives come from the last this many successful frames (first frame always kept)")
    n_frames_short: int = opt(20, "negatives come from the last this many successful frames; short-term updates use this many frames of positives (MATLAB MDNet: 20; py-MDNet: 30)")
    long_interval: int = opt(10, "long-term update every this many frames")

    # --- optimisation (shared by first-frame training and updates) ---
    lr_mult_fc6: float = opt(10.0, "learning-rate multiplier of the fresh fc6")
    momentum: float = opt(0.9, "SGD momentum")
    weight_decay: float = opt(5e-4, "SGD weight decay")
    grad_clip: float = opt(10.0, "clip the global gradient norm of fc4-fc6 to this (py-MDNet); 0 = off")
    batch_pos: int = opt(32, "positives per minibatch")
    batch_neg: int = opt(96, "hardest negatives per minibatch")
    batch_neg_cand: int = opt(1024, "negative pool scored (inference mode) to pick the hardest batch_neg")
    mining_dtype: str = opt("auto", "precision of that scoring pass (fc4-fc6 over batch_neg_cand rows, every iteration; with online_fc4 frozen also the fc4 pass over every sample): fp32; bf16 (CPU with avx512_bf16: oneDNN bf16 GEMMs, 2.3x faster; only which negatives are picked can change; with online_fc4 frozen the stored fc4 outputs are bf16-rounded too); auto (bf16 in fast mode where the CPU has it, else fp32). Training itself stays fp32")
    batch_test: int = opt(256, "fixed batch of every inference forward (conv and fc); short batches are padded")

    # --- per-frame search ---
    n_samples: int = opt(256, "gaussian candidates per frame around the previous estimate")
    trans: float = opt(0.6, "candidate translation (gaussian, x mean(w,h))")
    scale: float = opt(1.05, "candidate scale factor")
    trans_limit: float = opt(1.5, "on failure trans grows x1.1 per frame up to this; reset on success")
    trans_growth: float = opt(1.1, "on failure the candidate translation is multiplied by this per frame (py-MDNet expand_trans)")
    top_k: int = opt(5, "estimate = mean of the top-k candidates; success when their mean fc6 positive score > 0")
    min_box_size: float = opt(10.0, "every sampled box keeps sides of at least this many pixels (py-MDNet: 10)")

    # --- bounding-box regression (ridge on conv3 features, trained on the first frame) ---
    bbreg: bool = opt(True, "refine successful estimates with the first-frame box regressor")
    n_bbreg: int = opt(1000, "regressor training samples (uniform around the target)")
    overlap_bbreg: float = opt(0.6, "regressor samples need IoU >= this; predictions moving further are rejected")
    trans_bbreg: float = opt(0.3, "regressor sampler translation (uniform)")
    scale_bbreg: float = opt(1.6, "regressor sampler scale factor")
    aspect_bbreg: float = opt(1.1, "regressor sampler aspect-ratio factor")
    area_bbreg: tuple[float, float] = opt((1.0, 2.0), "regressor samples need area / target area in this range (py-MDNet scale_range)")
    lambda_bbreg: float = opt(1000.0, "ridge penalty of the regressor")
    bbreg_max_area_change: float = opt(2.0, "a regressed box whose area changes by more than this factor (either way) is not applied")

    def __post_init__(self):
        # Fail at load time with the field's name, not deep inside a training loop.
        positive = ("n_pos_init", "n_neg_init", "n_pos_update", "n_neg_update", "batch_pos", "batch_neg",
                    "batch_neg_cand", "batch_test", "n_samples", "top_k", "n_frames_long",
                    "n_frames_short", "long_interval", "n_bbreg")
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(f"TrackerConfig.{name} must be >= 1, got {getattr(self, name)}")
        # Learning rates and factors a typo can make zero or negative: a negative lr climbs the
        # loss, a zero one silently trains nothing.
        for name in ("lr_init", "lr_update", "lr_mult_fc6", "min_box_size"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"TrackerConfig.{name} must be > 0, got {getattr(self, name)}")
        for name in ("scale_pos", "scale_neg_init", "scale_neg_whole", "scale_neg", "scale", "scale_bbreg",
                     "aspect_bbreg"):
            if not getattr(self, name) >= 1.0:
                raise ConfigError(f"TrackerConfig.{name} must be >= 1 (a factor raised to a power in "
                                  f"[-1, 1]), got {getattr(self, name)}")
        for name in ("trans_pos", "trans_neg_init", "trans_neg", "trans", "trans_bbreg", "weight_decay", "lambda_bbreg",
                     "grad_clip"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"TrackerConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("overlap_pos_init", "overlap_neg_init", "overlap_pos_update", "overlap_neg_update",
                     "overlap_bbreg"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"TrackerConfig.{name} is an IoU and must be in [0, 1], got {getattr(self, name)}")
        if not 0.0 <= self.momentum < 1.0:
            raise ConfigError(f"TrackerConfig.momentum must be in [0, 1), got {self.momentum}")
        if self.batch_neg_cand < self.batch_neg:
            raise ConfigError(f"TrackerConfig.batch_neg_cand ({self.batch_neg_cand}) must be >= batch_neg "
                             f"({self.batch_neg})")
        if self.top_k > self.n_samples:
            raise ConfigError(f"TrackerConfig.top_k ({self.top_k}) must be <= n_samples ({self.n_samples})")
        for name in ("maxiter_init", "maxiter_update"):
            if getattr(self, name) < 0:
                raise ConfigError(f"TrackerConfig.{name} must be >= 0, got {getattr(self, name)}")
        for name in ("trans_growth", "bbreg_max_area_change"):
            if not getattr(self, name) >= 1.0:
                raise ConfigError(f"TrackerConfig.{name} must be >= 1, got {getattr(self, name)}")
        if len(self.area_bbreg) != 2 or not 0 < self.area_bbreg[0] <= self.area_bbreg[1]:
            raise ConfigError(f"TrackerConfig.area_bbreg must be [lo, hi] with 0 < lo <= hi, got {self.area_bbreg}")
        if self.mode not in MODES:
            raise ConfigError(f"TrackerConfig.mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.fast_stride not in (8, 16):
            raise ConfigError(f"TrackerConfig.fast_stride must be 8 or 16, got {self.fast_stride}")
        if self.max_region < 107:
            raise ConfigError(f"TrackerConfig.max_region must be >= 107 px, got {self.max_region}")
        if self.trunk_dtype not in TRUNK_DTYPES:
            raise ConfigError(f"TrackerConfig.trunk_dtype must be one of {', '.join(TRUNK_DTYPES)}, got {self.trunk_dtype!r}")
        if self.mining_dtype not in MINING_DTYPES:
            raise ConfigError(f"TrackerConfig.mining_dtype must be one of {', '.join(MINING_DTYPES)}, got {self.mining_dtype!r}")
        if self.stored_region not in STORED_REGIONS:
            raise ConfigError(f"TrackerConfig.stored_region must be one of {', '.join(STORED_REGIONS)}, got {self.stored_region!r}")
        if self.stored_region == "candidates" and self.mode != "fast":
            raise ConfigError("TrackerConfig.stored_region=candidates needs mode=fast (exact mode has no map to pool from)")
        if self.online_fc4 not in ONLINE_FC4:
            raise ConfigError(f"TrackerConfig.online_fc4 must be one of {', '.join(ONLINE_FC4)}, got {self.online_fc4!r}")
        if self.trans_limit < self.trans:
            raise ConfigError(f"TrackerConfig.trans_limit ({self.trans_limit}) must be >= trans ({self.trans})")

    def resolved(self) -> "TrackerConfig":
        """This config with its mode-dependent `auto` fields (online_fc4, stored_region) as they run:
        exact mode is MDNet's (fc4 trained online, stored samples cropped); fast mode freezes fc4 after
        the first frame and pools stored samples from the candidates' map (measured in docs/benchmarks.md, "Real time
        on a 2-core CPU"). `mining_dtype: auto` also depends on the device: the tracker resolves it."""
        fast = self.mode == "fast"
        return dataclasses.replace(
            self,
            online_fc4=("first" if fast else "train") if self.online_fc4 == "auto" else self.online_fc4,
            stored_region=("candidates" if fast else "own") if self.stored_region == "auto" else self.stored_region)
