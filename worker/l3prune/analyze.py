"""The `analyze` verb: initial layer-wise contrastive loss of every depth, cut points, layer metrics.

    python -m l3prune analyze --run-dir DIR --model MODEL_DIR --data FILE.jsonl [--spec FILE] [flags of
        protocol/specs/analyze.schema.json]

Events (protocol/events.schema.json): started, model_loaded, one progress per batch of triples (all depths at
once), and finally layer_losses, whose cut points run.json's result repeats; error/cancelled as every verb.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from typing import Callable

import torch

from . import specs
from .cutrule import cut_points
from .data import DataError, Triple, read_triples, sample_batches
from .encoder import Encoder, ModelError, load_encoder, model_loaded_fields, resolve_device
from .layerwise import LayerwiseEncoder, MetricAccumulator
from .losses import HardNegativeInfoNCE
from .verbs import Advice, Job, Outcome, Verb, disk_full_in, main_for


AnalyzeSpec = specs.spec_class("analyze", "AnalyzeSpec", __name__)


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
    random.seed(spec.seed)
    torch.manual_seed(spec.seed)
    triples = read_triples(spec.data)
    batches = sample_batches(triples, spec.samples, spec.batchSize, spec.seed)
    total = sum(len(b) for b in batches)

    t0 = time.monotonic()
    device = encoder.device if encoder is not None else resolve_device(spec.device)
    enc = encoder or load_encoder(spec.model, device=device, max_length=spec.maxLength, trust_remote_code=spec.trustRemoteCode)
    lw = LayerwiseEncoder(enc)
    n = lw.num_layers
    emit("model_loaded", **model_loaded_fields(enc.model, num_layers=n, load_seconds=time.monotonic() - t0, device=device))

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


# ---------------------------------------------------------------------------------------------------------------
# the verb
def spec_from_args(args: argparse.Namespace, _world=None) -> AnalyzeSpec:
    return AnalyzeSpec(**specs.resolve("analyze", specs.gather("analyze", args), paths=("model", "data")))


def _work(spec: AnalyzeSpec, job: Job) -> Outcome:
    result = run_analyze(spec, job.emit)
    losses = {k: result[k] for k in ("losses", "small", "large", "blockInfluence", "angularDistance", "numLayers", "samples", "pooling", "scale")}
    return Outcome("layer_losses", losses, {k: result[k] for k in ("small", "large", "numLayers", "seconds")})


VERB = Verb(
    name="analyze",
    help="initial layer-wise contrastive loss of every depth and the L³Prune cut points",
    resolve=spec_from_args,
    work=_work,
    advice=lambda job: Advice(out_of_memory="ran out of memory; lower --batch-size or --max-length",
                              disk_full=disk_full_in(job.args.run_dir, "free some space and analyze again")),
    user_errors=(DataError, ModelError, ValueError),
)


def main(argv: list[str] | None = None) -> int:
    return main_for(VERB, argv)


if __name__ == "__main__":
    sys.exit(main())
