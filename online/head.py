"""The MDNet objective and the per-target fc4-fc6 head.

`mdnet_loss` is the one definition of MDNet's loss, used by the tracker's online training, by the
pretraining step and by the pretraining metrics: the 2-way softmax cross-entropy of the raw fc6
outputs, per sample (py-MDNet's BinaryLoss: -log p(target) for positives, -log p(background) for
negatives). Written against `F` (mx.nd or mx.sym) so it runs inside hybridized blocks too.

`TargetHead` is what the tracker fine-tunes for one target: a private copy of the network's fc
stage (online.network.FcStage, fc4-fc5) and a fresh fc6 (online.network.make_head). Pretraining
uses the same FcStage inside the shared trunk and one make_head branch per domain.
"""
from __future__ import annotations

import mxnet as mx
import numpy as np
from mxnet import gluon
from mxnet.gluon import nn

from online.network import FcStage, NetSpec, make_head
from online.trunks.ops import relu as _relu


def mdnet_loss(F, scores, labels):
    """Per-sample cross-entropy of raw 2-way scores (N, 2) against labels 0/1 (N,)."""
    return -F.pick(F.log_softmax(scores, axis=1), labels, axis=1)


def mdnet_loss_np(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """`mdnet_loss` on host arrays, in float64 (for metrics that sum it over many samples)."""
    s = mx.nd.array(np.asarray(scores, dtype=np.float64).reshape(-1, 2), dtype=np.float64)
    y = mx.nd.array(np.asarray(labels, dtype=np.float64).reshape(-1), dtype=np.float64)
    return mdnet_loss(mx.nd, s, y).asnumpy()


class TargetHead(gluon.HybridBlock):
    """fc4 -> ReLU -> dropout -> fc5 -> ReLU -> dropout -> fc6 for one tracked target.

    Dropout multiplies by masks passed in as inputs (drawn from the target's own numpy generator),
    so each target's randomness is private. `train=True` returns the minibatch's mean `mdnet_loss`
    (inputs: features, mask4, mask5, labels); `train=False` returns the raw fc6 outputs.

    `fc4=False` (TrackerConfig.online_fc4: frozen): fc4 is frozen and not part of the head; the input is
    fc4's ReLU output (`Fc4Embedding`, computed once per sample) and the head is dropout -> fc5 ->
    ReLU -> dropout -> fc6: the same function as the full head with fc4 held fixed, same masks.
    """

    def __init__(self, spec: NetSpec, prefix: str, train: bool, params=None, fc4: bool = True):
        super().__init__(prefix=prefix, params=params)
        self._train = train
        self._fc4 = fc4
        with self.name_scope():
            if fc4:
                self.fcs = FcStage(spec)
            else:
                self.fc5 = nn.Dense(spec.fc_width, in_units=spec.fc_width, prefix="fc5_")
            self.fc6 = make_head(spec)

    def online_layers(self) -> dict:
        """The layers trained online, by name ("fc4", "fc5" or just "fc5")."""
        return ({"fc4": self.fcs.fc4, "fc5": self.fcs.fc5} if self._fc4 else {"fc5": self.fc5})

    def hybrid_forward(self, F, x, *extra):
        if self._fc4:
            if self._train:
                m4, m5, label = extra
                return F.mean(mdnet_loss(F, self.fc6(self.fcs(x, m4, m5)), label))
            return self.fc6(self.fcs(x))
        if self._train:
            m4, m5, label = extra
            h = _relu(F, self.fc5(x * m4)) * m5
            return F.mean(mdnet_loss(F, self.fc6(h), label))
        return self.fc6(_relu(F, self.fc5(x)))


class Fc4Embedding:
    """fc4 + ReLU with the weight file's (frozen) fc4: conv features (N, feat_dim) -> (N, fc_width).

    Used when fc4 is not trained online: one pass per sample, shared by every target (they all start
    from, and here keep, the same fc4), so stored samples, mining and training read 512-d rows.
    Inference only, float32 out. `dtype` bf16 (TrackerConfig.mining_dtype resolved to bf16: CPUs
    with avx512_bf16): oneDNN's bf16 GEMM, the frozen weights cast once, the rows per call (2x on
    the first frame's ~5,700 rows, measured); fp32 otherwise."""

    def __init__(self, fc4: nn.Dense, ctx, dtype: str = "fp32"):
        self.ctx = ctx
        self.dtype = dtype
        self.weight = fc4.weight.data(ctx).copy()
        self.bias = fc4.bias.data(ctx).copy()
        self.width = int(self.weight.shape[0])
        if dtype == "bf16":
            from mxnet.contrib.amp.amp import bfloat16
            self._bf16 = bfloat16
            self.weight = mx.nd.amp_cast(self.weight, dtype=bfloat16)
            self.bias = mx.nd.amp_cast(self.bias, dtype=bfloat16)
        elif dtype != "fp32":
            raise ValueError(f"fc4 precision must be fp32 or bf16, got {dtype!r}")

    def __call__(self, feats: mx.nd.NDArray) -> mx.nd.NDArray:
        if feats.shape[0] == 0:
            # mx.nd.zeros((0, n)) is refused (shape inference); a slice of a one-row array is not.
            return mx.nd.zeros((1, self.width), ctx=self.ctx)[:0]
        x = feats if self.dtype == "fp32" else mx.nd.amp_cast(feats, dtype=self._bf16)
        y = _relu(mx.nd, mx.nd.FullyConnected(x, self.weight, self.bias, num_hidden=self.width))
        return y if self.dtype == "fp32" else mx.nd.amp_cast(y, dtype="float32")
