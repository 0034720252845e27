"""The gradient cache (train `miniBatchSize`): the gradient of a step is the whole batch's, at a chunk's memory.

The reference is autograd itself: the same batch with every text's graph kept until the loss's backward (no
cache), on a tiny Llama made by the tests, fp32 on CPU.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from conftest import write_triples

BATCH = 8


@pytest.fixture(scope="module")
def data16(tmp_path_factory) -> Path:
    return write_triples(tmp_path_factory.mktemp("gradcache-data") / "triples.jsonl", 16)


def trainer(tiny_llama: Path, data: Path, run_dir: Path, *, dropout: float, mini: int | None):
    from l3prune import distributed as D
    from l3prune.train.loop import Trainer
    from l3prune.train.spec import make_spec
    from l3prune.verbs import StopFlag

    spec = make_spec({"model": str(tiny_llama), "keep": 3, "data": str(data), "batchSize": BATCH, "maxLength": 24,
                      "loraDropout": dropout, "miniBatchSize": mini, "device": "cpu", "precision": "fp32",
                      "gradientCheckpointing": False, "warmupSteps": 0, "learningRate": 1e-3}, source="test")
    t = Trainer(spec, run_dir, D.World(), lambda *a, **k: None, StopFlag())
    t.setup()
    t.wrap()
    return t


def step_gradients(t, batch) -> tuple[float, dict[str, torch.Tensor]]:
    t.opt.zero_grad(set_to_none=True)
    loss, _ = t.accumulate_gradients(batch)
    return loss, {n: p.grad.detach().clone() for n, p in t.peft_model.named_parameters() if p.requires_grad}


def max_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys() and a
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.parametrize("mini", [1, 3, 4])
def test_without_dropout_the_cached_gradient_is_the_full_batch_gradient(tiny_llama, data16, tmp_path, mini):
    t = trainer(tiny_llama, data16, tmp_path / "run", dropout=0.0, mini=None)
    batch = [t.triples[i] for i in t.plan.batch(0)]
    assert len(batch) == BATCH
    loss_full, full = step_gradients(t, batch)
    # Padding each group to its own length changes nothing: one forward of all 3B texts gives the same gradient.
    loss_one, one = one_forward(t, batch)
    assert loss_one == pytest.approx(loss_full, rel=1e-6) and max_diff(one, full) <= 1e-5
    # The same model and LoRA weights, now with the cache (3 does not divide the batch: a short last chunk).
    t.spec = dataclasses.replace(t.spec, miniBatchSize=mini)
    loss_cached, cached = step_gradients(t, batch)
    assert loss_cached == pytest.approx(loss_full, rel=1e-6)
    scale = max(float(g.abs().max()) for g in full.values())
    assert scale > 1e-4, "the step has a gradient to compare"
    assert max_diff(full, cached) <= 1e-5


def one_forward(t, batch) -> tuple[float, dict[str, torch.Tensor]]:
    """Every text of the batch in one forward pass, padded to the longest of all: the most direct reference."""
    from l3prune.data import batch_texts
    from l3prune.train.loop import forward_embeddings

    t.opt.zero_grad(set_to_none=True)
    q, p, n = forward_embeddings(t.enc, t.fwd, batch_texts(batch), t.spec.pooling)[0].chunk(3)
    loss = t.loss_fn(q, p, n)
    loss.backward()
    return float(loss.detach()), {k: v.grad.detach().clone() for k, v in t.peft_model.named_parameters() if v.requires_grad}


def chunked_with_graphs(t, batch, mini: int) -> tuple[float, dict[str, torch.Tensor]]:
    """What the cache must equal with dropout on: the same chunks, in the same order from the same RNG state, but
    every chunk's graph kept until one backward of the loss (no replay needed, so nothing to get wrong)."""
    from l3prune.data import batch_texts
    from l3prune.train.loop import forward_embeddings

    t.opt.zero_grad(set_to_none=True)
    texts, b = batch_texts(batch), len(batch)
    chunks = [texts[g * b + i : g * b + min(i + mini, b)] for g in range(3) for i in range(0, b, mini)]
    emb = torch.cat([forward_embeddings(t.enc, t.fwd, c, t.spec.pooling)[0] for c in chunks])
    q, p, n = emb.chunk(3)
    loss = t.loss_fn(q, p, n)
    loss.backward()
    return float(loss.detach()), {k: v.grad.detach().clone() for k, v in t.peft_model.named_parameters() if v.requires_grad}


def test_with_dropout_each_chunk_replays_its_masks(tiny_llama, data16, tmp_path, monkeypatch):
    t = trainer(tiny_llama, data16, tmp_path / "run", dropout=0.3, mini=2)
    batch = [t.triples[i] for i in t.plan.batch(0)]
    torch.manual_seed(123)
    loss_ref, ref = chunked_with_graphs(t, batch, 2)
    after_ref = torch.get_rng_state()
    torch.manual_seed(123)
    loss_cached, cached = step_gradients(t, batch)
    assert loss_cached == pytest.approx(loss_ref, rel=1e-6)
    assert max_diff(ref, cached) <= 1e-5
    # The generator ends where the uncached pass leaves it, so the next step's masks are the same too.
    assert torch.equal(torch.get_rng_state(), after_ref)
    # Without the replay the second pass draws other masks and the gradient is wrong: the check above can fail.
    from l3prune.train import loop

    monkeypatch.setattr(loop, "_rng_restore", lambda state, device: None)
    torch.manual_seed(123)
    _, unreplayed = step_gradients(t, batch)
    assert max_diff(ref, unreplayed) > 1e-4


def test_a_cached_run_follows_the_uncached_loss_curve(tiny_llama, data16, tmp_path):
    """Three optimizer steps with dropout on: the cached run's losses are those of a run that keeps every chunk's
    graph, step after step (optimizer, schedule and RNG stream stay in lockstep)."""
    cached = trainer(tiny_llama, data16, tmp_path / "a", dropout=0.1, mini=4)
    ref = trainer(tiny_llama, data16, tmp_path / "b", dropout=0.1, mini=4)
    for step in range(3):
        batch = [cached.triples[i] for i in cached.plan.batch(step)]
        torch.manual_seed(1000 + step)
        loss_ref, _ = chunked_with_graphs(ref, batch, 4)
        torch.nn.utils.clip_grad_norm_(ref.params, 1.0)
        ref.opt.step()
        ref.sched.step()
        torch.manual_seed(1000 + step)
        loss_cached, _ = cached.train_step(batch)
        assert loss_cached == pytest.approx(loss_ref, abs=1e-5), step
