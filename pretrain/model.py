"""The multi-domain model: the online trunk (conv1-fc5, shared) plus one 2-way fc6 per domain.

A rank builds only the branches of the domains it owns (GOT-10k has ~9000 domains; each rank
holds its shard). Branch parameters are named `fc6_<domain index>_weight/bias`; checkpoints store
branches by domain *name*, so a resume with another number of ranks can re-shard them.

Initialisation: the trunk follows `online.network.init_trunk` (the paper's fc init) and may copy
some layers from a weight file (`init.weights`, `init.layers`, MDNet: conv1-3 of ImageNet VGG-M).
It is seeded, and rank 0's values are broadcast anyway. A branch's initial weights come from a
numpy generator seeded by (seed, domain index), so they do not depend on which rank owns the
domain (the same run re-sharded starts from the same branches).
"""
from __future__ import annotations

import mxnet as mx
import numpy as np
from mxnet import gluon

from online.network import NetSpec, Trunk, init_trunk, make_head, shared_params

CONV_LAYERS = ("conv1", "conv2", "conv3")


class MultiDomainNet:
    def __init__(self, spec: NetSpec, owned: dict, ctx):
        """`owned`: domain index -> domain name, for the branches this rank builds."""
        self.spec, self.ctx = spec, ctx
        self.trunk = Trunk(spec)
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

    def _load_init(self, init_cfg, log) -> None:
        from online.weights import WeightFileError, load_params_into, load_weights
        wf = load_weights(init_cfg.weights)
        wanted = {f"{l}_{k}" for l in init_cfg.layers for k in ("weight", "bias")}
        params = {n: v for n, v in wf.params.items() if n in wanted}
        own = shared_params(self.trunk)
        wrong = [f"{n}: file {tuple(v.shape)}, model {tuple(own[n].shape)}"
                 for n, v in params.items() if tuple(v.shape) != tuple(own[n].shape)]
        if wrong:
            raise WeightFileError(f"init.weights {init_cfg.weights}: layers {list(init_cfg.layers)} do not fit "
                                  f"model widths {self.spec.conv_channels}/{self.spec.fc_width}: " + "; ".join(wrong))
        loaded = load_params_into(self.trunk, params, allow_missing=True)
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
            p.lr_mult = conv if name.split("_")[0] in CONV_LAYERS else fc
        for head in self.branches.values():
            head.weight.lr_mult = head.bias.lr_mult = branch

    # -------------------------------------------------------------------------- forward

    def __call__(self, x: mx.nd.NDArray, d: int) -> mx.nd.NDArray:
        """Raw 2-way scores of domain d's branch. Dropout is active only under
        autograd.record(train_mode=True), so the same call serves training and inference."""
        return self.branches[d](self.trunk(x))

    def score(self, crops_u8: np.ndarray, d: int, batch: int) -> np.ndarray:
        """Inference-mode (no dropout, no autograd) scores (N,2) of uint8 crops, in batches."""
        out = []
        for i in range(0, len(crops_u8), batch):
            x = to_input(crops_u8[i:i + batch], self.ctx)
            out.append(self(x, d))
        return mx.nd.concat(*out, dim=0).asnumpy() if len(out) > 1 else out[0].asnumpy()


def to_input(crops_u8: np.ndarray, ctx) -> mx.nd.NDArray:
    """uint8 NCHW crops -> float32 NDArray on ctx (the net subtracts the mean itself)."""
    return mx.nd.array(crops_u8, ctx=ctx, dtype=np.uint8).astype(np.float32)


def branch_init(spec: NetSpec, seed: int, domain_index: int) -> tuple[np.ndarray, np.ndarray]:
    """The paper's fc6 init, N(0, 0.01) weights and zero bias, from (seed, domain index)."""
    rng = np.random.default_rng([seed, domain_index, 0xFC6])
    w = rng.normal(0.0, 0.01, (2, spec.fc_width)).astype(np.float32)
    return w, np.zeros(2, np.float32)
