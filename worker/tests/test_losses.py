import numpy as np
import pytest
import torch

from l3prune.losses import HardNegativeInfoNCE


def reference_loss(q, p, n, scale):
    """The docstring's formula, written out in float64 numpy."""
    q, p, n = (x.astype(np.float64) for x in (q, p, n))
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
    cand = np.concatenate([unit(p), unit(n)], 0)
    s = scale * unit(q) @ cand.T
    b = q.shape[0]
    total = 0.0
    for i in range(b):
        m = s[i].max()
        lse = m + np.log(np.exp(s[i] - m).sum())
        total += lse - s[i, i]
    return total / b


@pytest.mark.parametrize("b,d,scale", [(1, 8, 50.0), (4, 16, 50.0), (16, 64, 20.0), (7, 5, 1.0)])
def test_loss_equals_the_float64_formula(b, d, scale):
    g = torch.Generator().manual_seed(b * 100 + d)
    q, p, n = (torch.randn(b, d, generator=g) for _ in range(3))
    got = HardNegativeInfoNCE(scale)(q, p, n).item()
    want = reference_loss(q.numpy(), p.numpy(), n.numpy(), scale)
    assert got == pytest.approx(want, rel=1e-5, abs=1e-5)


def test_hard_negatives_count_as_candidates():
    # A negative pointing away from its query barely enters the softmax; one equal to the query competes with
    # the positive on equal terms. If negatives were not candidates, both losses would be the same.
    q = torch.eye(2)
    easy = HardNegativeInfoNCE(10)(q, q.clone(), -q).item()
    hard = HardNegativeInfoNCE(10)(q, q.clone(), q.clone()).item()
    assert hard > easy
    assert hard == pytest.approx(reference_loss(q.numpy(), q.numpy(), q.numpy(), 10), rel=1e-6)


def test_sum_reduction_is_batch_size_times_mean():
    g = torch.Generator().manual_seed(1)
    q, p, n = (torch.randn(5, 8, generator=g) for _ in range(3))
    f = HardNegativeInfoNCE()
    assert f(q, p, n, reduction="sum").item() == pytest.approx(5 * f(q, p, n).item(), rel=1e-6)
