"""The invariant the whole tool rests on: analyze's loss at depth n IS the loss of the model pruned to n layers."""
from __future__ import annotations

import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from conftest import DEMO_TRIPLES, TRIPLES, write_triples
from paper_reference import make_tiny_variant, paper_inputs, paper_pool, real_positions
from l3prune.analyze import AnalyzeSpec, batch_texts, run_analyze
from l3prune.data import read_triples, sample_batches
from l3prune.losses import HardNegativeInfoNCE

# The demo model (SmolLM2-Instruct) has a ChatML template; the paper wraps such a model's texts in its user turn
# (PAPER.md's Qwen2 row), and the worker's chatTemplate "auto" does too.
CHATML_USER = ("<|im_start|>user\n", "<|im_end|>")


def reference_embeddings(model, tok, batch, max_length: int, pooling: str, wrapper=None) -> torch.Tensor:
    """The paper's text pipeline and pooling (paper_reference.py, written from PAPER.md, none of our code): queries
    with "{instruction}; ", documents bare, pooled over the last k positions (k = the text's own tokens)."""
    items = [(t.instruction, t.query) for t in batch] + [(None, t.positive) for t in batch] + [(None, t.negative) for t in batch]
    enc = paper_inputs(tok, items, max_length, wrapper)
    kwargs = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "position_ids": real_positions(enc["attention_mask"])}
    out = model(**kwargs, use_cache=False) if "use_cache" in model.forward.__code__.co_varnames else model(**kwargs)
    return paper_pool(out.last_hidden_state, enc["embed_mask"], pooling)


def truncated_loss(model_dir, n: int, spec: AnalyzeSpec) -> float:
    """Load the model afresh, prune it with the paper's lines, and compute the loss with no layerwise code."""
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32, use_safetensors=True).eval()
    model.layers = model.layers[:n]
    model.config.num_hidden_layers = n
    tok = AutoTokenizer.from_pretrained(model_dir)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    loss_fn = HardNegativeInfoNCE(spec.scale)
    batches = sample_batches(read_triples(spec.data), spec.samples, spec.batchSize, spec.seed)
    total, count = 0.0, 0
    with torch.no_grad():
        for batch in batches:
            b = len(batch)
            emb = reference_embeddings(model, tok, batch, spec.maxLength, spec.pooling)
            total += loss_fn(emb[:b], emb[b : 2 * b], emb[2 * b :], reduction="sum").item()
            count += b
    return total / count


def analyze(spec: AnalyzeSpec) -> dict:
    return run_analyze(spec, lambda *a, **k: None)


@pytest.mark.parametrize("pooling", ["weighted_mean", "mean", "last_token"])
def test_tiny_llama_reports_the_same_loss_as_a_truly_pruned_model(tiny_llama, tiny_triples, pooling):
    spec = AnalyzeSpec(model=str(tiny_llama), data=str(tiny_triples), samples=12, batchSize=5, pooling=pooling)
    res = analyze(spec)
    assert len(res["losses"]) == 4
    for n in (1, 2, 3, 4):
        assert res["losses"][n - 1] == pytest.approx(truncated_loss(tiny_llama, n, spec), abs=1e-5), f"depth {n}"
    # The curve must actually vary with depth, or the comparison above proves nothing.
    assert max(res["losses"]) - min(res["losses"]) > 1e-3


def test_demo_model_reports_the_same_loss_as_a_truly_pruned_model(demo_model, tmp_path):
    data = DEMO_TRIPLES if DEMO_TRIPLES.exists() else write_triples(tmp_path / "t.jsonl")
    spec = AnalyzeSpec(model=str(demo_model), data=str(data), samples=8, batchSize=4, maxLength=48)
    res = analyze(spec)
    assert res["numLayers"] == 30
    # Load once, slice the original stack per depth: identical to re-loading and applying the paper's lines.
    model = AutoModel.from_pretrained(demo_model, dtype=torch.float32, use_safetensors=True).eval()
    full = model.layers
    tok = AutoTokenizer.from_pretrained(demo_model)
    loss_fn = HardNegativeInfoNCE(spec.scale)
    batches = sample_batches(read_triples(spec.data), spec.samples, spec.batchSize, spec.seed)
    for n in (1, 8, 15, 16, 29, 30):
        model.layers = full[:n]
        model.config.num_hidden_layers = n
        total = 0.0
        with torch.no_grad():
            for batch in batches:
                b = len(batch)
                emb = reference_embeddings(model, tok, batch, spec.maxLength, spec.pooling, CHATML_USER)
                total += loss_fn(emb[:b], emb[b : 2 * b], emb[2 * b :], reduction="sum").item()
        assert res["losses"][n - 1] == pytest.approx(total / 8, abs=1e-5), f"depth {n}"


