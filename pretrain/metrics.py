"""Pretraining metrics: counters that add up over steps and ranks, and what they mean.

Every metric is a ratio of two sums, so each rank accumulates plain counters, one allreduce adds
them over ranks at the end of an epoch, and the ratios are taken once, on the totals (averaging
per-rank ratios would weight ranks wrongly). A sample is *scored positive* when its fc6 output for
"target" exceeds its output for "background" (softmax probability > 0.5). Labels: positives have
IoU >= 0.7 with the ground truth, negatives IoU <= 0.5; validation candidates in between count in
no metric except as "not a true positive" in TrackTopKAcc.

Definitions (N = samples, over the epoch, all ranks):

- Loss: mean softmax cross-entropy over the training minibatch samples (32 positives + 96
  [hard] negatives per step), i.e. sum of per-sample losses / number of samples. Validation:
  the same over the sampled held-out positives and negatives (no mining).
- PR (precision): of the samples scored positive, the fraction that are positives,
  TP / (TP + FP). NaN when nothing was scored positive.
- RR (recall): of the positives, the fraction scored positive, TP / (TP + FN).
- TrackTopKAcc: per frame, rank that frame's samples by positive score (raw fc6 output, as the
  tracker does), take the top k (k = 5, the tracker's estimate is their mean box) and count the
  true positives among them; divide by min(k, positives available in that frame), so a perfect
  ranking scores 1; average over frames. Training ranks the step's samples of each frame (its
  positives and its mined negatives); validation ranks the frame's tracker-like candidates
  (`val.candidates` gaussian boxes around the ground truth, trans 0.6, scale 1.05), where a true
  positive is a candidate with IoU >= 0.7. Frames without a positive are skipped.
- PosAcc: fraction of the sampled positives scored positive. NegAcc: fraction of the sampled
  negatives scored negative. In training PosAcc equals RR (the minibatch holds only sampled
  positives and negatives); in validation PR and RR also count the labelled candidates, PosAcc
  and NegAcc do not. NegAcc on hard negatives is, by construction, lower than on random ones.
"""
from __future__ import annotations

import math

import numpy as np

from online.head import mdnet_loss_np

# Order of the counter vector that is allreduced; never reorder within a run.
COUNTERS = ("loss_sum", "loss_n", "tp", "fp", "fn", "tn", "topk_sum", "topk_frames",
            "pos_correct", "pos_n", "neg_correct", "neg_n", "samples")
METRICS = ("Loss", "PR", "RR", "TrackTopKAcc", "PosAcc", "NegAcc")


def zeros() -> np.ndarray:
    return np.zeros(len(COUNTERS), dtype=np.float64)


def _ix(name: str) -> int:
    return COUNTERS.index(name)


def topk_hits(pos_score: np.ndarray, is_true: np.ndarray, frame: np.ndarray, k: int) -> tuple[float, int]:
    """(sum over frames of hits/min(k, positives), frames with a positive) -- see TrackTopKAcc."""
    pos_score = np.asarray(pos_score, dtype=np.float64)
    is_true = np.asarray(is_true, dtype=bool)
    frame = np.asarray(frame)
    total, frames = 0.0, 0
    for f in np.unique(frame):
        sel = np.flatnonzero(frame == f)
        n_true = int(is_true[sel].sum())
        if n_true == 0:
            continue
        order = sel[np.argsort(-pos_score[sel], kind="stable")[:k]]
        total += is_true[order].sum() / min(k, n_true)
        frames += 1
    return total, frames


def count(scores: np.ndarray, label: np.ndarray, frame: np.ndarray, k: int,
          sampled: np.ndarray | None = None, ranked: np.ndarray | None = None,
          in_loss: np.ndarray | None = None) -> np.ndarray:
    """Counters for one batch of scored samples.

    scores (N,2) raw fc6 outputs; label (N,) 1 positive / 0 negative / -1 unlabelled; frame (N,)
    frame id for TrackTopKAcc. Optional masks: `sampled` = sampled pos/neg (PosAcc, NegAcc; default
    all labelled), `ranked` = samples ranked for TrackTopKAcc (default all), `in_loss` = samples in
    the loss (default all labelled).
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1, 2)
    label = np.asarray(label, dtype=np.int64).reshape(-1)
    frame = np.asarray(frame).reshape(-1)
    labelled = label >= 0
    sampled = labelled if sampled is None else (np.asarray(sampled, bool) & labelled)
    ranked = np.ones(len(label), bool) if ranked is None else np.asarray(ranked, bool)
    in_loss = labelled if in_loss is None else (np.asarray(in_loss, bool) & labelled)
    pred_pos = scores[:, 1] > scores[:, 0]
    pos, neg = label == 1, label == 0
    c = zeros()
    if in_loss.any():
        c[_ix("loss_sum")] = mdnet_loss_np(scores[in_loss], label[in_loss]).sum()
        c[_ix("loss_n")] = in_loss.sum()
    c[_ix("tp")] = (pred_pos & pos).sum()
    c[_ix("fp")] = (pred_pos & neg).sum()
    c[_ix("fn")] = (~pred_pos & pos).sum()
    c[_ix("tn")] = (~pred_pos & neg).sum()
    hits, frames = topk_hits(scores[ranked, 1], pos[ranked], frame[ranked], k)
    c[_ix("topk_sum")] = hits
    c[_ix("topk_frames")] = frames
    c[_ix("pos_correct")] = (pred_pos & pos & sampled).sum()
    c[_ix("pos_n")] = (pos & sampled).sum()
    c[_ix("neg_correct")] = (~pred_pos & neg & sampled).sum()
    c[_ix("neg_n")] = (neg & sampled).sum()
    c[_ix("samples")] = len(label)
    return c


def _ratio(a: float, b: float) -> float:
    return float(a) / float(b) if b > 0 else float("nan")


def summarize(c: np.ndarray) -> dict:
    """Metric name -> value from (summed) counters; NaN where the denominator is 0."""
    g = {name: float(c[i]) for i, name in enumerate(COUNTERS)}
    return {
        "Loss": _ratio(g["loss_sum"], g["loss_n"]),
        "PR": _ratio(g["tp"], g["tp"] + g["fp"]),
        "RR": _ratio(g["tp"], g["tp"] + g["fn"]),
        "TrackTopKAcc": _ratio(g["topk_sum"], g["topk_frames"]),
        "PosAcc": _ratio(g["pos_correct"], g["pos_n"]),
        "NegAcc": _ratio(g["neg_correct"], g["neg_n"]),
    }


def mxnet_lines(epoch: int, phase: str, metrics: dict) -> list[str]:
    """Lines in MXNet's fit() format: `Epoch[4] Train-Loss=0.123456`."""
    return [f"Epoch[{epoch}] {phase}-{name}={metrics[name]:f}" for name in METRICS]


def json_safe(metrics: dict) -> dict:
    """NaN -> None so the JSON-lines file stays strict JSON."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}
