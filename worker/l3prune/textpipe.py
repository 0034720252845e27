"""The one text pipeline every path uses (analyze, train, evaluate, export-onnx and, rebuilt from the manifest,
the extension's onnxruntime-node encoder): the string the model sees and the embed mask that says which of its
tokens are pooled.

The rules, as the paper's code (thennal10/l3prune on McGill-NLP/llm2vec) runs them:

* The string. A query with an instruction is ``"{instruction}; " + text`` (LLM2Vec's E5 data; INSTRUCTION_FORMAT),
  a document is the bare text. If the tokenizer has a chat template and the spec says ``chatTemplate: "auto"``,
  the whole string goes inside the model's own *user turn*: ``chat_prefix + string + chat_suffix``. The paper picks
  that wrapper from a table of model names (and loses it for a model loaded from a local path); we read it from
  ``tokenizer.chat_template`` instead, never from a name, and take only the user turn: a default system prompt the
  template would insert (Qwen2, SmolLM2) is left out, and so is the generation prompt, as in the paper's wrappers.
  The suffix is cut after the end-of-turn marker (trailing whitespace dropped), as the paper's wrappers end.
* Tokenisation. The whole string with special tokens (BOS etc.), truncated at max_length on the tokenizer's
  truncation side, **left-padded** to the longest row.
* The embed mask. ``k = len(tokenizer(text, add_special_tokens=False, truncation=True, max_length=max_length))``,
  the text *alone* (no instruction, no chat wrapper); the pooled positions are the last ``k`` real positions of the
  row. So the instruction, BOS and the chat prefix are in the input (attended to) but out of the pooling. This
  replicates the paper's code exactly, including its quirk: a chat suffix after the text (``<|im_end|>``) IS pooled,
  and then the first ``len(suffix tokens)`` tokens of the text are not; when truncation cut the string's end, the
  last k positions reach back into the instruction. Two guards that the paper lacks and that change nothing for
  ordinary text: k is clamped to the row's real length (the paper would pool padding if the text alone tokenised
  longer than the whole string) and to at least 1 (an empty text would pool nothing and give NaN).
* Positions. Our position ids count real tokens only (encoder.Encoder.model_inputs: cumsum of the attention mask),
  so a row's vector does not depend on how much padding its batch has. The paper passes no position ids, so a
  left-padded row's positions start at its pad count (HF numbers the pads too); its vectors therefore shift with
  the batch's longest text. We keep ours on purpose (batch-invariant embeddings; equal for an unpadded row).

Pooling over the embed mask (encoder.pool): mean over the k pooled tokens, weighted_mean with weights 1..k over
them normalised to sum 1, last_token = the row's last real token (always pooled).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import torch

INSTRUCTION_FORMAT = "{instruction}; "
# LLM2Vec's MTEB encode: the instruction (ending in a colon, mteb_instruction) and a space before the text.
EVAL_INSTRUCTION_FORMAT = "{instruction} "
CHAT_TEMPLATE_MODES = ("auto", "off")
EMBED_MASK_RULE = "last-k"  # the manifest's name for the rule above
# Contents no real template produces, so they can be found in the rendered string.
_SENTINELS = ("\u2983l3prune-user-a\u2984", "\u2983l3prune-assistant-b\u2984", "\u2983l3prune-user-c\u2984")


@dataclass(frozen=True)
class Text:
    """One text to embed: its own words and, for a query, the task instruction put before it."""

    text: str
    instruction: str | None = None
    # Evaluation puts the instruction before the text as LLM2Vec's MTEB encode does ("{instruction} "), training and
    # analysis as the E5 data does ("{instruction}; "); None: the pipeline's own (INSTRUCTION_FORMAT).
    instruction_format: str | None = None


TextLike = Union[str, Text]


def as_text(t: TextLike) -> Text:
    return t if isinstance(t, Text) else Text(t)


def _added_token_strings(tokenizer) -> list[str]:
    found: set[str] = set(getattr(tokenizer, "all_special_tokens", []) or [])
    try:
        found.update(tokenizer.get_added_vocab().keys())
    except Exception:  # noqa: BLE001 - a tokenizer without added tokens
        pass
    return [s for s in found if s]


def _render(tokenizer, messages: list[dict]) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)


def chat_user_turn(tokenizer) -> tuple[str, str] | None:
    """(prefix, suffix) of the user turn of the tokenizer's own chat template, or None without a template.

    How: render one user turn with a sentinel content; what follows the sentinel is the suffix. What precedes it may
    hold a BOS string and a default system turn, so the prefix is the longest common ending of that text and of what
    a second user turn gets between the assistant's reply and it (render user/assistant/user) -- the part every user
    turn starts with. If that common ending starts with the end of the previous turn (Qwen's ``<|im_end|>\\n``, the
    same marker that closes the user turn), it is cut off; a cut inside a special token (``<|begin_of_text|>`` vs
    ``<|eot_id|>`` both end in ``|>``) is moved past it. Templates that refuse the three-turn conversation fall back
    to the one-turn prefix with a leading BOS string removed.
    """
    if not getattr(tokenizer, "chat_template", None):
        return None
    a, b, c = _SENTINELS
    try:
        one = _render(tokenizer, [{"role": "user", "content": a}])
    except Exception:  # noqa: BLE001 - a template that cannot render a user turn has none to give
        return None
    if one.count(a) != 1:
        return None
    before, after = one.split(a)
    suffix = after.rstrip()
    try:
        three = _render(tokenizer, [{"role": "user", "content": a}, {"role": "assistant", "content": b}, {"role": "user", "content": c}])
        between = three.split(b, 1)[1].split(c, 1)[0] if three.count(b) == 1 and three.count(c) == 1 else None
    except Exception:  # noqa: BLE001
        between = None
    if between is None:
        bos = getattr(tokenizer, "bos_token", None)
        prefix = before[len(bos):] if bos and before.startswith(bos) else before
        return prefix, suffix
    n = 0
    while n < min(len(before), len(between)) and before[-1 - n] == between[-1 - n]:
        n += 1
    start = len(before) - n
    # Never start inside a special token of the prefix text.
    for tokstr in _added_token_strings(tokenizer):
        i = before.find(tokstr)
        while i >= 0:
            if i < start < i + len(tokstr):
                start = i + len(tokstr)
            i = before.find(tokstr, i + 1)
    prefix = before[start:]
    end_of_turn = after  # the user turn's own closing, e.g. "<|im_end|>\n"
    if end_of_turn and prefix.startswith(end_of_turn) and len(prefix) > len(end_of_turn):
        prefix = prefix[len(end_of_turn):]
    elif suffix and prefix.startswith(suffix) and len(prefix) > len(suffix):
        prefix = prefix[len(suffix):].lstrip("\n")
    return prefix, suffix


@dataclass(frozen=True)
class TextPipeline:
    """The pipeline's settings for one tokenizer: the chat user turn (None: no wrapper) and the instruction format."""

    chat_prefix: str | None = None
    chat_suffix: str | None = None
    instruction_format: str = INSTRUCTION_FORMAT

    def full_text(self, t: TextLike) -> str:
        """The string the model sees: chat prefix + instruction prefix + text + chat suffix."""
        t = as_text(t)
        form = t.instruction_format or self.instruction_format
        s = (form.format(instruction=t.instruction) if t.instruction else "") + t.text
        if self.chat_prefix is not None:
            s = self.chat_prefix + s + (self.chat_suffix or "")
        return s

    def tokenize(self, tokenizer, texts: Sequence[TextLike], max_length: int) -> dict[str, torch.Tensor]:
        """input_ids, attention_mask (and token_type_ids if the tokenizer gives them), left-padded, plus embed_mask."""
        items = [as_text(t) for t in texts]
        saved = tokenizer.padding_side
        tokenizer.padding_side = "left"  # the paper's padding, always
        try:
            batch = tokenizer([self.full_text(t) for t in items], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        finally:
            tokenizer.padding_side = saved
        ks = [len(tokenizer(t.text, add_special_tokens=False, truncation=True, max_length=max_length)["input_ids"]) for t in items]
        batch["embed_mask"] = embed_mask(batch["attention_mask"], ks)
        return dict(batch)

    def manifest(self) -> dict:
        """How a client rebuilds this pipeline (protocol/encoder-manifest.schema.json, textPipeline)."""
        return {
            "instructionFormat": self.instruction_format,
            "chatPrefix": self.chat_prefix,
            "chatSuffix": self.chat_suffix,
            "embedMask": EMBED_MASK_RULE,
            "paddingSide": "left",
        }


def embed_mask(attention_mask: torch.Tensor, ks: Sequence[int]) -> torch.Tensor:
    """1 on the last k real positions of each row (k clamped to 1..real length), 0 elsewhere; any padding side."""
    real = attention_mask.long()
    lengths = real.sum(1)
    k = torch.tensor(list(ks), dtype=torch.long, device=real.device).clamp_min(1)
    k = torch.minimum(k, lengths)
    rank = torch.cumsum(real, dim=1) * real  # 1..L on real tokens, 0 on padding
    return ((rank > (lengths - k).unsqueeze(1)) & (real > 0)).long()


def pipeline_for(tokenizer, chat_template: str = "auto") -> TextPipeline:
    """The pipeline for this tokenizer: its own chat user turn when it has a template and chat_template is auto."""
    if chat_template not in CHAT_TEMPLATE_MODES:
        raise ValueError(f"chatTemplate must be one of {', '.join(CHAT_TEMPLATE_MODES)}, got {chat_template!r}")
    turn = chat_user_turn(tokenizer) if chat_template == "auto" else None
    return TextPipeline(*(turn or (None, None)))