def test_depth_n_is_not_normed_twice(tiny_llama, tiny_triples):
    """hidden_states[N] already carries the final norm; norming it again would change the last depth."""
    from l3prune.encoder import load_encoder
    from l3prune.layerwise import LayerwiseEncoder

    enc = load_encoder(tiny_llama)
    lw = LayerwiseEncoder(enc)
    texts = batch_texts(read_triples(tiny_triples)[:3])
    r = lw.encode_all_depths(texts, "mean")
    torch.testing.assert_close(r.embeddings[-1], enc.encode(texts, "mean"), rtol=0, atol=1e-6)


def test_block_influence_and_angular_distance_are_per_layer_and_bounded(tiny_llama, tiny_triples):
    res = analyze(AnalyzeSpec(model=str(tiny_llama), data=str(tiny_triples), samples=6, batchSize=3))
    assert len(res["blockInfluence"]) == len(res["angularDistance"]) == 4
    assert all(0.0 <= v <= 2.0 for v in res["blockInfluence"])
    assert all(0.0 <= v <= 1.0 for v in res["angularDistance"])
    assert any(v > 1e-4 for v in res["blockInfluence"])


def test_a_model_whose_final_norm_cannot_be_found_is_refused(tiny_llama, tiny_triples, monkeypatch):
    """Better no numbers than numbers that silently differ from truncation."""
    import l3prune.layerwise as layerwise
    from l3prune.encoder import ModelError, load_encoder

    monkeypatch.setattr(layerwise, "find_final_norm", lambda model: None)
    lw = layerwise.LayerwiseEncoder(load_encoder(tiny_llama))
    with pytest.raises(ModelError, match="not supported"):
        lw.encode_all_depths(batch_texts(read_triples(tiny_triples)[:2]), "mean")


def test_bert_without_final_norm_matches_truncation_too(tmp_path):
    """all-MiniLM-L6-v2 (post-LN BERT): no final norm, hidden_states[d] is already the truncated output."""
    from conftest import REPO

    minilm = REPO / ".demo" / "models" / "all-minilm-l6-v2"
    if not (minilm / ".complete").exists():
        pytest.skip(f"{minilm} is absent; run scripts/setup-worker.sh to build it")
    data = write_triples(tmp_path / "t.jsonl")
    spec = AnalyzeSpec(model=str(minilm), data=str(data), samples=12, batchSize=6, pooling="mean")
    res = analyze(spec)
    model = AutoModel.from_pretrained(minilm, dtype=torch.float32, use_safetensors=True).eval()
    full = model.encoder.layer
    tok = AutoTokenizer.from_pretrained(minilm)
    loss_fn = HardNegativeInfoNCE(spec.scale)
    batches = sample_batches(read_triples(spec.data), spec.samples, spec.batchSize, spec.seed)
    for n in range(1, 7):
        model.encoder.layer = full[:n]
        model.config.num_hidden_layers = n
        total = 0.0
        with torch.no_grad():
            for batch in batches:
                b = len(batch)
                emb = reference_embeddings(model, tok, batch, spec.maxLength, "mean")
                total += loss_fn(emb[:b], emb[b : 2 * b], emb[2 * b :], reduction="sum").item()
        assert res["losses"][n - 1] == pytest.approx(total / 12, abs=1e-5), f"depth {n}"


