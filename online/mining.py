"""Hard minibatch mining, MDNet's way: of a pool of negatives, keep those the current network
most wants to call "target".

Hardness is the raw fc6 positive output scored in inference mode (no dropout, no autograd), as in
py-MDNet's `train()`; the tracker mines in every online training iteration, pretraining in every
step (a feature of this project: none of the reference systems mines while pretraining).
"""
from __future__ import annotations

import numpy as np


def select_hardest(pos_scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k highest positive scores, highest first (ties: the lower index first)."""
    pos_scores = np.asarray(pos_scores).reshape(-1)
    if k > len(pos_scores):
        raise ValueError(f"cannot keep {k} hardest of {len(pos_scores)} negatives")
    # Stable sort on the negated score: equal scores keep their pool order.
    return np.argsort(-pos_scores, kind="stable")[:k]
