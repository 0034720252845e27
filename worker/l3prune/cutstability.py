"""How sure is a cut? The initial-loss curve is a mean over a random sample of batches, so its argmins move with
the sample (on the demo model: 256 triples gave small 7 / large 28, 64 triples small 14 / large 18).

From the per-batch losses that analyze already computes (no extra forward pass):
  lossStd[d]   the spread of depth d's loss over batches (sample standard deviation; 0 for a single batch);
  shares       a bootstrap over batches: resample the batches with replacement, average, apply the cut rule,
               and count how often each depth wins each half. The share of the reported cut is how sure it is;
               a winner below ~80 % says "draw more samples".
The bootstrap is seeded, so a rerun of the same analysis reports the same shares.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .cutrule import cut_points

BOOTSTRAP_RESAMPLES = 1000
SURE_SHARE = 0.8


def cut_stability(batch_losses: Sequence[Sequence[float]], *, seed: int = 0, resamples: int = BOOTSTRAP_RESAMPLES) -> dict:
    """batch_losses[b][d-1] is batch b's mean loss at depth d. Returns lossStd, the per-depth win shares of each
    half (smallShare, largeShare: length N, summing to 1 each), the shares of the cuts of the full sample, and
    the number of resamples."""
    x = np.asarray(batch_losses, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError("batch losses must be a non-empty batches × depths table")
    b, n = x.shape
    std = x.std(axis=0, ddof=1) if b > 1 else np.zeros(n)
    small, large = cut_points(x.mean(axis=0).tolist())
    small_wins = np.zeros(n)
    large_wins = np.zeros(n)
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        curve = x[rng.integers(0, b, size=b)].mean(axis=0)
        s, l = cut_points(curve.tolist())
        small_wins[s - 1] += 1
        large_wins[l - 1] += 1
    return {
        "lossStd": std.tolist(),
        "batches": b,
        "resamples": resamples,
        "smallShare": (small_wins / resamples).tolist(),
        "largeShare": (large_wins / resamples).tolist(),
        "small": float(small_wins[small - 1] / resamples),
        "large": float(large_wins[large - 1] / resamples),
    }
