"""The analysis sample as the paper's code draws it: random.sample of batchSize x numBatches triples, cut in sampled
order into full batches, per-depth loss = mean over batches of the batch's mean loss; device-dependent defaults,
stored resolved in run.json."""
from __future__ import annotations

import argparse
import json

import pytest

from conftest import validate_run, worker_cli, write_triples
from l3prune import analyze as A
from l3prune.data import read_triples, sample_batches
from l3prune.encoder import load_encoder


def parse(*argv: str) -> A.AnalyzeSpec:
    from l3prune.verbs import add_arguments

    ap = argparse.ArgumentParser()
    add_arguments(ap, A.VERB)
    return A.spec_from_args(ap.parse_args(["--run-dir", "unused", *argv]))


def test_defaults_are_the_papers_sample_on_cuda_and_a_small_one_on_a_cpu(tiny_llama, tiny_triples):
    s = parse("--model", str(tiny_llama), "--data", str(tiny_triples), "--device", "cpu")
    assert (s.samples, s.batchSize, s.taskHomogeneous, s.maxLength) == (256, 16, False, 512)
    assert A.CPU_SAMPLE == {"batchSize": 16, "numBatches": 16} and A.PAPER_SAMPLE == {"batchSize": 64, "numBatches": 100}
    unresolved = A.AnalyzeSpec(model=str(tiny_llama), data=str(tiny_triples))
    assert (unresolved.samples, unresolved.batchSize) == (None, None)
    cuda = A.resolve_sample(unresolved, "cuda")
    assert (cuda.samples, cuda.batchSize) == (6400, 64), "the paper's 64 x 100"
    assert (A.resolve_sample(unresolved, "cuda:1").samples, A.resolve_sample(unresolved, "cpu").samples) == (6400, 256)
    part = A.AnalyzeSpec(model=str(tiny_llama), data=str(tiny_triples), batchSize=32)
    assert (A.resolve_sample(part, "cuda").samples, A.resolve_sample(part, "cpu").samples) == (3200, 512), "batchSize x numBatches"
    part = A.AnalyzeSpec(model=str(tiny_llama), data=str(tiny_triples), samples=100)
    assert A.resolve_sample(part, "cpu").batchSize == 16 and A.resolve_sample(part, "cuda").batchSize == 64
    given = parse("--model", str(tiny_llama), "--data", str(tiny_triples), "--device", "cpu", "--samples", "8", "--batch-size", "4",
                  "--task-homogeneous")
    assert (given.samples, given.batchSize, given.taskHomogeneous) == (8, 4, True)


def test_run_json_stores_the_resolved_sample_and_the_loss_is_the_mean_of_batch_means(tiny_llama, tmp_path, schemas):
    data = write_triples(tmp_path / "t.jsonl", 40)
    run_dir = tmp_path / "run"
    # batchSize 5 alone: samples = 5 x 16 (the CPU's numBatches) = 80, capped at the 40 triples: 8 batches of 5.
    p = worker_cli("analyze", "--run-dir", str(run_dir), "--model", str(tiny_llama), "--data", str(data), "--batch-size", "5",
                   "--max-length", "24", "--device", "cpu", "--seed", "3")
    assert p.returncode == 0, p.stderr
    run, events = validate_run(run_dir, schemas)
    assert (run["spec"]["samples"], run["spec"]["batchSize"], run["spec"]["taskHomogeneous"]) == (80, 5, False)
    assert events[0]["spec"] == run["spec"]
    progress = [e for e in events if e["event"] == "progress"]
    assert [e["samplesDone"] for e in progress] == [5 * i for i in range(1, 9)], "every batch has exactly batchSize triples"
    losses = next(e for e in events if e["event"] == "layer_losses")["losses"]

    # Reference: each batch of the sample analysed on its own (its mean loss per depth), then the mean over batches.
    spec = A.AnalyzeSpec(**run["spec"])
    batches = sample_batches(read_triples(data), spec.samples, spec.batchSize, spec.seed)
    assert len(batches) == 8 and all(len(b) == 5 for b in batches)
    enc = load_encoder(str(tiny_llama), device="cpu", max_length=24)
    per_batch = []
    for k, batch in enumerate(batches):
        f = tmp_path / f"batch{k}.jsonl"
        f.write_text("".join(json.dumps({"query": t.query, "positive": t.positive, "negative": t.negative}) + "\n" for t in batch))
        one = A.run_analyze(A.AnalyzeSpec(**{**run["spec"], "data": str(f), "samples": 5, "batchSize": 5}), lambda *a, **k: None, encoder=enc)
        per_batch.append(one["losses"])
    expected = [sum(b[d] for b in per_batch) / len(per_batch) for d in range(len(losses))]
    assert losses == pytest.approx(expected, abs=1e-5)
