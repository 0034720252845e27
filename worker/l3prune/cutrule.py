"""The L³Prune cut rule: where to prune, read off the initial layer-wise loss curve.

Given the contrastive loss L(d) of the *untrained* model truncated to its first d layers, for d = 1..N:

  small = argmin_{d in 1..floor(N/2)}      L(d)   (best depth in the lower half of the stack)
  large = argmin_{d in floor(N/2)+1..N}    L(d)   (best depth in the upper half)

Depths count layers kept (depth d = layers[:d]). Ties go to the smallest depth, because with equal loss the
shallower encoder is cheaper. Edge cases: N = 1 has an empty lower half, so small = large = 1; N = 2 gives
small = 1, large = 2. Non-finite losses are an error: a NaN would silently win or lose every comparison.

protocol/cut-rule-vectors.json holds curves with their expected answers; the TypeScript rule is tested
against the same file, so both sides cannot drift apart.
"""
from __future__ import annotations

import math
from typing import Sequence


def _argmin_depth(losses: Sequence[float], lo: int, hi: int) -> int:
    """Smallest depth d in [lo, hi] (1-based, inclusive) with the minimal loss."""
    best = lo
    for d in range(lo + 1, hi + 1):
        # Strict '<' keeps the first (smallest) depth on ties.
        if losses[d - 1] < losses[best - 1]:
            best = d
    return best


def cut_points(losses: Sequence[float]) -> tuple[int, int]:
    """Return (small, large) depths for a loss curve whose index 0 is depth 1."""
    n = len(losses)
    if n == 0:
        raise ValueError("the loss curve is empty; it needs one loss per depth 1..N")
    for i, v in enumerate(losses):
        if not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ValueError(f"loss at depth {i + 1} is {v!r}; every loss must be a finite number")
    if n == 1:
        return 1, 1
    half = n // 2
    return _argmin_depth(losses, 1, half), _argmin_depth(losses, half + 1, n)


def keep_for_prune_percent(num_layers: int, percent: int | float | str) -> int:
    """Layers kept when p % of num_layers are pruned: floor(N * (100 - p) / 100), the paper's int(N * (1 - p)) in
    exact arithmetic (32 layers at 10 % keep 28, at 20 % keep 25), never fewer than 1. p may carry up to two
    decimals (read as a whole number of hundredths). The TypeScript rule (src/shared/prune/plan.ts) is tested
    against the same protocol/keep-rule-vectors.json."""
    from fractions import Fraction

    if isinstance(num_layers, bool) or not isinstance(num_layers, int) or num_layers < 1:
        raise ValueError(f"the layer count must be a whole number of at least 1; got {num_layers!r}")
    if isinstance(percent, bool):
        raise ValueError(f"prune percent must be a number; got {percent!r}")
    try:
        # repr of a float is the shortest decimal that reads back as it (33.33, not 33.3299999...).
        exact = Fraction(repr(percent) if isinstance(percent, float) else str(percent))
    except (ValueError, ZeroDivisionError, OverflowError):
        raise ValueError(f"prune percent must be a number; got {percent!r}") from None
    if not 0 <= exact < 100:
        raise ValueError(f"prune percent must be at least 0 and below 100; got {percent}")
    hundredths = exact * 100
    if hundredths.denominator != 1:
        raise ValueError(f"prune percent takes at most two decimals; got {percent}")
    return max(1, num_layers * (10_000 - int(hundredths)) // 10_000)
