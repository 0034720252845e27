"""The cut's uncertainty from the batches analyze already ran: spread per depth and a bootstrap of the argmins."""
from __future__ import annotations

import statistics

import pytest

from l3prune.cutstability import cut_stability


def test_a_clear_minimum_wins_every_resample():
    # Depth 2 and depth 5 are far below their halves' other depths in every batch.
    batches = [[3.0, 1.0, 3.0, 3.0, 0.5, 3.0]] * 5
    out = cut_stability(batches, seed=1, resamples=200)
    assert out["smallShare"][1] == 1.0 and out["largeShare"][4] == 1.0
    assert out["small"] == 1.0 and out["large"] == 1.0
    assert out["lossStd"] == [0.0] * 6


def test_a_noisy_tie_splits_the_wins_and_the_shares_sum_to_one():
    # Depths 1 and 2 trade places from batch to batch; their means are almost equal.
    batches = [[1.0, 1.1, 5.0, 5.0], [1.2, 1.0, 5.0, 5.0], [1.0, 1.15, 5.0, 4.0], [1.25, 1.0, 4.0, 5.0]]
    out = cut_stability(batches, seed=0, resamples=500)
    assert sum(out["smallShare"]) == pytest.approx(1.0) and sum(out["largeShare"]) == pytest.approx(1.0)
    assert 0.1 < out["smallShare"][0] < 0.9 and 0.1 < out["smallShare"][1] < 0.9
    assert out["small"] < 0.8
    assert out["lossStd"][0] == pytest.approx(statistics.stdev([1.0, 1.2, 1.0, 1.25]))


def test_seeded_and_one_batch_has_no_spread():
    batches = [[2.0, 1.0, 3.0, 0.5]]
    assert cut_stability(batches, seed=3) == cut_stability(batches, seed=3)
    out = cut_stability(batches)
    assert out["lossStd"] == [0.0] * 4 and out["batches"] == 1 and out["small"] == 1.0


def test_refuses_an_empty_table():
    with pytest.raises(ValueError):
        cut_stability([])
