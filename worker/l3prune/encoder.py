"""Loading a local Hugging Face model as a text encoder: safetensors only, pruning, pooling.

Nothing here knows an architecture by name. The layer stack is found as the ModuleList whose length is
config.num_hidden_layers, and the final norm by a short list of attribute names that cover the common
families; models without a final norm (BERT-style post-LN) get the identity, which is what truncating them
yields too.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from .fileio import JsonFileError, read_json
from .textpipe import TextLike, TextPipeline, pipeline_for

POOLINGS = ("mean", "weighted_mean", "last_token")
FINAL_NORM_NAMES = ("norm", "final_layernorm", "final_layer_norm", "ln_f", "norm_f", "final_norm", "ln_final")
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.pth", "tf_model.h5", "flax_model.msgpack")


class ModelError(Exception):
    """The model folder cannot be used; the message says which folder and what to do."""


def check_model_dir(path: str | Path) -> Path:
    p = Path(path)
    if not p.is_dir():
        raise ModelError(f"model folder {p} does not exist; pass a local Hugging Face model folder with --model")
    if not (p / "config.json").is_file():
        raise ModelError(f"model folder {p} has no config.json; it must be a Hugging Face model folder (save_pretrained)")
    has_st = any(p.glob("*.safetensors")) or (p / "model.safetensors.index.json").is_file()
    if not has_st:
        pickles = [n for n in PICKLE_WEIGHTS if (p / n).exists()] + [q.name for q in p.glob("*.bin")]
        if pickles:
            raise ModelError(
                f"model folder {p} holds only pickle weights ({pickles[0]}), which can run arbitrary code when loaded; "
                "convert it to safetensors (model.save_pretrained(dir, safe_serialization=True)) and try again"
            )
        raise ModelError(f"model folder {p} has no *.safetensors weights; save the model with safe_serialization=True")
    return p


def resolve_device(device: str, *, local_rank: int | None = None) -> str:
    """The device every verb means by a spec's device: auto is cuda when a CUDA device is available, else cpu.
    local_rank (torchrun): each process takes its own GPU, cuda:LOCAL_RANK."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ModelError("device cuda was requested but no CUDA device is available; use --device cpu")
        if local_rank is not None:
            return f"cuda:{local_rank}"
    return device


def resolve_precision(precision: str, device: str) -> str:
    """A spec's precision: auto is bf16 on a CUDA device that supports it (the paper's weights), else fp32."""
    if precision == "auto":
        return "bf16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "fp32"
    return precision


def model_loaded_fields(model: nn.Module, *, num_layers: int, load_seconds: float, **extra) -> dict:
    """The model_loaded event's fields (protocol/events.schema.json), the same for every verb; extra adds the
    verb's own (originalNumLayers, device, precision, ...)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = base.config
    norm = find_final_norm(base)
    return {
        "numLayers": num_layers,
        "modelType": str(getattr(cfg, "model_type", "unknown")),
        "hiddenSize": int(getattr(cfg, "hidden_size", 0) or 0),
        "finalNorm": type(norm).__name__ if norm is not None else None,
        "loadSeconds": round(load_seconds, 3),
        **extra,
    }


def find_layers(model: nn.Module) -> tuple[nn.Module, str, nn.ModuleList]:
    """(parent module, attribute name, the ModuleList of transformer blocks)."""
    n = getattr(model.config, "num_hidden_layers", None)
    best = None
    for name, mod in model.named_modules():
        if isinstance(mod, nn.ModuleList) and len(mod) == n and n:
            # Shortest dotted name wins: the main stack sits above any nested per-layer lists.
            if best is None or name.count(".") < best[0].count("."):
                best = (name, mod)
    if best is None:
        raise ModelError(f"cannot find the layer stack: no ModuleList of length num_hidden_layers={n} in {type(model).__name__}")
    name = best[0]
    parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
    return parent, name.rpartition(".")[2], best[1]


def find_final_norm(model: nn.Module) -> nn.Module | None:
    """The model's own final norm, found on the base model (never re-implemented here)."""
    base = getattr(model, "base_model", model)
    for root in (base, model):
        for attr in FINAL_NORM_NAMES:
            m = getattr(root, attr, None)
            if isinstance(m, nn.Module):
                return m
        for wrapper in ("decoder", "transformer", "model"):
            w = getattr(root, wrapper, None)
            if isinstance(w, nn.Module):
                for attr in FINAL_NORM_NAMES:
                    m = getattr(w, attr, None)
                    if isinstance(m, nn.Module):
                        return m
    return None


def prune(model: nn.Module, n: int) -> nn.Module:
    """Keep the first n layers in place: the paper's `model.layers = model.layers[:n]` and config update."""
    parent, attr, layers = find_layers(model)
    if not 1 <= n <= len(layers):
        raise ValueError(f"cannot keep {n} layers of {len(layers)}")
    setattr(parent, attr, layers[:n])
    model.config.num_hidden_layers = n
    # Newer configs carry one entry per layer (sliding/full attention); keep it aligned with the stack.
    lt = getattr(model.config, "layer_types", None)
    if isinstance(lt, list) and len(lt) > n:
        model.config.layer_types = lt[:n]
    return model


