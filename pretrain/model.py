"""The multi-domain model: the online trunk (conv1-fc5, shared) plus one 2-way fc6 per domain.

A rank builds only the branches of the domains it owns (GOT-10k has ~9000 domains; each rank
holds its shard). Branch parameters are named `fc6_<domain index>_weight/bias`; checkpoints store
branches by domain *name*, so a resume with another number of ranks can re-shard them.

Initialisation: the trunk follows `online.network.init_trunk` (the paper's fc init) and may copy
some layers from a weight file (`init.weights`, `init.layers`, MDNet: conv1-3 of ImageNet VGG-M).
It is seeded, and rank 0's values are broadcast anyway. A branch's initial weights come from a
numpy generator seeded by (seed, domain index), so they do not depend on which rank owns the
domain (the same run re-sharded starts from the same branches).

Fast mode (online/roi.py) uses the same parameters through another path: `fmap` (online.network
FeatureMap: conv1-3 of the trunk, no flatten) turns a batch of regions into conv3 maps, RoIAlign
pools a 3x3 grid per box from them (`roi.pool`, laid out like ConvStage's flattened output), then
the trunk's fc4-fc5 and the domain's fc6. No parameter is added or renamed (Horovod and the
weight file match by name), so a fast-mode checkpoint exports like any other. A fast step mines on
the whole regions' maps (`score_fast`, inference) and trains on the windows of them that its 128
RoIs read (`window_scores`, pretrain/windows.py): the backward pass, the dearest part on CPU, then
covers only those windows. Gradients reach conv1-3 through RoIAlign's backward (MXNet 1.9.1 has it
on CPU and GPU; checked against finite differences, deterministic with several threads on the CPU;
on a GPU its backward accumulates with atomicAdd, so fast-mode gradients there are not bitwise
repeatable).
"""
from __future__ import annotations

import mxnet as mx
import numpy as np
from mxnet import gluon

from online import roi, trunk_precision, trunks
from online.network import Trunk, init_trunk, is_fc, layer_of, make_head, shared_params
from pretrain import windows as W


