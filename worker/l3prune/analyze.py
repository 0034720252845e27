"""The `analyze` verb: initial layer-wise contrastive loss of every depth, cut points, layer metrics."""
from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from .cutrule import cut_points
from .data import Triple, read_triples, sample_batches
from .encoder import POOLINGS, Encoder, load_encoder
from .layerwise import LayerwiseEncoder, MetricAccumulator
from .losses import HardNegativeInfoNCE


@dataclass
class AnalyzeSpec:
    model: str
    data: str
    samples: int = 256  # the paper uses 6400; 256 keeps a CPU run to minutes and the curve's shape stable
    batchSize: int = 16
    pooling: str = "weighted_mean"
    scale: float = 50.0
    maxLength: int = 128
    seed: int = 0
    device: str = "cpu"
    trustRemoteCode: bool = False

    def validate(self) -> None:
        types = {"model": str, "data": str, "samples": int, "batchSize": int, "pooling": str, "scale": (int, float),
                 "maxLength": int, "seed": int, "device": str, "trustRemoteCode": bool}
        for name, t in types.items():
            v = getattr(self, name)
            # bool is an int in Python; a spec saying "samples": true is a mistake, not 1.
            if not isinstance(v, t) or (isinstance(v, bool) and t is not bool):
                raise ValueError(f"spec field '{name}' must be {getattr(t, '__name__', 'a number')}, got {v!r}")
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}, got {self.pooling!r}")
        if self.samples < 1:
            raise ValueError(f"samples must be at least 1, got {self.samples}")
        if self.batchSize < 1:
            raise ValueError(f"batch size must be at least 1, got {self.batchSize}")
        if not self.scale > 0:
            raise ValueError(f"scale must be positive, got {self.scale}")
        if self.maxLength < 2:
            raise ValueError(f"max length must be at least 2, got {self.maxLength}")
        if self.device not in ("cpu", "cuda") and not self.device.startswith("cuda:"):
            raise ValueError(f"device must be cpu or cuda, got {self.device!r}")

    def to_json(self) -> dict:
        return asdict(self)


def batch_texts(batch: list[Triple]) -> list[str]:
    """Queries, then positives, then negatives: one padded forward for the whole triple batch."""
    return [t.query_text() for t in batch] + [t.positive for t in batch] + [t.negative for t in batch]


def batch_loss(emb: torch.Tensor, b: int, loss_fn: HardNegativeInfoNCE) -> float:
    """Summed (not mean) loss of one batch whose embeddings are ordered as batch_texts()."""
    return float(loss_fn(emb[:b], emb[b : 2 * b], emb[2 * b : 3 * b], reduction="sum"))


def run_analyze(
    spec: AnalyzeSpec,
    emit: Callable[..., object],
    *,
    encoder: Encoder | None = None,
) -> dict:
    spec.validate()
    random.seed(spec.seed)
    torch.manual_seed(spec.seed)
    triples = read_triples(spec.data)
    batches = sample_batches(triples, spec.samples, spec.batchSize, spec.seed)
    total = sum(len(b) for b in batches)

    t0 = time.monotonic()
    enc = encoder or load_encoder(spec.model, device=spec.device, max_length=spec.maxLength, trust_remote_code=spec.trustRemoteCode)
    lw = LayerwiseEncoder(enc)
    n = lw.num_layers
    emit(
        "model_loaded",
        numLayers=n,
        modelType=str(getattr(enc.model.config, "model_type", "unknown")),
        hiddenSize=int(getattr(enc.model.config, "hidden_size", 0) or 0),
        finalNorm=type(lw.final_norm).__name__ if lw.final_norm is not None else None,
        loadSeconds=round(time.monotonic() - t0, 3),
    )

    loss_fn = HardNegativeInfoNCE(spec.scale)
    sums = [0.0] * n
    metrics = MetricAccumulator(n)
    done = 0
    t1 = time.monotonic()
    for i, batch in enumerate(batches, start=1):
        b = len(batch)
        res = lw.encode_all_depths(batch_texts(batch), spec.pooling)
        for d in range(n):
            sums[d] += batch_loss(res.embeddings[d], b, loss_fn)
        metrics.add(res)
        done += b
        emit(
            "progress",
            batch=i,
            batches=len(batches),
            samplesDone=done,
            samples=total,
            elapsedSeconds=round(time.monotonic() - t1, 3),
        )

    losses = [s / total for s in sums]
    small, large = cut_points(losses)
    return {
        "losses": losses,
        "small": small,
        "large": large,
        "blockInfluence": metrics.block_influence(),
        "angularDistance": metrics.angular_distance(),
        "numLayers": n,
        "samples": total,
        "pooling": spec.pooling,
        "scale": spec.scale,
        "seconds": round(time.monotonic() - t0, 3),
    }