def pool(hidden: torch.Tensor, mask: torch.Tensor, pooling: str) -> torch.Tensor:
    """Pool (B, T, D) token states over the positions `mask` marks; works for left and right padding alike.

    `mask` is the text pipeline's embed mask (textpipe.py: the last k real positions, the text's own tokens), so
    the instruction, BOS and a chat prefix are attended to but not pooled, as in the paper's code. Any 0/1 mask
    works (an attention mask pools every real token).

    weighted_mean is the position-weighted mean of SGPT / L³Prune: the j-th pooled token gets weight j (1..k,
    normalised), so later tokens, which have seen more of the text through causal attention, count more.
    last_token is the last pooled position, which is the row's last real token.
    """
    m = mask.to(hidden.dtype)
    if pooling == "mean":
        return (hidden * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp_min(1)
    # Rank of each real token among the real tokens (1..L), 0 on padding, whatever side the padding is on.
    rank = torch.cumsum(mask.long(), dim=1) * mask.long()
    if pooling == "weighted_mean":
        w = rank.to(hidden.dtype)
        return (hidden * w.unsqueeze(-1)).sum(1) / w.sum(1, keepdim=True).clamp_min(1)
    if pooling == "last_token":
        idx = rank.argmax(dim=1)
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), idx]
    raise ValueError(f"unknown pooling {pooling!r}; use one of {', '.join(POOLINGS)}")


@dataclass
class Encoder:
    model: nn.Module
    tokenizer: object
    max_length: int = 128
    device: str = "cpu"
    # The one text pipeline (textpipe.py): chat user turn, instruction prefix, left padding, embed mask.
    pipeline: TextPipeline = field(default_factory=TextPipeline)

    @property
    def num_layers(self) -> int:
        return len(find_layers(self.model)[2])

    def tokenize(self, texts: Sequence[TextLike]) -> dict[str, torch.Tensor]:
        """input_ids, attention_mask, embed_mask (and token_type_ids) through the text pipeline; a plain string is
        a document (no instruction), a textpipe.Text may carry one."""
        batch = self.pipeline.tokenize(self.tokenizer, list(texts), self.max_length)
        return {k: v.to(self.device) for k, v in batch.items()}

    def model_inputs(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if "token_type_ids" in batch and _accepts(self.model, "token_type_ids"):
            inputs["token_type_ids"] = batch["token_type_ids"]
        # Positions counted over real tokens only, so a left-padded text gets the same positions as a
        # right-padded or unpadded one (HF decoders otherwise number the pads too, which is what the paper's
        # left-padded rows get: positions shifted by the pad count; textpipe.py explains the choice). Skipped for absolute-position
        # encoders with a pad offset (RoBERTa), which compute their own from input_ids.
        if _accepts(self.model, "position_ids") and getattr(self.model.config, "model_type", "") not in ("roberta", "xlm-roberta", "camembert"):
            pos = (torch.cumsum(batch["attention_mask"], dim=1) - 1).clamp_min(0)
            inputs["position_ids"] = pos
        return inputs

    @torch.no_grad()
    def encode(self, texts: Sequence[TextLike], pooling: str) -> torch.Tensor:
        batch = self.tokenize(texts)
        out = self.model(**self.model_inputs(batch), use_cache=False) if _accepts(self.model, "use_cache") else self.model(**self.model_inputs(batch))
        return pool(out.last_hidden_state, batch["embed_mask"], pooling)

    def set_chat_template(self, mode: str) -> None:
        """The spec's chatTemplate: "auto" wraps texts in the tokenizer's own chat user turn when it has a template."""
        self.pipeline = pipeline_for(self.tokenizer, mode)


def _accepts(model: nn.Module, name: str) -> bool:
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()) and name in ("position_ids", "use_cache")


def attention_implementation(device: str, dtype: torch.dtype) -> str:
    """FlashAttention-2 where transformers can use it (the flash-attn package, a CUDA device of compute capability
    8 or more, half precision): unpadded attention, no compute on padding; else SDPA, which on CUDA runs fused
    kernels and never keeps an L x L score matrix (what the resource planner assumes)."""
    import importlib.util

    if device.startswith("cuda") and dtype in (torch.bfloat16, torch.float16) and importlib.util.find_spec("flash_attn") is not None:
        if torch.cuda.get_device_capability(device)[0] >= 8:
            return "flash_attention_2"
    return "sdpa"


def load_encoder(
    model_dir: str | Path,
    *,
    device: str = "cpu",
    max_length: int = 128,
    trust_remote_code: bool = False,
    dtype: torch.dtype = torch.float32,
    chat_template: str = "auto",
    attn_implementation: str | None = None,
) -> Encoder:
    p = check_model_dir(model_dir)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("device cuda was requested but no CUDA device is available; use --device cpu")
    try:
        cfg = read_json(p / "config.json")
    except JsonFileError as e:
        raise ModelError(f"model folder {p}: config.json {e.problem}; re-save the model") from None
    if not isinstance(cfg, dict):
        raise ModelError(f"model folder {p}: config.json does not hold a JSON object; re-save the model")
    if cfg.get("auto_map") and not trust_remote_code:
        raise ModelError(
            f"model folder {p} needs its own Python code (config.json has auto_map); rerun with --trust-remote-code "
            "only if you trust that code"
        )
    from transformers import AutoModel, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(p, trust_remote_code=trust_remote_code, local_files_only=True)
    except Exception as e:  # noqa: BLE001 - transformers raises many types; the user needs one sentence
        raise ModelError(f"model folder {p}: cannot load its tokenizer ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); it needs tokenizer files saved with the model") from None
    if tok.pad_token is None:
        # Decoder tokenizers often lack a pad token; padding is masked out, so any id is safe.
        tok.pad_token = tok.eos_token or tok.unk_token
    try:
        model = AutoModel.from_pretrained(
            p, dtype=dtype, use_safetensors=True, trust_remote_code=trust_remote_code, local_files_only=True,
            **({"attn_implementation": attn_implementation} if attn_implementation else {}),
        )
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"model folder {p}: cannot load the model ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    model.eval().to(device)
    return Encoder(model=model, tokenizer=tok, max_length=max_length, device=device, pipeline=pipeline_for(tok, chat_template))
