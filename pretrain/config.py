"""The pretraining config: every default in one place, one frozen dataclass per section.

Loaded with `online.config.load_config(PretrainConfig, file, overrides)`: unknown keys are rejected
with the list of valid ones, and `--set section.key=value` overrides are checked the same way. The
resolved config is saved beside every run and inside every checkpoint.

Defaults are the MDNet paper / py-MDNet pretraining values (VGG-M widths, 8 frames, 32 pos + 96
neg, SGD momentum 0.9, wd 5e-4, lr 1e-4 conv and x10 fc, 100 cycles, last 20% of every sequence
held out) plus the two things this project adds: hard negative mining while pretraining and
Horovod data parallelism (see `optim.lr_scaling`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from online.config import ConfigError, opt


@dataclass(frozen=True)
class DataConfig:
    roots: tuple[str, ...] = opt((), "dataset roots; every sequence found under them (online.readers.discover) is one domain")
    packs: tuple[str, ...] = opt((), "dataset packs (POOL.h5 written by `mdnet-data pack`): every sequence in them is one domain, named as when read from its folder; read after data.roots, both may be given; exclude and exclude_overlap apply the same way")
    exclude: tuple[str, ...] = opt((), "sequence names to leave out (e.g. sequences that are also in the test benchmark)")
    exclude_overlap: tuple[str, ...] = opt((), "test-benchmark roots or packs: leave out training sequences whose name matches one there (case and trailing digits ignored, e.g. VOT bolt1 ~ OTB Bolt)")
    max_domains: int = opt(0, "use only the first N domains found (0 = all); for smoke runs")
    val_fraction: float = opt(0.2, "last fraction of every sequence's frames held out for validation (MDNet author: 0.2)")
    min_train_frames: int = opt(2, "domains with fewer usable training frames are dropped (logged)")
    workers: int = opt(1, "background threads that decode frames and crop samples (OpenCV releases the GIL)")
    prefetch: int = opt(3, "steps prepared ahead of the network (each holds pos + negative-pool crops)")
    check_frames: bool = opt(True, "before step 0, check every frame file of every domain for truncation (its last bytes, no decoding) and every usable box; an error names the sequence and frame")


@dataclass(frozen=True)
class OutlierConfig:
    # Annotation errors teach the net a wrong target; frames whose box fails any rule are not
    # sampled. Counts per rule are logged per sequence.
    min_size: float = opt(4.0, "boxes with a side shorter than this (px) are degenerate")
    min_inside: float = opt(0.5, "least fraction of the box area that must lie inside the image")
    max_image_fraction: float = opt(0.5, "boxes covering more than this fraction of the image area are dropped")
    jump_centre: float = opt(2.0, "a centre that moves more than this x box size (sqrt of area) against BOTH neighbours is a jump")
    jump_size: float = opt(2.0, "an area ratio above this against BOTH neighbours is a jump")


@dataclass(frozen=True)
class ModelConfig:
    trunk: str = opt("vggm", "conv trunk (online/trunks): vggm (VGG-M conv1-3, the paper's) | mobilenetv2 (ImageNet MobileNetV2 features.0-N, BN folded; start from `mdnet-import` of torchvision's file and keep it frozen: optim.lr_mult_conv 0)")
    conv_channels: tuple[int, int, int] = opt((96, 256, 512), "vggm: conv1-3 output channels (VGG-M: 96, 256, 512)")
    last_block: int = opt(13, "mobilenetv2: last block kept, features.0-N (7-13: stride 16; 13: 96 channels, a 7x7 map of a 107 px crop)")
    fc_width: int = opt(512, "fc4 / fc5 width (VGG-M MDNet: 512)")
    dropout: float = opt(0.5, "dropout after fc4 and fc5")
    mode: str = opt("exact", "exact: every sample cropped to 107x107 and run through conv1-3 (MDNet) | fast: one region per frame through conv1-3, every sample and the whole mining pool pooled from its conv3 map with RoIAlign (RT-MDNet; online/roi.py), so a large mining.pool costs little")
    max_region: int = opt(1024, "fast mode: largest region side (px at the target's scale, where the target is 75 px); a frame's region covers all its samples up to this, beyond it (centred on the target) samples read the map's edge. Bounds memory; the default samplers need at most ~850 px on OTB/VOT/UAV123 frames")

    def spec(self):
        from online import trunks  # imported late: the CLI sets thread counts before mxnet loads
        spec_cls = trunks.get(self.trunk).Spec
        # The model keys this trunk's spec takes (conv_channels for vggm, last_block for mobilenetv2).
        own = {k: (tuple(getattr(self, k)) if isinstance(getattr(self, k), (list, tuple)) else getattr(self, k))
               for k in spec_cls.MODEL_KEYS}
        return spec_cls(fc_width=self.fc_width, dropout=self.dropout, **own)


@dataclass(frozen=True)
class InitConfig:
    weights: Optional[str] = opt(None, "weight file (.h5) to start from; null = paper init (online.network.init_trunk)")
    layers: tuple[str, ...] = opt(("conv1", "conv2", "conv3"), "layers copied from init.weights (MDNet: conv1-3 from ImageNet VGG-M; `convs`: every conv layer of the trunk, e.g. MobileNetV2's); others keep the paper init")


@dataclass(frozen=True)
class SamplingConfig:
    # Samplers and their parameters as in online/sampling.py and the tracker's config (trans: a
    # fraction of mean(w, h); scale: a factor raised to a power in [-1, 1]). Defaults: py-MDNet's
    # pretraining (options_vot.yaml, pretrain/data_prov.py) and MATLAB MDNet's seq2roidb.m:
    # positives uniform trans 0.1 scale 1.3, negatives uniform trans 2 scale 1.6, none whole-image.
    frames: int = opt(8, "frames per step, all from the step's one domain")
    pos: int = opt(32, "positives per step (split evenly over the frames)")
    neg: int = opt(96, "negatives per step (the hardest of the pool when mining is on)")
    overlap_pos: float = opt(0.7, "positives need IoU >= this")
    overlap_neg: float = opt(0.5, "negatives need IoU <= this")
    sampler_pos: str = opt("uniform", "positive sampler: gaussian | uniform (py-MDNet pretraining: uniform)")
    trans_pos: float = opt(0.1, "positive sampler translation (x mean(w, h))")
    scale_pos: float = opt(1.3, "positive sampler scale factor")
    sampler_neg: str = opt("uniform", "negative sampler around the target: gaussian | uniform")
    trans_neg: float = opt(2.0, "negative sampler translation")
    scale_neg: float = opt(1.6, "negative sampler scale factor (also the whole-image negatives')")
    neg_whole_fraction: float = opt(0.0, "fraction of negatives drawn anywhere in the image (py-MDNet pretraining: 0; its tracker's first frame: half)")
    min_box_size: float = opt(10.0, "every sampled box keeps sides of at least this many pixels (py-MDNet: 10)")


@dataclass(frozen=True)
class MiningConfig:
    enabled: bool = opt(True, "hard negative mining: score a larger pool with the current net, keep the hardest")
    pool: int = opt(1024, "negatives scored per step (inference mode: no dropout, no autograd)")
    batch: int = opt(256, "inference batch used to score the pool")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = opt(1e-4, "base learning rate (conv layers; MDNet 1e-4)")
    lr_mult_conv: float = opt(1.0, "lr multiplier of the conv trunk; 0 freezes it (no gradient computed or allreduced)")
    lr_mult_fc: float = opt(10.0, "lr multiplier of fc4 and fc5 (MDNet x10)")
    lr_mult_branch: float = opt(10.0, "lr multiplier of the fc6 branches (MDNet x10); each branch is updated only when its domain comes up, so small runs may want it higher than lr_mult_fc")
    momentum: float = opt(0.9, "SGD momentum")
    weight_decay: float = opt(5e-4, "SGD weight decay (all parameters)")
    clip_norm: float = opt(10.0, "clip the global norm of the allreduced SHARED gradients (0 = off); branches are not clipped")
    # Horovod averages the shared gradients of N ranks, i.e. of N domains per step, and a cycle
    # over all domains takes N times fewer steps. `linear` multiplies the SHARED lr by N so a cycle
    # moves the shared weights as far as the single-process run does (to first order); `none`
    # keeps the lr and takes N times smaller shared steps per cycle; `sqrt` is in between. Branch
    # lrs are never scaled: a branch still gets exactly one update per visit of its domain.
    lr_scaling: str = opt("linear", "shared-lr scaling with the world size N: none | linear (x N) | sqrt (x sqrt N)")


@dataclass(frozen=True)
class ScheduleConfig:
    kind: str = opt("constant", "lr schedule over training progress in cycles: constant | step | cosine")
    warmup_cycles: float = opt(0.0, "linear warmup from 0 over this many cycles (helps with large lr_scaling)")
    milestones: tuple[float, ...] = opt((), "step schedule: cycles at which the lr is multiplied by gamma")
    gamma: float = opt(0.1, "step schedule factor")
    final_factor: float = opt(0.0, "cosine schedule: lr factor reached at the last cycle")


@dataclass(frozen=True)
class TrainConfig:
    cycles: int = opt(100, "cycles over all domains (MDNet: 100); one cycle = one epoch in the logs")
    stop_at_step: int = opt(0, "stop (after a checkpoint) once this global step is done; the schedule still spans train.cycles (0 = run to the end)")
    log_every: int = opt(50, "log a progress line on rank 0 every N steps (0 = epoch lines only)")


@dataclass(frozen=True)
class ValConfig:
    enabled: bool = opt(True, "validate on the held-out frames at the end of every val.every_cycles cycles")
    every_cycles: int = opt(1, "validation interval in cycles")
    frames_per_domain: int = opt(2, "held-out frames scored per domain (the same frames every time)")
    max_domains: int = opt(0, "validate only the first N domains (0 = all)")
    at_stop: bool = opt(False, "also validate when the run stops at train.stop_at_step (smoke runs and mdnet-bench scale, which times it)")
    candidates: int = opt(64, "gaussian candidates per frame (tracking-like search) for TrackTopKAcc")
    trans_cand: float = opt(0.6, "candidate translation (the tracker's default)")
    scale_cand: float = opt(1.05, "candidate scale factor (the tracker's default)")
    topk: int = opt(5, "k of TrackTopKAcc (the tracker averages its top 5 candidates)")


@dataclass(frozen=True)
class CheckpointConfig:
    every_steps: int = opt(500, "write a checkpoint every N steps (and always at the end); 0 = only at the end")
    keep: int = opt(3, "complete checkpoints kept (older ones are deleted after a new one is complete)")


@dataclass(frozen=True)
class RuntimeConfig:
    device: str = opt("auto", "auto (GPU local_rank when MXNet sees GPUs, else CPU) | cpu | gpu")
    share_gpus: bool = opt(False, "allow more ranks on a host than GPUs it has (ranks then share GPUs round-robin); without it that is an error (MDNET_SHARE_GPUS=1 does the same)")
    threads: int = opt(0, "compute threads per rank (OMP_NUM_THREADS); 0 = cores / ranks on this host")
    pin_cores: bool = opt(False, "pin each rank to its own cores (benchmarks: same resources per rank)")
    debug_dump: bool = opt(False, "every rank writes its final shared and branch weights to OUT/debug/rank<r>.npz (tests)")


@dataclass(frozen=True)
class PretrainConfig:
    seed: int = opt(0, "base seed; data sampling and dropout of rank r use (seed, r, step)")
    data: DataConfig = opt(DataConfig(), "training data")
    outliers: OutlierConfig = opt(OutlierConfig(), "annotation outlier filter")
    model: ModelConfig = opt(ModelConfig(), "network widths and mode (exact crops | fast RoI pooling)")
    init: InitConfig = opt(InitConfig(), "initialisation")
    sampling: SamplingConfig = opt(SamplingConfig(), "per-step samples")
    mining: MiningConfig = opt(MiningConfig(), "hard negative mining")
    optim: OptimConfig = opt(OptimConfig(), "optimizer")
    schedule: ScheduleConfig = opt(ScheduleConfig(), "learning-rate schedule")
    train: TrainConfig = opt(TrainConfig(), "training length")
    val: ValConfig = opt(ValConfig(), "validation on held-out frames")
    checkpoint: CheckpointConfig = opt(CheckpointConfig(), "checkpoints")
    runtime: RuntimeConfig = opt(RuntimeConfig(), "threads and debugging")


MODES = ("exact", "fast")
LR_SCALINGS = ("none", "linear", "sqrt")
SCHEDULES = ("constant", "step", "cosine")
LAYERS = ("conv1", "conv2", "conv3", "fc4", "fc5")


def validate(cfg: PretrainConfig) -> PretrainConfig:
    """Checks that types alone cannot express; raises ConfigError naming the key."""
    def need(ok, key, msg):
        if not ok:
            raise ConfigError(f"{key}: {msg}")
    need(cfg.optim.lr_scaling in LR_SCALINGS, "optim.lr_scaling",
         f"{cfg.optim.lr_scaling!r} is not one of {', '.join(LR_SCALINGS)}")
    need(cfg.runtime.device in ("auto", "cpu", "gpu"), "runtime.device",
         f"{cfg.runtime.device!r} is not one of auto, cpu, gpu")
    need(cfg.schedule.kind in SCHEDULES, "schedule.kind",
         f"{cfg.schedule.kind!r} is not one of {', '.join(SCHEDULES)}")
    # "convs" is every conv layer of the trunk (MobileNetV2 has 40, named mb<N>_<conv>); conv1-3
    # are VGG-M's; fc4 / fc5 are every trunk's.
    valid = ("convs",) + tuple(LAYERS)
    bad = [l for l in cfg.init.layers if l not in valid]
    need(not bad, "init.layers", f"unknown layers {bad}; valid: {', '.join(valid)}")
    need(0.0 <= cfg.data.val_fraction < 1.0, "data.val_fraction", "must be in [0, 1)")
    for key in ("frames", "pos", "neg"):
        need(getattr(cfg.sampling, key) >= 1, f"sampling.{key}", f"must be >= 1, got {getattr(cfg.sampling, key)}")
    need(0.0 <= cfg.sampling.neg_whole_fraction <= 1.0, "sampling.neg_whole_fraction", "must be in [0, 1]")
    for key in ("sampler_pos", "sampler_neg"):
        need(getattr(cfg.sampling, key) in ("gaussian", "uniform"), f"sampling.{key}",
             f"{getattr(cfg.sampling, key)!r} is not one of gaussian, uniform")
    need(cfg.sampling.min_box_size > 0, "sampling.min_box_size", "must be > 0")
    if cfg.mining.enabled:
        need(cfg.mining.pool >= cfg.sampling.neg, "mining.pool",
             f"{cfg.mining.pool} must be >= sampling.neg ({cfg.sampling.neg})")
        need(cfg.mining.batch >= 1, "mining.batch", "must be >= 1")
    need(cfg.train.cycles >= 1, "train.cycles", "must be >= 1")
    need(cfg.checkpoint.keep >= 1, "checkpoint.keep", "must be >= 1")
    need(cfg.val.topk >= 1, "val.topk", "must be >= 1")
    need(len(cfg.model.conv_channels) == 3 and min(cfg.model.conv_channels) >= 1 and cfg.model.fc_width >= 1,
         "model", "conv_channels needs 3 positive widths and fc_width must be positive")
    need(cfg.model.mode in MODES, "model.mode", f"{cfg.model.mode!r} is not one of {', '.join(MODES)}")
    from online import trunks
    need(cfg.model.trunk in trunks.TRUNKS, "model.trunk",
         f"{cfg.model.trunk!r} is not one of {', '.join(sorted(trunks.TRUNKS))}")
    if cfg.model.trunk in trunks.TRUNKS:
        problem = cfg.model.spec().validate()
        need(problem is None, "model", str(problem))
        # Fast-mode training of the convs goes through map windows (pretrain/windows.py), which
        # needs valid convolutions: a padded trunk trains only frozen there.
        need(not (cfg.model.mode == "fast" and cfg.optim.lr_mult_conv > 0
                  and not trunks.get(cfg.model.trunk).FAST_TRAINABLE), "optim.lr_mult_conv",
             f"model.trunk {cfg.model.trunk} in fast mode trains its convs only frozen: set optim.lr_mult_conv: 0")
    # A region must hold at least one crop's worth of pixels (107 px: a 3x3 conv3 map).
    need(cfg.model.max_region >= 107, "model.max_region", f"{cfg.model.max_region} must be >= 107 (one crop)")
    need(all(m > 0 for m in cfg.schedule.milestones), "schedule.milestones", "must be positive cycle counts")
    _check_ranges(cfg, need)
    return cfg


def _check_ranges(cfg: PretrainConfig, need) -> None:
    # Values a typo makes meaningless but that would otherwise run: a negative lr climbs the
    # loss, a zero one trains nothing, a fraction above 1 or a negative count makes empty or
    # inverted samples. Each key is named so the fix is obvious.
    def at_least(section, names, lo, strict=False):
        for name in names:
            v = getattr(getattr(cfg, section), name)
            need(v > lo if strict else v >= lo, f"{section}.{name}",
                 f"must be {'>' if strict else '>='} {lo}, got {v}")

    def fraction(section, names):
        for name in names:
            v = getattr(getattr(cfg, section), name)
            need(0.0 <= v <= 1.0, f"{section}.{name}", f"must be in [0, 1], got {v}")

    at_least("optim", ("lr",), 0, strict=True)
    at_least("optim", ("lr_mult_conv", "lr_mult_fc", "lr_mult_branch", "weight_decay", "clip_norm"), 0)
    need(0.0 <= cfg.optim.momentum < 1.0, "optim.momentum", f"must be in [0, 1), got {cfg.optim.momentum}")
    at_least("data", ("max_domains",), 0)
    at_least("data", ("min_train_frames", "workers", "prefetch"), 1)
    at_least("outliers", ("min_size",), 0)
    fraction("outliers", ("min_inside",))
    at_least("outliers", ("max_image_fraction", "jump_centre", "jump_size"), 0, strict=True)
    at_least("sampling", ("frames", "pos", "neg"), 1)
    fraction("sampling", ("overlap_pos", "overlap_neg"))
    at_least("sampling", ("trans_pos", "trans_neg"), 0)
    # Scale factors are raised to a power in [-1, 1]: below 1 mirrors a factor above 1.
    at_least("sampling", ("scale_pos", "scale_neg"), 1.0)
    at_least("mining", ("pool", "batch"), 1)
    at_least("schedule", ("warmup_cycles",), 0)
    at_least("schedule", ("gamma",), 0, strict=True)
    fraction("schedule", ("final_factor",))
    at_least("train", ("stop_at_step", "log_every"), 0)
    at_least("val", ("every_cycles", "frames_per_domain", "candidates", "topk"), 1)
    at_least("val", ("max_domains",), 0)
    at_least("val", ("trans_cand",), 0)
    at_least("val", ("scale_cand",), 1.0)
    need(cfg.val.topk <= cfg.val.candidates, "val.topk",
         f"{cfg.val.topk} must be <= val.candidates ({cfg.val.candidates})")
    at_least("checkpoint", ("every_steps",), 0)
    at_least("runtime", ("threads",), 0)
    need(0.0 <= cfg.model.dropout < 1.0, "model.dropout", f"must be in [0, 1), got {cfg.model.dropout}")


def load(path=None, overrides=()) -> PretrainConfig:
    from online.config import load_config
    return validate(load_config(PretrainConfig, path, overrides))
