"""The paper's text pipeline and pooling, written for the tests from /work/shared/PAPER.md ("Text format and the embed
mask", "Weighted mean") and LLM2Vec's code as it reads there -- deliberately NOT calling l3prune.textpipe or
l3prune.encoder.pool, so that the tests compare our pipeline with an independent reading of the rule.

* string: [wrapper prefix] + ("{instruction}; " if an instruction) + text + [wrapper suffix]
* tokenise the whole string with special tokens, truncation at max_length, left padding
* embed mask: e_m = zeros(T); e_m[-k:] = 1 with k = len(tokenizer(text, add_special_tokens=False,
  truncation=True, max_length=max_length).input_ids)  (LLM2Vec.tokenize)
* pooling (LLM2Vec.get_pooling with skip_instruction): seq_len = e_m.sum(); mean of the last seq_len positions;
  weighted mean with weights 1..seq_len on them, normalised; last token = position -1.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch


def paper_inputs(tok, items: list[tuple[str | None, str]], max_length: int, wrapper: tuple[str, str] | None = None) -> dict:
    tok.padding_side = "left"
    strings = []
    for instruction, text in items:
        s = (f"{instruction}; " if instruction else "") + text
        if wrapper is not None:
            s = wrapper[0] + s + wrapper[1]
        strings.append(s)
    enc = tok(strings, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    em = torch.zeros_like(enc["attention_mask"])
    for i, (_, text) in enumerate(items):
        k = len(tok(text, add_special_tokens=False, truncation=True, max_length=max_length)["input_ids"])
        if k > 0:
            em[i, -k:] = 1
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "embed_mask": em, "strings": strings}


def paper_pool(hidden: torch.Tensor, embed_mask: torch.Tensor, mode: str) -> torch.Tensor:
    lengths = embed_mask.sum(-1).tolist()
    if mode == "mean":
        return torch.stack([hidden[i, -n:].mean(0) for i, n in enumerate(lengths)])
    if mode == "weighted_mean":
        w = torch.zeros(hidden.shape[:2], dtype=hidden.dtype)
        for i, n in enumerate(lengths):
            w[i, -n:] = torch.arange(n, dtype=hidden.dtype) + 1
            w[i] /= w[i].sum()
        return (hidden * w.unsqueeze(-1)).sum(1)
    if mode == "last_token":
        return hidden[:, -1]
    raise ValueError(mode)


def real_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Our deliberate deviation (textpipe.py): position ids over real tokens only; the paper's would start at the
    pad count. Used by the references so the comparison isolates the pipeline and pooling."""
    return (attention_mask.cumsum(1) - 1).clamp_min(0)


# Hand-written chat templates in the style of two families, for tokenizers the tests build.
QWEN_STYLE_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
LLAMA3_STYLE_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
CHAT_TOKENS = {"qwen": ["<|im_start|>", "<|im_end|>"], "llama3": ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]}
# What the paper's wrapper table gives these families (PAPER.md), and so what our extraction must find.
EXPECTED_TURN = {"qwen": ("<|im_start|>user\n", "<|im_end|>"), "llama3": ("<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>")}


def make_tiny_variant(path: Path, *, bos: bool = False, chat: str | None = None, num_layers: int = 4) -> Path:
    """conftest.make_tiny_llama, then: bos=True makes its tokenizer put a BOS ([EOS], id 2, the config's
    bos_token_id) before every text; chat="qwen"/"llama3" adds that family's special tokens as vocabulary of the
    model (the embedding grows) and its chat template."""
    from conftest import make_tiny_llama
    from tokenizers import processors
    from transformers import AutoTokenizer, LlamaForCausalLM

    make_tiny_llama(path, num_layers=num_layers)
    tok = AutoTokenizer.from_pretrained(path)
    if bos:
        tok._tokenizer.post_processor = processors.TemplateProcessing(single="[EOS] $A", pair="[EOS] $A $B", special_tokens=[("[EOS]", 2)])
        tok.bos_token = "[EOS]"
        tok.add_bos_token = True
    if chat:
        tok.add_special_tokens({"additional_special_tokens": CHAT_TOKENS[chat]})
        tok.chat_template = QWEN_STYLE_TEMPLATE if chat == "qwen" else LLAMA3_STYLE_TEMPLATE
        if chat == "llama3":
            tok.bos_token = "<|begin_of_text|>"
        model = LlamaForCausalLM.from_pretrained(path)
        model.resize_token_embeddings(len(tok))
        torch.manual_seed(1)
        with torch.no_grad():
            model.get_input_embeddings().weight[-len(CHAT_TOKENS[chat]):].normal_(0, 0.2)
        model.save_pretrained(path, safe_serialization=True)
    tok.save_pretrained(path)
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["vocab_size"] >= len(tok)
    return path
