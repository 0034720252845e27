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
from .cutstability import cut_stability
from .data import DataError, Triple, read_triples, sample_batches
from .data import batch_texts as data_batch_texts
from .encoder import Encoder, ModelError, load_encoder, model_loaded_fields, resolve_device, resolve_precision
from .layerwise import LayerwiseEncoder, MetricAccumulator
from .losses import HardNegativeInfoNCE
from .verbs import Advice, Job, Outcome, Verb, disk_full_in, main_for


AnalyzeSpec = specs.spec_class("analyze", "AnalyzeSpec", __name__)

# The sample when samples/batchSize are null: the paper's on CUDA (random.sample of 64 x 100 triples, batches of
# 64), a smaller one on a CPU (16 batches of 16) that keeps a run to minutes. run.json stores what was used.
PAPER_SAMPLE = {"batchSize": 64, "numBatches": 100}
CPU_SAMPLE = {"batchSize": 16, "numBatches": 16}


def resolve_sample(spec: AnalyzeSpec, device: str) -> AnalyzeSpec:
    """spec with samples and batchSize filled in for the device (cuda: the paper's sample, cpu: the small one)."""
    if spec.samples is not None and spec.batchSize is not None:
        return spec
    d = PAPER_SAMPLE if device.startswith("cuda") else CPU_SAMPLE
    b = spec.batchSize if spec.batchSize is not None else d["batchSize"]
    n = spec.samples if spec.samples is not None else b * d["numBatches"]
    return AnalyzeSpec(**{**spec.to_json(), "samples": n, "batchSize": b})


def batch_texts(batch: list[Triple]) -> list:
    """Queries, then positives, then negatives (data.batch_texts: queries carry their instruction, which the text
    pipeline puts in the input but out of the pooling); encoded as three groups, one forward pass or more each."""
    return data_batch_texts(batch)


def batch_loss(emb: torch.Tensor, b: int, loss_fn: HardNegativeInfoNCE) -> float:
    """Mean loss over the triples of one batch whose embeddings are ordered as batch_texts()."""
    return float(loss_fn(emb[:b], emb[b : 2 * b], emb[2 * b : 3 * b]))


def run_analyze(
    spec: AnalyzeSpec,
    emit: Callable[..., object],
    *,
    encoder: Encoder | None = None,
) -> dict:
    random.seed(spec.seed)
    torch.manual_seed(spec.seed)
    t0 = time.monotonic()
    device = encoder.device if encoder is not None else resolve_device(spec.device)
    spec = resolve_sample(spec, device)
    triples = read_triples(spec.data, spec.dataColumns)
    batches = sample_batches(triples, spec.samples, spec.batchSize, spec.seed, spec.taskHomogeneous)
    total = sum(len(b) for b in batches)

    precision = resolve_precision(spec.precision, device)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    enc = encoder or load_encoder(spec.model, device=device, max_length=spec.maxLength, trust_remote_code=spec.trustRemoteCode, dtype=dtype)
    enc.set_chat_template(spec.chatTemplate)
    lw = LayerwiseEncoder(enc)
    n = lw.num_layers
    emit("model_loaded", **model_loaded_fields(enc.model, num_layers=n, load_seconds=time.monotonic() - t0, device=device, precision=precision))

    loss_fn = HardNegativeInfoNCE(spec.scale)
    per_batch: list[list[float]] = []
    metrics = MetricAccumulator(n)
    done = 0
    t1 = time.monotonic()
    for i, batch in enumerate(batches, start=1):
        b = len(batch)
        res = lw.encode_all_depths(batch_texts(batch), spec.pooling, groups=3, chunk_size=spec.miniBatchSize)
        per_batch.append([batch_loss(res.embeddings[d], b, loss_fn) for d in range(n)])
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

    # The paper's per-depth loss: the mean over batches of each batch's mean loss.
    losses = [sum(row[d] for row in per_batch) / len(per_batch) for d in range(n)]
    small, large = cut_points(losses)
    # From the same passes: how much each depth's loss varies over batches and how often each cut wins when the
    # batches are resampled (cutstability.py); the panel draws the band and says how sure each cut is.
    stability = cut_stability(per_batch, seed=spec.seed)
    return {
        "losses": losses,
        "small": small,
        "large": large,
        "blockInfluence": metrics.block_influence(),
        "angularDistance": metrics.angular_distance(),
        "cutStability": stability,
        "numLayers": n,
        "samples": total,
        "pooling": spec.pooling,
        "scale": spec.scale,
        "seconds": round(time.monotonic() - t0, 3),
    }


# ---------------------------------------------------------------------------------------------------------------
# the verb
def spec_from_args(args: argparse.Namespace, _world=None) -> AnalyzeSpec:
    spec = AnalyzeSpec(**specs.resolve("analyze", specs.gather("analyze", args), paths=("model", "data")))
    # samples/batchSize null: resolved for the device here, so that run.json and the started event hold the numbers.
    # (The device as the spec names it; whether a requested cuda exists is checked when the model loads.)
    wanted = ("cuda" if torch.cuda.is_available() else "cpu") if spec.device == "auto" else spec.device
    return resolve_sample(spec, wanted)


def _work(spec: AnalyzeSpec, job: Job) -> Outcome:
    result = run_analyze(spec, job.emit)
    losses = {k: result[k] for k in ("losses", "small", "large", "blockInfluence", "angularDistance", "cutStability", "numLayers", "samples", "pooling", "scale")}
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
