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

from online.network import FcStage, NetSpec, make_head


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
    """

    def __init__(self, spec: NetSpec, prefix: str, train: bool, params=None):
        super().__init__(prefix=prefix, params=params)
        self._train = train
        with self.name_scope():
            self.fcs = FcStage(spec)
            self.fc6 = make_head(spec)

    def hybrid_forward(self, F, x, *extra):
        if self._train:
            m4, m5, label = extra
            return F.mean(mdnet_loss(F, self.fc6(self.fcs(x, m4, m5)), label))
        return self.fc6(self.fcs(x))
