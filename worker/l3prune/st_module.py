"""The input module of an exported sentence-transformers folder (export_st.py copies this file into it as
l3prune_st.py): the L³Prune text pipeline (worker/l3prune/textpipe.py) on top of the stock Transformer module.

Why a module of our own: stock ``Pooling(include_prompt=False)`` pools every token after the prompt, with
weighted-mean weights counted from the row's first token. The pipeline pools the *last k* tokens of the row,
k = the text's own token count, weights 1..k over them, and wraps every text in the model's chat user turn
(prefix before, suffix after; the suffix is pooled, as in the paper's code). On the demo model stock pooling lands at
cosine 0.57 to 0.84 from the worker's embeddings. So this module builds the worker's string, tokenises it as the
worker does (right padding here: with causal attention and positions 0..n-1 for the real tokens that equals the
worker's left padding with positions counted over real tokens), and hands the stock Pooling module the embed
mask in place of the attention mask, after the backbone ran with the real one. Stock Pooling then computes
exactly the pipeline's mean, weighted mean (its weights restart at the first pooled token) or last token.

Loading it runs this file, so SentenceTransformer needs trust_remote_code=True; it imports only torch and
sentence_transformers, and this is all the code it runs. It must not import l3prune: the folder has to load
where the worker is not installed.
"""
from __future__ import annotations

from typing import Any, Sequence

import torch
from sentence_transformers.sentence_transformer.modules import Transformer


def embed_mask(attention_mask: torch.Tensor, ks: Sequence[int]) -> torch.Tensor:
    """1 on the last k real positions of each row (k clamped to 1..real length), 0 elsewhere; any padding side
    (the rule of textpipe.embed_mask)."""
    real = attention_mask.long()
    lengths = real.sum(1)
    k = torch.tensor(list(ks), dtype=torch.long, device=real.device).clamp_min(1)
    k = torch.minimum(k, lengths)
    rank = torch.cumsum(real, dim=1) * real
    return ((rank > (lengths - k).unsqueeze(1)) & (real > 0)).long()


class L3PruneTransformer(Transformer):
    """Transformer + the L³Prune text pipeline: chat user turn, the prompt as the instruction prefix, pooling over
    the text's own tokens (embed mask). ``text_pipeline`` is the worker's TextPipeline.manifest()."""

    config_keys = [*Transformer.config_keys, "text_pipeline"]

    def __init__(self, model_name_or_path: str, *args: Any, text_pipeline: dict | None = None, **kwargs: Any) -> None:
        super().__init__(model_name_or_path, *args, **kwargs)
        self.text_pipeline = dict(text_pipeline or {})

    def get_config_dict(self) -> dict[str, Any]:
        return {**super().get_config_dict(), "text_pipeline": self.text_pipeline}

    def full_text(self, text: str, prompt: str | None) -> str:
        """textpipe.TextPipeline.full_text: chat prefix + prompt (the formatted instruction) + text + chat suffix."""
        s = (prompt or "") + text
        prefix = self.text_pipeline.get("chatPrefix")
        if prefix is not None:
            s = prefix + s + (self.text_pipeline.get("chatSuffix") or "")
        return s

    def preprocess(self, inputs: Sequence[Any], prompt: str | None = None, **kwargs: Any) -> dict[str, Any]:
        if not inputs:
            return {}
        texts = [x if isinstance(x, str) else str(x) for x in inputs]
        tok = self.tokenizer
        limit = self.max_seq_length
        saved = tok.padding_side
        tok.padding_side = "right"
        try:
            batch = tok([self.full_text(t, prompt) for t in texts], padding=True, truncation=True, max_length=limit, return_tensors="pt")
        finally:
            tok.padding_side = saved
        ks = [len(tok(t, add_special_tokens=False, truncation=True, max_length=limit)["input_ids"]) for t in texts]
        out = dict(batch)
        out["embed_mask"] = embed_mask(batch["attention_mask"], ks)
        out["modality"] = "text"
        return out

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        pooled = features.pop("embed_mask", None)
        features = super().forward(features, **kwargs)
        if pooled is not None:
            # The backbone attended to every real token; pooling sees only the text's own.
            features["attention_mask"] = pooled.to(features["attention_mask"].device)
        return features