class MultiDomainNet:
    def __init__(self, spec, owned: dict, ctx, frozen_convs: bool = False):
        """`owned`: domain index -> domain name, for the branches this rank builds.
        `frozen_convs` (optim.lr_mult_conv = 0): the convs get no gradient at all; every conv
        pass runs the inference graph (the trunk's fused one where it has one, e.g. MobileNetV2)
        and only fc4-fc6 are in the autograd graph."""
        self.spec, self.ctx = spec, ctx
        self.trunk_module = trunks.of(spec)
        self.frozen_convs = bool(frozen_convs)
        # Training graphs: convs with the LRN gradient fix (online/trunks/vggm.py ConvStage).
        self.trunk = Trunk(spec, trainable_convs=True)
        self.fmap = self.trunk.feature_map()  # fast mode: same conv parameters, map output
        # Inference graphs over the SAME parameters, without the fix's layout conversions: mining
        # and validation never backpropagate, and their values are bitwise those of the above.
        self.infer_convs = self.trunk_module.ConvStage(spec, share=self.trunk.convs)
        self.infer_fmap = self.trunk.feature_map(convs=self.infer_convs)
        self.branches: dict[int, gluon.nn.Dense] = {d: make_head(spec, f"fc6_{d}") for d in sorted(owned)}
        self.names = dict(owned)

    # -------------------------------------------------------------------------- init

    def initialize(self, init_cfg, seed: int, log=None) -> None:
        init_trunk(self.trunk, self.ctx, seed=seed)
        if init_cfg.weights:
            self._load_init(init_cfg, log)
        for d, head in self.branches.items():
            head.initialize(ctx=self.ctx)
            w, b = branch_init(self.spec, seed, d)
            head.weight.set_data(mx.nd.array(w, ctx=self.ctx))
            head.bias.set_data(mx.nd.array(b, ctx=self.ctx))
        # static_alloc: the trunk runs at a few fixed batch shapes (training, mining, validation).
        self.trunk.hybridize(static_alloc=True)
        self.infer_convs.hybridize(static_alloc=True)
        # Fast mode's region size changes every step: a cached graph without static memory.
        self.fmap.hybridize()
        self.infer_fmap.hybridize()
        if self.frozen_convs:
            for name, p in self.shared_params().items():
                if not is_fc(name):
                    p.grad_req = "null"  # no gradient computed, none allreduced (SharedTrainer skips them)
            # Frozen weights never change: the inference passes may run a fused copy of them
            # (MobileNetV2's ReLU6 inside oneDNN's convolutions: ~5x faster than the plain graph).
            backend = trunk_precision.inference_backend(self.trunk_module, self.ctx)
            if backend:
                self.infer_convs = trunk_precision.convert(self.infer_convs, "fp32", self.ctx, backend=backend)
                self.infer_fmap = trunk_precision.convert(self.infer_fmap, "fp32", self.ctx, static_shape=False,
                                                          backend=backend)

    def _load_init(self, init_cfg, log) -> None:
        from online.weights import WeightFileError, load_params_into, load_weights
        wf = load_weights(init_cfg.weights)
        if type(wf.spec) is not type(self.spec):
            raise WeightFileError(f"init.weights {init_cfg.weights} holds a {wf.spec.TRUNK} trunk; the config "
                                  f"builds {self.spec.TRUNK} (model.trunk)")
        # "convs" names every conv layer of the trunk (MobileNetV2 has 40); others are layer names.
        wanted = set(init_cfg.layers)
        params = {n: v for n, v in wf.params.items()
                  if layer_of(n) in wanted or ("convs" in wanted and not is_fc(n))}
        own = shared_params(self.trunk)
        wrong = [f"{n}: file {tuple(v.shape)}, model {tuple(own[n].shape)}"
                 for n, v in params.items() if tuple(v.shape) != tuple(own[n].shape)]
        if wrong:
            raise WeightFileError(f"init.weights {init_cfg.weights}: layers {list(init_cfg.layers)} do not fit "
                                  f"model {self.spec.describe()}: " + "; ".join(wrong))
        loaded = load_params_into(self.trunk, params, allow_missing=True)
        if not loaded:
            raise WeightFileError(f"init.weights {init_cfg.weights}: none of layers {list(init_cfg.layers)} is in "
                                  f"the file (it holds {sorted({layer_of(n) for n in wf.params})[:8]}...)")
        if log:
            log(f"init: {', '.join(init_cfg.layers)} from {init_cfg.weights} ({len(loaded)} arrays); "
                f"other layers: paper init")

    # -------------------------------------------------------------------------- params

    def shared_params(self) -> dict:
        return shared_params(self.trunk)

    def branch_params(self, d: int) -> dict:
        head = self.branches[d]
        return {"weight": head.weight, "bias": head.bias}

    def set_lr_mults(self, conv: float, fc: float, branch: float) -> None:
        # Read by the optimizer through the Trainer's param_dict: lr = base lr x lr_mult.
        for name, p in self.shared_params().items():
            p.lr_mult = fc if is_fc(name) else conv
        for head in self.branches.values():
            head.weight.lr_mult = head.bias.lr_mult = branch

    # -------------------------------------------------------------------------- forward

    def __call__(self, x: mx.nd.NDArray, d: int) -> mx.nd.NDArray:
        """Raw 2-way scores of domain d's branch. Dropout is active only under
        autograd.record(train_mode=True), so the same call serves training and inference."""
        if self.frozen_convs:
            with mx.autograd.pause():
                feats = self.infer_convs(x)
            return self.branches[d](self.trunk.fcs(feats))
        return self.branches[d](self.trunk(x))

    def score(self, crops_u8: np.ndarray, d: int, batch: int) -> np.ndarray:
        """Inference-mode (no dropout, no autograd) scores (N,2) of uint8 crops, in batches."""
        out = []
        with mx.autograd.pause():
            for i in range(0, len(crops_u8), batch):
                x = to_input(crops_u8[i:i + batch], self.ctx)
                out.append(self.branches[d](self.trunk.fcs(self.infer_convs(x))))
        return mx.nd.concat(*out, dim=0).asnumpy() if len(out) > 1 else out[0].asnumpy()

    # -------------------------------------------------------------------------- fast mode

    def feature_maps(self, regions_u8: np.ndarray) -> mx.nd.NDArray:
        """conv3 maps (F, C, h, w) of uint8 regions (F, 3, H, W)."""
        return self.fmap(to_input(regions_u8, self.ctx))

    def pooled(self, maps: mx.nd.NDArray, rois: np.ndarray, d: int) -> mx.nd.NDArray:
        """Raw 2-way scores of domain d for RoIs (N, 5) on `maps`; dropout as in __call__."""
        r = mx.nd.array(rois, ctx=self.ctx, dtype=np.float32)
        return self.branches[d](self.trunk.fcs(roi.pool(mx.nd, maps, r, self.spec)))

    def score_rois(self, maps: mx.nd.NDArray, rois: np.ndarray, d: int, batch: int) -> np.ndarray:
        """Inference-mode scores (N, 2) of RoIs on `maps`, in batches (no autograd, no dropout)."""
        out = []
        with mx.autograd.pause():
            for i in range(0, len(rois), batch):
                out.append(self.pooled(maps, rois[i:i + batch], d))
        return mx.nd.concat(*out, dim=0).asnumpy() if len(out) > 1 else out[0].asnumpy()

    def score_fast(self, regions_u8: np.ndarray, rois: np.ndarray, d: int, batch: int) -> np.ndarray:
        """Inference-mode scores (N, 2) of RoIs on the maps of whole uint8 regions (mining,
        validation): conv1-3 once per region, then RoIAlign + fc4-fc6 in batches of `batch`."""
        with mx.autograd.pause():
            maps = self.infer_fmap(to_input(regions_u8, self.ctx))
        return self.score_rois(maps, rois, d, batch)

    def window_scores(self, regions_u8: np.ndarray, rois: np.ndarray, d: int) -> mx.nd.NDArray:
        """Raw scores (N, 2) of RoIs computed on the windows of the regions they read
        (pretrain/windows.py): per frame, conv1-3 on the smallest lattice-aligned slice of its
        region that holds every cell its RoIs sample, then RoIAlign, fc4-fc6 and fc6 of domain d
        for all RoIs at once, in the order given. The training pass of a fast step (call it under
        autograd.record(); dropout as in __call__); the same values as pooling from whole maps."""
        if self.frozen_convs:
            # No gradient reaches the convs: pool from the inference maps of the whole regions.
            with mx.autograd.pause():
                maps = self.infer_fmap(to_input(regions_u8, self.ctx))
            return self.pooled(maps, rois, d)
        if not self.trunk_module.FAST_TRAINABLE:
            raise ValueError(f"fast-mode pretraining trains the {self.spec.TRUNK} convs only frozen "
                             f"(optim.lr_mult_conv: 0): its padded convs break the map-window training")
        feats, order = [], []
        for slot, idx, win in W.frame_windows(rois, regions_u8.shape, self.spec.conv3_size):
            maps = self.feature_maps(W.window_pixels(regions_u8, slot, win))
            r = mx.nd.array(W.shift_rois(rois[idx], win), ctx=self.ctx, dtype=np.float32)
            feats.append(roi.pool(mx.nd, maps, r, self.spec))
            order.append(idx)
        x = mx.nd.concat(*feats, dim=0) if len(feats) > 1 else feats[0]
        order = np.concatenate(order)
        if not np.array_equal(order, np.arange(len(order))):
            x = mx.nd.take(x, mx.nd.array(np.argsort(order, kind="stable"), ctx=self.ctx))
        return self.branches[d](self.trunk.fcs(x))


def to_input(crops_u8: np.ndarray, ctx) -> mx.nd.NDArray:
    """uint8 NCHW crops -> float32 NDArray on ctx (the net subtracts the mean itself)."""
    return mx.nd.array(crops_u8, ctx=ctx, dtype=np.uint8).astype(np.float32)


def branch_init(spec, seed: int, domain_index: int) -> tuple[np.ndarray, np.ndarray]:
    """The paper's fc6 init, N(0, 0.01) weights and zero bias, from (seed, domain index)."""
    rng = np.random.default_rng([seed, domain_index, 0xFC6])
    w = rng.normal(0.0, 0.01, (2, spec.fc_width)).astype(np.float32)
    return w, np.zeros(2, np.float32)
