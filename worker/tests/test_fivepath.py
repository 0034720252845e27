"""One text pipeline, every path: the same 32 texts (with and without instructions, short and truncated at max length)
through analyze's layerwise encoder at depth N, the train forward (eval mode, LoRA at init = identity), evaluate's
embed, and the exported ONNX graph in Python onnxruntime give the same vectors (cosine >= 0.9999 between every pair).
The fifth path, onnxruntime-node, is test/unit/inference.encoder.test.ts on the same texts
(test/fixtures/pipeline-texts.json)."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import REPO

ITEMS = json.loads((REPO / "test" / "fixtures" / "pipeline-texts.json").read_text(encoding="utf-8"))["texts"]
KEEP = 2
MAX_LENGTH = 32


def _texts():
    from l3prune.textpipe import Text

    return [Text(i["text"], i["instruction"]) for i in ITEMS]


def five_paths(model_dir, tmp_path, chat_template: str, pooling: str) -> dict[str, torch.Tensor]:
    from peft import LoraConfig, get_peft_model

    from l3prune import export_onnx as X
    from l3prune.encoder import load_encoder, prune
    from l3prune.evaluate import embed
    from l3prune.layerwise import LayerwiseEncoder
    from l3prune.train.loop import forward_embeddings

    texts = _texts()
    out: dict[str, torch.Tensor] = {}
    full = load_encoder(model_dir, max_length=MAX_LENGTH, chat_template=chat_template)
    # analyze: depth KEEP of the unpruned model, from the one-pass layerwise encoder (batches of 8 as analyze pads them)
    lw = LayerwiseEncoder(full)
    out["analyze"] = torch.cat([lw.encode_all_depths(texts[i : i + 8], pooling).embeddings[KEEP - 1] for i in range(0, len(texts), 8)])
    del lw, full
    enc = load_encoder(model_dir, max_length=MAX_LENGTH, chat_template=chat_template)
    prune(enc.model, KEEP)
    # evaluate: longest-first batches of 5
    out["evaluate"] = torch.from_numpy(embed(enc, texts, pooling, 5))
    # export-onnx, then the graph in Python onnxruntime on the pipeline's own tokenisation (one batch of all texts)
    spec = X.ExportSpec(model=str(model_dir), keep=KEEP, out=str(tmp_path / "onnx"), maxLength=MAX_LENGTH, pooling=pooling, chatTemplate=chat_template)
    X.run_export(spec, lambda *a, **k: None)
    sess = X.ort_session(tmp_path / "onnx" / X.MODEL_FILE)
    batch = enc.tokenize(texts)
    out["onnx"] = torch.from_numpy(sess.run(["embedding"], {k: batch[k].numpy() for k in X.INPUTS})[0])
    # train: the LoRA-wrapped model at init (B = 0: identity), eval mode (no dropout), the trainer's own forward
    targets = [n for n in ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")]
    peft_model = get_peft_model(enc.model, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.05, target_modules=targets, bias="none")).eval()
    enc.model = peft_model
    with torch.no_grad():
        out["train"] = torch.cat([forward_embeddings(enc, peft_model, texts[i : i + 11], pooling)[0] for i in range(0, len(texts), 11)])
    return {k: F.normalize(v.double(), dim=-1) for k, v in out.items()}


def _assert_all_pairs(vecs: dict[str, torch.Tensor]) -> None:
    assert len({v.shape for v in vecs.values()}) == 1 and next(iter(vecs.values())).shape[0] == len(ITEMS)
    for a, b in itertools.combinations(vecs, 2):
        c = (vecs[a] * vecs[b]).sum(-1)
        assert float(c.min()) >= 0.9999, f"{a} vs {b}: min cosine {float(c.min()):.6f} at {ITEMS[int(c.argmin())]['text'][:30]!r}"
    # The vectors differ, or equal vectors would prove nothing (the tiny model's word-level vocabulary turns most of
    # these words into [UNK], so some of its texts do coincide).
    v = vecs["onnx"]
    distinct = {tuple(np.round(r.numpy(), 4)) for r in v}
    assert len(distinct) >= len(v) // 2, len(distinct)


def test_demo_model_chat_template_every_path_agrees(demo_model, tmp_path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(demo_model)
    lengths = [len(tok(i["text"], add_special_tokens=False)["input_ids"]) for i in ITEMS]
    assert max(lengths) > MAX_LENGTH, "some texts are truncated"
    _assert_all_pairs(five_paths(demo_model, tmp_path, "auto", "weighted_mean"))


@pytest.mark.parametrize("pooling", ["mean", "last_token"])
def test_tiny_model_without_chat_template_every_path_agrees(tiny_llama, tmp_path, pooling):
    _assert_all_pairs(five_paths(tiny_llama, tmp_path, "off", pooling))
