"""FLOPs of a training step and MFU, as the resource planner counts them (src/shared/prune/resources.ts).

Useful FLOPs per token of a LoRA step on frozen weights: the forward (2 per weight), the backward's input
gradients (as many again: frozen weights get no weight gradient) and the LoRA weights' gradients; causal attention's
QKᵀ and AV over T/2 positions on average, forward once and backward twice. Recomputation (gradient checkpointing,
the gradient cache's no-graph pass) is not useful work, so MFU leaves it out:

    train:   4·P + 6·n·T·q + 6·P_lora          analyze (forward only):   2·P + 2·n·T·q

P: the kept layers' weights, n: layers, q: the query projection's width (heads × head dim), T: tokens per text.
MFU = useful FLOPs per second / the GPU's dense bf16 peak (protocol/gpu-peaks.json, the planner's table).
"""
from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

PEAKS_FILE = Path(__file__).with_name("protocol") / "gpu-peaks.json"


def useful_flops_per_token(kind: str, *, layer_params: int, layers: int, q_dim: int, seq: float, lora_params: int = 0) -> float:
    if kind == "train":
        return 4.0 * layer_params + 6.0 * layers * seq * q_dim + 6.0 * lora_params
    if kind == "analyze":
        return 2.0 * layer_params + 2.0 * layers * seq * q_dim
    raise ValueError(f"no FLOPs formula for {kind!r}")


@lru_cache(maxsize=1)
def _peaks() -> list[tuple[re.Pattern, str, float]]:
    table = json.loads(PEAKS_FILE.read_text(encoding="utf-8"))
    return [(re.compile(p["match"], re.IGNORECASE), p["name"], float(p["bf16Flops"])) for p in table["peaks"]]


def gpu_peak_bf16(name: str) -> tuple[str, float] | None:
    """(table name, dense bf16 FLOP/s) of a GPU as torch names it, or None for a GPU the table lacks."""
    for pattern, known, flops in _peaks():
        if pattern.search(name):
            return known, flops
    return None


def model_flops_shape(model, layers) -> dict:
    """P (the kept layers' frozen weights), q (query width) and P_lora of a (peft-wrapped) decoder."""
    frozen = sum(p.numel() for layer in layers for p in layer.parameters() if not p.requires_grad)
    lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
    q_dim = 0
    for name, module in layers[0].named_modules():
        weight = getattr(module, "weight", None)
        if name.endswith("q_proj") and weight is not None and weight.dim() == 2:
            q_dim = int(weight.shape[0])
        elif name.endswith("q_proj.base_layer") and weight is not None:
            q_dim = int(weight.shape[0])
    if not q_dim:
        cfg = getattr(model, "config", None)
        q_dim = int(getattr(cfg, "hidden_size", 0) or 0)
    return {"layer_params": frozen, "layers": len(layers), "q_dim": q_dim, "lora_params": lora}
