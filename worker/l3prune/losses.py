"""Contrastive losses."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class HardNegativeInfoNCE(nn.Module):
    r"""InfoNCE with in-batch positives and in-batch hard negatives (as in E5 / SimCSE-supervised / L³Prune).

    For a batch of B triples (q_i, p_i, n_i) the candidates of every query are all B positives and all B
    hard negatives, so 2B candidates and one correct answer:

        s_ij = scale * cos(q_i, c_j),   c = [p_1..p_B, n_1..n_B]
        loss = -(1/B) * sum_i log( exp(s_ii) / sum_{j=1}^{2B} exp(s_ij) )

    scale is 1/τ (default 50, i.e. τ = 0.02). The loss is the mean over the batch, so batches of equal size
    can be averaged into a per-sample mean.
    """

    def __init__(self, scale: float = 50.0):
        super().__init__()
        if not (scale > 0):
            raise ValueError(f"scale must be positive, got {scale}")
        self.scale = float(scale)

    def forward(self, q: torch.Tensor, p: torch.Tensor, n: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        if not (q.shape == p.shape == n.shape) or q.dim() != 2:
            raise ValueError(f"expected three (B, D) tensors of one shape, got {tuple(q.shape)}, {tuple(p.shape)}, {tuple(n.shape)}")
        cand = torch.cat([p, n], dim=0)
        logits = self.scale * (F.normalize(q, dim=-1) @ F.normalize(cand, dim=-1).T)
        target = torch.arange(q.shape[0], device=q.device)
        return F.cross_entropy(logits, target, reduction=reduction)