def test_instructions_and_bos_per_depth_loss_equals_truly_pruned_model(tmp_path):
    """Reference test (a): queries with instructions, a tokenizer that adds BOS; depth d's loss from analyze's one pass
    equals the loss of a fresh load pruned with the paper's lines, pooled over the text's own tokens only (the
    reference's embed mask is paper_reference.py's, not ours)."""
    import json

    model_dir = make_tiny_variant(tmp_path / "bos", bos=True)
    data = tmp_path / "t.jsonl"
    with open(data, "w", encoding="utf-8") as fh:
        for i, (q, pos, neg) in enumerate(TRIPLES):
            fh.write(json.dumps({"query": q, "positive": pos, "negative": neg, "instruction": "Retrieve a sentence that the premise entails"
                                 if i % 2 == 0 else "Find a paraphrase of the sentence"}) + "\n")
    tok = AutoTokenizer.from_pretrained(model_dir)
    assert tok("A dog.")["input_ids"][0] == 2, "the tokenizer adds BOS"
    for pooling in ("weighted_mean", "last_token"):
        spec = AnalyzeSpec(model=str(model_dir), data=str(data), samples=12, batchSize=4, pooling=pooling, maxLength=40)
        res = analyze(spec)
        loss_fn = HardNegativeInfoNCE(spec.scale)
        batches = sample_batches(read_triples(spec.data), spec.samples, spec.batchSize, spec.seed)
        for n in (1, 2, 3, 4):
            model = AutoModel.from_pretrained(model_dir, dtype=torch.float32, use_safetensors=True).eval()
            model.layers = model.layers[:n]
            model.config.num_hidden_layers = n
            total, count = 0.0, 0
            with torch.no_grad():
                for batch in batches:
                    b = len(batch)
                    emb = reference_embeddings(model, tok, batch, spec.maxLength, pooling)
                    total += loss_fn(emb[:b], emb[b : 2 * b], emb[2 * b :], reduction="sum").item()
                    count += b
            assert res["losses"][n - 1] == pytest.approx(total / count, abs=1e-5), f"{pooling} depth {n}"
        assert max(res["losses"]) - min(res["losses"]) > 1e-3


def test_streamed_depths_and_metrics_equal_the_stack_of_hidden_states(tiny_llama, tiny_triples):
    """Each depth is pooled by a hook as its layer runs; the reference is Hugging Face's own stack of hidden states
    (output_hidden_states) with the metrics' definitions written out here, for one pass and for chunked groups."""
    import math

    import torch.nn.functional as F

    from l3prune.encoder import load_encoder, pool
    from l3prune.layerwise import LayerwiseEncoder

    enc = load_encoder(tiny_llama, max_length=24)
    lw = LayerwiseEncoder(enc)
    triples = read_triples(tiny_triples)[:6]
    texts = batch_texts(triples)
    # Reference: one padded pass over every text, all N+1 hidden states held at once.
    tok = enc.tokenize(texts)
    with torch.no_grad():
        out = enc.model(**enc.model_inputs(tok), output_hidden_states=True, use_cache=False)
    hs, n = out.hidden_states, lw.num_layers
    norm = enc.model.norm
    raw_last = None
    captured = {}
    h = enc.model.layers[-1].register_forward_hook(lambda m, i, o: captured.setdefault("raw", o[0] if isinstance(o, tuple) else o))
    with torch.no_grad():
        enc.model(**enc.model_inputs(tok), use_cache=False)
    h.remove()
    raw_last = captured["raw"]
    raws = list(hs[:n]) + [raw_last]
    want = torch.stack([pool(norm(hs[d]) if d < n else out.last_hidden_state, tok["embed_mask"], "weighted_mean") for d in range(1, n + 1)])
    real = tok["attention_mask"].bool()
    last = real.long().cumsum(1).argmax(1)
    bi = [float((1 - F.cosine_similarity(raws[d - 1].double(), raws[d].double(), dim=-1)[real]).sum()) for d in range(1, n + 1)]
    ang = [float((torch.arccos(F.cosine_similarity(raws[d - 1].double(), raws[d].double(), dim=-1)[torch.arange(len(texts)), last].clamp(-1, 1)) / math.pi).sum())
           for d in range(1, n + 1)]
    for groups, chunk in ((1, None), (3, None), (3, 4), (3, 1)):
        r = lw.encode_all_depths(texts, "weighted_mean", groups=groups, chunk_size=chunk)
        torch.testing.assert_close(r.embeddings, want, rtol=1e-5, atol=1e-5, msg=f"groups {groups}, chunk {chunk}")
        assert r.bi_count == int(real.sum()) and r.ang_count == len(texts)
        assert r.bi_sum.tolist() == pytest.approx(bi, rel=1e-6, abs=1e-8), (groups, chunk)
        assert r.ang_sum.tolist() == pytest.approx(ang, rel=1e-6, abs=1e-8), (groups, chunk)


def test_analyze_in_chunks_gives_the_whole_batch_losses(tiny_llama, tiny_triples):
    """miniBatchSize changes the forward passes, not the result: the loss is still over the whole batch."""
    whole = analyze(AnalyzeSpec(model=str(tiny_llama), data=str(tiny_triples), samples=6, batchSize=6, maxLength=24))
    chunked = analyze(AnalyzeSpec(model=str(tiny_llama), data=str(tiny_triples), samples=6, batchSize=6, maxLength=24, miniBatchSize=2))
    assert chunked["losses"] == pytest.approx(whole["losses"], abs=1e-5)
    assert (chunked["small"], chunked["large"]) == (whole["small"], whole["large"])
