"""Every depth's pooled representation from ONE forward pass.

Why this equals truncation: a model truncated to its first d layers computes exactly hidden_states[d] of the
full model (the layers after d never influence earlier ones) and then applies its final norm. So depth d's
embedding is pool(final_norm(hidden_states[d])). Two details make that exact:

* A forward hook on every layer takes its raw output (the residual stream, hidden_states[d] of the full model)
  through the model's own final-norm module and pools it at once, so no stack of N hidden states is ever held.
  Depth N uses the model's last_hidden_state, which already went through the final norm (norming it again would
  be wrong); each batch checks that norm(raw output of layer N) reproduces it.

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

from .data import text_chunks
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
    def encode_all_depths(self, texts: list, pooling: str, *, groups: int = 1, chunk_size: int | None = None) -> LayerwiseResult:
        """texts: strings (documents) or textpipe.Text (with an instruction), through the encoder's text pipeline.
        Pooling is over the embed mask (the text's own tokens); BI and angular distance use every real token.

        texts holds `groups` equal groups (analyze: queries, positives, negatives), each encoded on its own and
        padded to its own longest text, as the paper's code does, in forward passes of at most chunk_size texts;
        the embeddings come back in the order of texts, so the loss is that of the whole batch either way."""
        parts = [self._encode(chunk, pooling) for chunk in text_chunks(texts, groups, chunk_size)]
        return LayerwiseResult(
            embeddings=torch.cat([r.embeddings for r in parts], dim=1),
            bi_sum=sum((r.bi_sum for r in parts), torch.zeros(self.num_layers, dtype=torch.float64)),
            bi_count=sum(r.bi_count for r in parts),
            ang_sum=sum((r.ang_sum for r in parts), torch.zeros(self.num_layers, dtype=torch.float64)),
            ang_count=sum(r.ang_count for r in parts),
        )

    def _encode(self, texts: list, pooling: str) -> LayerwiseResult:
        """One forward pass. Every depth is pooled the moment its layer has run (forward hooks), and only the
        (B, D) pooled vectors are kept, never the stack of N hidden states: memory grows with one layer's states."""
        batch = self.enc.tokenize(texts)
        mask = batch["attention_mask"]
        pooled = batch["embed_mask"]
        n = self.num_layers
        real = mask.bool()
        last_idx = (torch.cumsum(mask.long(), 1) * mask.long()).argmax(1)
        rows = torch.arange(mask.shape[0], device=mask.device)
        embs: list[torch.Tensor | None] = [None] * n
        bi = torch.zeros(n, dtype=torch.float64)
        ang = torch.zeros(n, dtype=torch.float64)
        state: dict[str, torch.Tensor] = {}

        def layer_input(_mod, args, kwargs):
            state["prev"] = args[0] if args else kwargs["hidden_states"]

        def layer_output(d: int):
            def hook(_mod, _inp, out):
                raw = out[0] if isinstance(out, (tuple, list)) else out
                rep = self.final_norm(raw) if self.final_norm is not None else raw
                embs[d] = pool(rep.float(), pooled, pooling)
                # Metrics in float64: 1 - cos is a small difference of numbers near 1.
                cos = F.cosine_similarity(state["prev"].double(), raw.double(), dim=-1)  # (B, T)
                bi[d] = (1.0 - cos[real]).sum().cpu()
                ang[d] = (torch.arccos(cos[rows, last_idx].clamp(-1.0, 1.0)) / math.pi).sum().cpu()
                state["prev"] = raw

            return hook

        handles = [self.layers[0].register_forward_pre_hook(layer_input, with_kwargs=True)]
        handles += [layer.register_forward_hook(layer_output(d)) for d, layer in enumerate(self.layers)]
        try:
            out = self.model(**self.enc.model_inputs(batch), use_cache=False)
        finally:
            for h in handles:
                h.remove()
        if any(e is None for e in embs):
            raise RuntimeError(f"only {sum(e is not None for e in embs)} of {n} layers ran in the forward pass")
        self._check_final_norm(state["prev"], out.last_hidden_state)
        # Depth N is the model's own output (already normed), as a model truncated to N layers gives it.
        embs[n - 1] = pool(out.last_hidden_state.float(), pooled, pooling)
        return LayerwiseResult(
            embeddings=torch.stack(embs, 0),  # type: ignore[arg-type]
            bi_sum=bi,
            bi_count=int(real.sum()),
            ang_sum=ang,
            ang_count=int(mask.shape[0]),
        )
