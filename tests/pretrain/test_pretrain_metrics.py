"""Metric definitions (pretrain/metrics.py) on hand-made scores."""
import math

import numpy as np
import pytest

from online.head import mdnet_loss_np
from pretrain import metrics as M


def scores_for(pos_prob):
    """Raw 2-way scores whose positive-vs-negative margin is log-odds of pos_prob."""
    p = np.asarray(pos_prob, dtype=np.float64)
    return np.stack([np.zeros_like(p), np.log(p / (1 - p))], axis=1)


def test_counts_and_ratios_by_hand():
    # 4 positives, 4 negatives. Scored positive: pos 0, 1, 2 and neg 0 -> TP 3, FN 1, FP 1, TN 3.
    prob = [0.9, 0.8, 0.6, 0.3, 0.7, 0.2, 0.1, 0.4]
    label = [1, 1, 1, 1, 0, 0, 0, 0]
    frame = [0, 0, 1, 1, 0, 0, 1, 1]
    c = M.count(scores_for(prob), label, frame, k=2)
    m = M.summarize(c)
    assert m["PR"] == pytest.approx(3 / 4)
    assert m["RR"] == pytest.approx(3 / 4)
    assert m["PosAcc"] == pytest.approx(3 / 4)
    assert m["NegAcc"] == pytest.approx(3 / 4)
    # Cross-entropy of a sample = -log p(its label).
    want = -np.mean(np.log([0.9, 0.8, 0.6, 0.3, 0.3, 0.8, 0.9, 0.6]))
    assert m["Loss"] == pytest.approx(want)
    # Top-2 per frame: frame 0 ranks 0.9 (pos), 0.8 (pos) -> 2/2; frame 1 ranks 0.6 (pos), 0.4 (neg)
    # -> 1/2. Mean 0.75.
    assert m["TrackTopKAcc"] == pytest.approx(0.75)


def test_topk_normalised_by_available_positives():
    # One frame, 1 positive among 6: top-5 containing it is perfect (1/min(5,1) = 1).
    prob = [0.55, 0.9, 0.8, 0.7, 0.6, 0.5]  # the positive ranks 5th
    label = [1, 0, 0, 0, 0, 0]
    hits, frames = M.topk_hits(scores_for(prob)[:, 1], np.array(label) == 1, np.zeros(6), 5)
    assert (hits, frames) == (1.0, 1)
    # ...and missing it when k is 4.
    hits, _ = M.topk_hits(scores_for(prob)[:, 1], np.array(label) == 1, np.zeros(6), 4)
    assert hits == 0.0
    # A frame without positives is skipped, not counted as 0.
    hits, frames = M.topk_hits(np.array([1.0, 2.0]), np.array([False, False]), np.zeros(2), 5)
    assert (hits, frames) == (0.0, 0)


def test_unlabelled_candidates_and_masks():
    # Validation: sampled pos/neg count in PosAcc/NegAcc and the loss; candidates (labels 1, 0, -1)
    # count in PR/RR and are the only ones ranked for TrackTopKAcc.
    prob = [0.9, 0.1, 0.8, 0.7, 0.6]
    label = [1, 0, 1, 0, -1]
    kind = np.array([0, 1, 2, 2, 2])
    c = M.count(scores_for(prob), label, np.zeros(5), k=1, sampled=kind < 2, ranked=kind == 2, in_loss=kind < 2)
    g = dict(zip(M.COUNTERS, c))
    assert (g["tp"], g["fp"], g["fn"], g["tn"]) == (2, 1, 0, 1)  # the -1 candidate is in none
    assert (g["pos_n"], g["neg_n"], g["loss_n"]) == (1, 1, 2)
    m = M.summarize(c)
    assert m["TrackTopKAcc"] == 1.0  # top-1 candidate (0.8) is a positive
    assert m["Loss"] == pytest.approx(-np.mean(np.log([0.9, 0.9])))


def test_sums_over_ranks_equal_one_big_batch():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(40, 2))
    lab = rng.integers(0, 2, 40)
    fr = np.repeat(np.arange(8), 5)
    whole = M.summarize(M.count(s, lab, fr, 3))
    parts = M.summarize(M.count(s[:20], lab[:20], fr[:20], 3) + M.count(s[20:], lab[20:], fr[20:], 3))
    assert whole == pytest.approx(parts)


def test_nan_when_undefined_and_json_safe():
    m = M.summarize(M.zeros())
    assert all(math.isnan(v) for v in m.values())
    assert all(v is None for v in M.json_safe(m).values())


def test_mxnet_line_format():
    lines = M.mxnet_lines(4, "Train", {k: 0.1234567 for k in M.METRICS})
    assert lines[0] == "Epoch[4] Train-Loss=0.123457"
    assert [l.split(" ")[1].split("=")[0] for l in lines] == [f"Train-{k}" for k in M.METRICS]


def test_xent_is_stable():
    loss = mdnet_loss_np(np.array([[1000.0, -1000.0], [1000.0, -1000.0]]), np.array([1, 0]))
    assert np.isfinite(loss).all() and loss[0] == pytest.approx(2000.0) and loss[1] == pytest.approx(0.0)
