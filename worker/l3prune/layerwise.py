"""Every depth's pooled representation from ONE forward pass.

Why this equals truncation: a model truncated to its first d layers computes exactly hidden_states[d] of the
full model (the layers after d never influence earlier ones) and then applies its final norm. So depth d's
embedding is pool(final_norm(hidden_states[d])). Two details make that exact:

* Hugging Face overwrites hidden_states[N] with last_hidden_state, which already went through the final norm.
  Depth N therefore uses last_hidden_state as is (norming it again would be wrong); depths < N are raw
  residual-stream states and get the model's own final-norm module.
* Block Influence and angular distance need the raw output of layer N, which hidden_states no longer holds,
  so a forward hook on the last block captures it.

Per-layer similarity metrics from the same pass (layer d maps x_{d-1} -> x_d, raw residual states):
* Block Influence (ShortGPT, Men et al. 2024): BI_d = 1 - mean over non-pad tokens of cos(x_{d-1}, x_d).
* Angular distance (Gromov et al. 2024, n = 1): arccos(cos(x_{d-1}, x_d)) / pi at each text's last real token
  (the paper measures at the final token), averaged over texts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .encoder import Encoder, ModelError, find_final_norm, find_layers, pool


@dataclass
class LayerwiseResult:
    """(num_layers, B, D) pooled embeddings per depth plus per-layer metric sums for this batch."""

    embeddings: torch.Tensor
    bi_sum: torch.Tensor  # (N,) sum over tokens of (1 - cos)
    bi_count: int
    ang_sum: torch.Tensor  # (N,) sum over texts of arccos(cos)/pi
    ang_count: int


@dataclass
class MetricAccumulator:
    num_layers: int
    bi_sum: torch.Tensor = field(init=False)
    ang_sum: torch.Tensor = field(init=False)
    bi_count: int = 0
    ang_count: int = 0

    def __post_init__(self) -> None:
        self.bi_sum = torch.zeros(self.num_layers, dtype=torch.float64)
        self.ang_sum = torch.zeros(self.num_layers, dtype=torch.float64)

    def add(self, r: LayerwiseResult) -> None:
        self.bi_sum += r.bi_sum
        self.ang_sum += r.ang_sum
        self.bi_count += r.bi_count
        self.ang_count += r.ang_count

    def block_influence(self) -> list[float]:
        return [float(v) / max(self.bi_count, 1) for v in self.bi_sum]

    def angular_distance(self) -> list[float]:
        return [float(v) / max(self.ang_count, 1) for v in self.ang_sum]


class LayerwiseEncoder:
    def __init__(self, enc: Encoder):
        self.enc = enc
        self.model = enc.model
        _, _, self.layers = find_layers(self.model)
        self.num_layers = len(self.layers)
        self.final_norm = find_final_norm(self.model)

    def _check_final_norm(self, raw_last: torch.Tensor, last_hidden: torch.Tensor) -> None:
        """Every batch proves that norm(raw output of layer N) is what the model outputs.

        If the final norm was not found (an unusual attribute name) or the model does something else after its
        last layer, depths < N would silently differ from truncation; refuse instead of reporting wrong numbers.
        """
        expect = self.final_norm(raw_last) if self.final_norm is not None else raw_last
        if not torch.allclose(expect, last_hidden, rtol=1e-4, atol=1e-4):
            raise ModelError(
                f"cannot reproduce this {type(self.model).__name__}'s output from its last layer "
                f"(final norm found: {type(self.final_norm).__name__ if self.final_norm is not None else 'none'}), "
                "so per-depth losses would not match truncation; this architecture is not supported yet"
            )

    @torch.no_grad()
    def encode_all_depths(self, texts: list, pooling: str) -> LayerwiseResult:
        """texts: strings (documents) or textpipe.Text (with an instruction), through the encoder's text pipeline.
        Pooling is over the embed mask (the text's own tokens); BI and angular distance use every real token."""
        batch = self.enc.tokenize(texts)
        mask = batch["attention_mask"]
        pooled = batch["embed_mask"]
        captured: dict[str, torch.Tensor] = {}

        def hook(_mod, _inp, out):
            captured["last"] = out[0] if isinstance(out, (tuple, list)) else out

        h = self.layers[-1].register_forward_hook(hook)
        try:
            kwargs = self.enc.model_inputs(batch)
            out = self.model(**kwargs, output_hidden_states=True, use_cache=False)
        finally:
            h.remove()
        hs = out.hidden_states
        n = self.num_layers
        if hs is None or len(hs) != n + 1:
            raise RuntimeError(f"expected {n + 1} hidden states from the model, got {None if hs is None else len(hs)}")
        raw = list(hs[:n]) + [captured["last"]]
        self._check_final_norm(raw[n], out.last_hidden_state)

        embs = []
        for d in range(1, n + 1):
            if d == n:
                rep = out.last_hidden_state
            else:
                rep = self.final_norm(hs[d]) if self.final_norm is not None else hs[d]
            embs.append(pool(rep, pooled, pooling))

        # Metrics in float64: 1 - cos is a small difference of numbers near 1.
        m = mask.bool()
        rank = torch.cumsum(mask.long(), 1) * mask.long()
        last_idx = rank.argmax(1)
        rows = torch.arange(mask.shape[0], device=mask.device)
        bi = torch.zeros(n, dtype=torch.float64)
        ang = torch.zeros(n, dtype=torch.float64)
        for d in range(1, n + 1):
            a, b = raw[d - 1].double(), raw[d].double()
            cos = F.cosine_similarity(a, b, dim=-1)  # (B, T)
            bi[d - 1] = (1.0 - cos[m]).sum().cpu()
            c_last = cos[rows, last_idx].clamp(-1.0, 1.0)
            ang[d - 1] = (torch.arccos(c_last) / math.pi).sum().cpu()
        return LayerwiseResult(
            embeddings=torch.stack(embs, 0),
            bi_sum=bi,
            bi_count=int(m.sum()),
            ang_sum=ang,
            ang_count=int(mask.shape[0]),
        )
