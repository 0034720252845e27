"""export-onnx as the extension and a JavaScript client use it: one graph, dynamic axes, parity with the worker."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import WORKER, run_inproc, validate_run, worker_cli, write_triples

CMD = [sys.executable, "-m", "l3prune"]
TEXTS = [
    "A man is playing a guitar on stage.",
    "Hello.",
    "The committee postponed its decision on the new bridge until engineers could review the soil samples taken along "
    "the river bank last autumn, which delayed the works by a year and angered the shop owners on both sides of the water.",
    "Where is the nearest train station?",
    "Müller ordered a café au lait 🎉",
]


def cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return worker_cli(*args, timeout=timeout)


def session(out: Path):
    import onnxruntime as ort

    return ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])


def ort_embed(sess, batch: dict) -> torch.Tensor:
    feed = {k: batch[k].numpy().astype(np.int64) for k in ("input_ids", "attention_mask", "embed_mask")}
    return torch.from_numpy(sess.run(["embedding"], feed)[0])


def cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)


def check_manifest(m: dict, schemas) -> None:
    """l3prune-encoder.json against protocol/encoder-manifest.schema.json, which also names every field written."""
    import jsonschema

    schema = schemas["encoder-manifest"]
    jsonschema.Draft202012Validator(schema, registry=schemas["registry"]).validate(m)
    assert set(m) <= set(schema["properties"]), f"fields the schema does not describe: {set(m) - set(schema['properties'])}"
    assert m["numLayers"] <= m["originalNumLayers"]


def test_the_manifest_schema_refuses_what_a_client_must_not_trust(schemas):
    import jsonschema

    v = jsonschema.Draft202012Validator(schemas["encoder-manifest"], registry=schemas["registry"])
    good = {"format": 1, "model": "model.onnx", "externalData": None, "pooling": "mean", "normalize": True, "maxLength": 8,
            "hiddenSize": 4, "numLayers": 1, "originalNumLayers": 2, "inputs": ["input_ids", "attention_mask"],
            "output": "embedding", "paddingSide": "left", "padTokenId": 0, "addSpecialTokens": True, "sourceModel": "/m"}
    assert v.is_valid(good)
    for bad in ({"model": "../model.onnx"}, {"model": "a/b.onnx"}, {"model": "a\\b"}, {"model": ".."}, {"externalData": "."},
                {"format": 2}, {"maxLength": 0}, {"hiddenSize": 1.5}, {"paddingSide": "middle"}, {"padTokenId": -1},
                {"inputs": ["input_ids"]}, {"inputs": ["attention_mask", "token_type_ids"]}, {"prependTokenIds": [-1]},
                {"pooling": "max"}, {"normalize": "yes"}):
        assert not v.is_valid({**good, **bad}), bad


# ---------------------------------------------------------------------------------------------------------------
# the demo model, pruned to 2 layers, through the real CLI
@pytest.fixture(scope="module")
def demo_export(demo_model, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("export") / "run"
    p = cli("export-onnx", "--run-dir", str(run_dir), "--model", str(demo_model), "--keep", "2", "--heartbeat-seconds", "0.5")
    assert p.returncode == 0, p.stderr
    return run_dir, p


@pytest.fixture(scope="module")
def demo_encoder(demo_model):
    from l3prune.encoder import load_encoder, prune

    enc = load_encoder(demo_model, max_length=512)
    prune(enc.model, 2)
    return enc


def test_run_folder_events_and_exported_folder_follow_the_contract(demo_export, demo_model, schemas):
    run_dir, p = demo_export
    assert p.stderr == ""
    run, events = validate_run(run_dir, schemas)
    assert [json.loads(l) for l in p.stdout.splitlines() if json.loads(l)["event"] != "heartbeat"] == events, "stdout carries the events"
    kinds = [e["event"] for e in events]
    assert kinds[:2] == ["started", "model_loaded"] and kinds[-1] == "exported" and set(kinds[2:-1]) == {"progress"}
    assert events[0]["verb"] == "export-onnx" and events[0]["spec"] == run["spec"]
    assert events[1]["numLayers"] == 2 and events[1]["originalNumLayers"] == 30 and events[1]["hiddenSize"] == 576
    stages = [e["stage"] for e in events if e["event"] == "progress"]
    # 16 built-in sentences + 4 queries with instructions + 2 texts past maxLength = 22 texts, 3 batches of 8.
    assert stages == ["reference"] * 3 + ["export", "save"] + ["parity"] * 3
    assert [e["batch"] for e in events if e["event"] == "progress"] == list(range(1, 9))

    out = run_dir / "onnx"
    done = events[-1]
    assert run["status"] == "succeeded" and run["result"] == {k: v for k, v in done.items() if k not in ("event", "time")}
    assert done["path"] == str(out / "model.onnx") and done["outDir"] == str(out) and done["opset"] == 17 and done["numLayers"] == 2
    assert done["bytes"] == (out / "model.onnx").stat().st_size and done["parityMinCosine"] >= 0.9999
    assert done["precision"] == "fp32" and run["spec"]["precision"] == "fp32" and run["spec"]["minCosine"] == 0.9999
    assert sorted(x.name for x in out.iterdir()) == ["l3prune-encoder.json", "model.onnx", "parity-examples.json", "tokenizer.json", "tokenizer_config.json"]
    assert (out / "tokenizer.json").read_bytes() == (demo_model / "tokenizer.json").read_bytes()
    assert not [x for x in run_dir.parent.iterdir() if x.name.startswith(".")], "no temp folder left"

    m = json.loads((out / "l3prune-encoder.json").read_text(encoding="utf-8"))
    check_manifest(m, schemas)
    assert m["format"] == 1 and m["pooling"] == "weighted_mean" and m["normalize"] is True and m["maxLength"] == 512
    assert m["hiddenSize"] == 576 and m["numLayers"] == 2 and m["originalNumLayers"] == 30
    assert m["inputs"] == ["input_ids", "attention_mask", "embed_mask"] and m["output"] == "embedding" and m["model"] == "model.onnx"
    # SmolLM2's tokenizer adds no BOS/EOS; the text pipeline pads on the left (with <|im_end|>, id 2) and wraps texts in
    # the user turn of its chat template, without the template's default system prompt.
    assert m["paddingSide"] == "left" and m["truncationSide"] == "right" and m["padTokenId"] == 2
    assert m["textPipeline"] == {"instructionFormat": "{instruction}; ", "chatPrefix": "<|im_start|>user\n", "chatSuffix": "<|im_end|>",
                                 "embedMask": "last-k", "paddingSide": "left"}
    assert m["queryTemplate"] == "{instruction}; {query}"
    assert m["addSpecialTokens"] is True and m["prependTokenIds"] == [] and m["appendTokenIds"] == []
    assert m["externalData"] is None and m["opset"] == 17 and m["sourceModel"] == str(demo_model.absolute()) and m["precision"] == "fp32"
    assert m["parity"]["sentences"] >= 16 and m["parity"]["minCosine"] == done["parityMinCosine"] >= 0.9999
    assert m["parity"]["meanCosine"] >= m["parity"]["minCosine"] and m["tokenizerFiles"] == ["tokenizer.json", "tokenizer_config.json"]
    ex = json.loads((out / "parity-examples.json").read_text(encoding="utf-8"))["examples"]
    assert len(ex) == m["parity"]["sentences"] and len({len(e["inputIds"]) for e in ex}) > 8, "varied lengths"
    assert all(len(e["embedding"]) == 576 and abs(np.linalg.norm(e["embedding"]) - 1) < 1e-5 for e in ex)
    # Each example carries its ids and embed mask: the last k ids are pooled, k = the text's own token count.
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(demo_model)
    assert sum(1 for e in ex if e["instruction"]) == 5 and sum(1 for e in ex if len(e["inputIds"]) == 512) == 2
    for e in ex:
        assert len(e["embedMask"]) == len(e["inputIds"]) and e["fullText"].startswith("<|im_start|>user\n")
        k = min(len(tok(e["text"], add_special_tokens=False)["input_ids"]), 512)
        assert e["embedMask"] == [0] * (len(e["inputIds"]) - k) + [1] * k, e["text"][:30]
        assert tok(e["fullText"], truncation=True, max_length=512)["input_ids"] == e["inputIds"]


def test_graph_has_dynamic_batch_and_length_and_matches_the_worker_encode(demo_export, demo_encoder):
    import onnx

    out = demo_export[0] / "onnx"
    g = onnx.load(str(out / "model.onnx"), load_external_data=False).graph
    shape = lambda v: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # noqa: E731
    assert [(i.name, shape(i), i.type.tensor_type.elem_type) for i in g.input] == [
        ("input_ids", ["batch", "sequence"], onnx.TensorProto.INT64), ("attention_mask", ["batch", "sequence"], onnx.TensorProto.INT64),
        ("embed_mask", ["batch", "sequence"], onnx.TensorProto.INT64)]
    # The unit-length embedding clients use, and the same vector before the norm, which evaluate --onnx scores.
    assert [(o.name, shape(o), o.type.tensor_type.elem_type) for o in g.output] == [
        ("embedding", ["batch", 576], onnx.TensorProto.FLOAT), ("pooled", ["batch", 576], onnx.TensorProto.FLOAT)]

    from l3prune.export_onnx import reference_embeddings

    sess = session(out)
    enc = demo_encoder
    for texts, length in ((TEXTS[:1], 3), (TEXTS, 40)):
        enc.max_length = length
        batch = enc.tokenize(texts)
        assert batch["input_ids"].shape == (len(texts), length)
        got = ort_embed(sess, batch)
        assert got.shape == (len(texts), 576)
        assert cos(got, reference_embeddings(enc, texts, "weighted_mean")).min() >= 0.9999
        assert torch.allclose(got.norm(dim=-1), torch.ones(len(texts)), atol=1e-5)
    # Positions come from the mask inside the graph, so a text alone (no padding) gives the vector it gets in a
    # left-padded batch.
    alone = torch.cat([ort_embed(sess, enc.tokenize([t])) for t in TEXTS])
    assert cos(alone, got).min() >= 0.9999


# ---------------------------------------------------------------------------------------------------------------
# fp16 (for GPU serving): the same cut of the demo model
@pytest.fixture(scope="module")
def demo_export_fp16(demo_model, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("export-fp16") / "run"
    p = cli("export-onnx", "--run-dir", str(run_dir), "--model", str(demo_model), "--keep", "2", "--precision", "fp16")
    assert p.returncode == 0, p.stderr
    return run_dir


def test_fp16_export_is_half_the_bytes_says_so_and_matches_float32_torch(demo_export_fp16, demo_export, demo_encoder, schemas):
    import onnx
    from onnx import TensorProto, numpy_helper

    from l3prune.export_onnx import reference_embeddings

    run, events = validate_run(demo_export_fp16, schemas)
    done = events[-1]
    assert run["status"] == "succeeded" and done["event"] == "exported" and done["precision"] == "fp16"
    # The fp16 threshold is the spec's when it gives none, and run.json records it.
    assert run["spec"]["precision"] == "fp16" and run["spec"]["minCosine"] == 0.999
    out16, out32 = demo_export_fp16 / "onnx", demo_export[0] / "onnx"
    m = json.loads((out16 / "l3prune-encoder.json").read_text(encoding="utf-8"))
    check_manifest(m, schemas)
    assert m["precision"] == "fp16" and m["externalData"] is None
    assert m["parity"]["threshold"] == 0.999 and m["parity"]["minCosine"] == done["parityMinCosine"] >= 0.999
    # Half the bytes of the fp32 export of the same cut, because the weights are float16.
    assert 0.49 < done["bytes"] / (out32 / "model.onnx").stat().st_size < 0.51, done["bytes"]
    model = onnx.load(str(out16 / "model.onnx"))
    by_type: dict[int, int] = {}
    for t in model.graph.initializer:
        by_type[t.data_type] = by_type.get(t.data_type, 0) + numpy_helper.to_array(t).nbytes
    assert by_type[TensorProto.FLOAT16] > 0.99 * sum(by_type.values()), by_type
    assert {p.key: p.value for p in model.metadata_props}["l3prune.precision"] == "fp16"
    # The contract clients rely on does not change: int64 inputs, a float32 [batch, hidden] embedding (and the
    # same before the norm, which evaluate --onnx scores).
    g = model.graph
    assert [(i.name, i.type.tensor_type.elem_type) for i in g.input] == [(n, TensorProto.INT64) for n in ("input_ids", "attention_mask", "embed_mask")]
    assert [(o.name, o.type.tensor_type.elem_type, [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]) for o in g.output] == [
        ("embedding", TensorProto.FLOAT, ["batch", 576]), ("pooled", TensorProto.FLOAT, ["batch", 576])]
    del model, g
    # Against the float32 torch model, on texts the export never saw, padded together.
    enc = demo_encoder
    enc.max_length = 40
    batch = enc.tokenize(TEXTS)
    got = ort_embed(session(out16), batch)
    assert got.dtype == torch.float32 and torch.allclose(got.norm(dim=-1), torch.ones(len(TEXTS)), atol=1e-5)
    assert cos(got, reference_embeddings(enc, TEXTS, "weighted_mean")).min() >= 0.999


def test_a_precision_other_than_fp32_fp16_or_int8_is_refused_before_a_run_folder_exists(tiny_llama, tmp_path, capsys):
    from l3prune.export_onnx import ExportSpec

    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"model": str(tiny_llama), "precision": "bf16"}), encoding="utf-8")
    rc, _, err = run_inproc("export-onnx", ["--run-dir", str(tmp_path / "r"), "--spec", str(spec)], capsys)
    assert rc == 2 and "spec field 'precision' must be one of fp32, fp16, int8, got 'bf16'" in err and err.strip().count("\n") == 0, err
    rc, _, err = run_inproc("export-onnx", ["--run-dir", str(tmp_path / "r"), "--model", str(tiny_llama), "--precision", "int4"], capsys)
    assert rc == 2 and "argument --precision: invalid choice: 'int4'" in err, err
    assert not (tmp_path / "r").exists()
    with pytest.raises(ValueError, match="'precision' must be one of fp32, fp16, int8"):
        ExportSpec(model=str(tiny_llama), precision="fp8")


# ---------------------------------------------------------------------------------------------------------------
# a LoRA train run on the tiny model
@pytest.fixture(scope="module")
def train_run(tiny_llama, tmp_path_factory) -> Path:
    from l3prune.train import main as train_main

    base = tmp_path_factory.mktemp("lora")
    data = write_triples(base / "triples.jsonl", 16)
    run_dir = base / "train"
    # In this process: an interpreter start-up costs more than these three steps.
    try:
        rc = train_main(["--run-dir", str(run_dir), "--model", str(tiny_llama), "--data", str(data), "--keep", "2", "--steps", "3",
                         "--batch-size", "4", "--max-length", "24", "--learning-rate", "5e-2", "--warmup-steps", "0", "--pooling", "mean"])
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    assert rc == 0
    return run_dir


def test_lora_run_exported_from_run_matches_the_merged_model(train_run, tiny_llama, tmp_path, schemas, capsys):
    from l3prune.encoder import load_encoder, prune
    from l3prune.export_onnx import reference_embeddings

    run_dir = tmp_path / "exp"
    rc, _, err = run_inproc("export-onnx", ["--run-dir", str(run_dir), "--from-run", str(train_run)], capsys)
    assert rc == 0 and err == "", err
    run, events = validate_run(run_dir, schemas)
    assert run["spec"]["model"] == str(train_run / "model") and run["spec"]["adapter"] is None and run["spec"]["fromRun"] == str(train_run)
    m = json.loads((run_dir / "onnx" / "l3prune-encoder.json").read_text(encoding="utf-8"))
    check_manifest(m, schemas)
    # Pooling and max length follow the train run; the source is the unpruned base model.
    assert m["pooling"] == "mean" and m["maxLength"] == 24 and m["numLayers"] == 2 and m["originalNumLayers"] == 4
    assert m["sourceModel"] == str(tiny_llama) and m["fromRun"] == str(train_run) and m["padTokenId"] == 0

    merged = load_encoder(train_run / "model", max_length=24)
    base = load_encoder(tiny_llama, max_length=24)
    prune(base.model, 2)
    texts = ["The cat sleeps on the warm sofa.", "A dog catches a red ball.", "Rain falls over the quiet town."]
    batch = merged.tokenize(texts)
    want = reference_embeddings(merged, texts, "mean")
    assert cos(want, reference_embeddings(base, texts, "mean")).min() < 0.999, "the adapter changed the model"
    assert cos(ort_embed(session(run_dir / "onnx"), batch), want).min() >= 0.9999


def test_base_plus_adapter_with_external_data_matches_the_merged_model(train_run, tiny_llama, tmp_path, monkeypatch):
    """--adapter merges into the base pruned to the adapter's depth; a graph over the size limit keeps its weights in
    one model.onnx.data, which onnxruntime loads from the folder."""
    from l3prune import export_onnx as X
    from l3prune.encoder import load_encoder

    monkeypatch.setattr(X, "EXTERNAL_DATA_BYTES", 0)
    spec = X.ExportSpec(model=str(tiny_llama), out=str(tmp_path / "onnx"), adapter=str(train_run / "adapter"), pooling="mean", maxLength=24)
    events = []
    res = X.run_export(spec, lambda kind, **f: events.append({"event": kind, **f}))
    out = tmp_path / "onnx"
    assert res["numLayers"] == 2 and res["parityMinCosine"] >= 0.9999
    names = {x.name for x in out.iterdir()}
    assert {"l3prune-encoder.json", "model.onnx", "model.onnx.data", "parity-examples.json", "tokenizer.json"} <= names
    assert not names - {"l3prune-encoder.json", "model.onnx", "model.onnx.data", "parity-examples.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"}
    assert json.loads((out / "l3prune-encoder.json").read_text())["externalData"] == "model.onnx.data"
    assert res["bytes"] == (out / "model.onnx").stat().st_size + (out / "model.onnx.data").stat().st_size
    merged = load_encoder(train_run / "model", max_length=24)
    texts = ["Two kids run across the park.", "Workers repair the old bridge."]
    assert cos(ort_embed(session(out), merged.tokenize(texts)), X.reference_embeddings(merged, texts, "mean")).min() >= 0.9999


# ---------------------------------------------------------------------------------------------------------------
# failures and cancel
@pytest.mark.parametrize(
    "args, needle",
    [
        (["--keep", "0"], "--keep must be at least 1"),
        (["--opset", "9"], "--opset must be between 14 and 20"),
        ([], "no --model given"),
        (["--from-run", "{tmp}"], "--from-run needs a train run folder"),
        (["--parity-data", "{tmp}/none.jsonl"], "parity data file"),
        (["--out", "{tmp}/r"], "would hold the run folder"),
    ],
)
def test_bad_flags_are_refused_before_a_run_folder_exists(tiny_llama, tmp_path, capsys, args, needle):
    argv = ["--run-dir", str(tmp_path / "r"), *[a.replace("{tmp}", str(tmp_path)) for a in args]]
    if args and args[0] in ("--keep", "--opset", "--parity-data", "--out"):
        argv += ["--model", str(tiny_llama)]
    rc, _, err = run_inproc("export-onnx", argv, capsys)
    assert rc == 2 and needle in err and err.strip().count("\n") == 0, err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    "model, keep, needle",
    [
        ("missing", "2", "does not exist; pass a local Hugging Face model folder"),
        ("tiny", "9", "--keep 9 is out of range: the model has 4 layers; choose 1..4"),
    ],
)
def test_bad_input_fails_the_run_with_one_sentence(tiny_llama, tmp_path, capsys, schemas, model, keep, needle):
    m = str(tiny_llama) if model == "tiny" else str(tmp_path / "no-such-model")
    rc, out, err = run_inproc("export-onnx", ["--run-dir", str(tmp_path / "r"), "--model", m, "--keep", keep], capsys)
    assert rc == 2 and err.startswith("l3prune: ") and needle in err and err.strip().count("\n") == 0, err
    run, events = validate_run(tmp_path / "r", schemas)
    assert run["status"] == "failed" and run["error"]["kind"] == "user" and run["error"]["message"] in err
    assert events[-1]["event"] == "error" and not (tmp_path / "r" / "onnx").exists()
    assert not [x for x in (tmp_path / "r").iterdir() if x.name.startswith(".onnx")]


def test_failed_parity_fails_the_run_and_writes_nothing(tiny_llama, tmp_path, capsys, schemas):
    rc, _, err = run_inproc("export-onnx", ["--run-dir", str(tmp_path / "r"), "--model", str(tiny_llama), "--min-cosine", "1.01"], capsys)
    assert rc == 2 and "ONNX parity check failed: min cosine" in err and "nothing was written" in err, err
    run, events = validate_run(tmp_path / "r", schemas)
    assert run["status"] == "failed" and events[-1]["event"] == "error"
    assert sorted(x.name for x in (tmp_path / "r").iterdir()) == ["events.jsonl", "run.json"], "no export, no temp folder"


def test_sigterm_cancels_and_leaves_no_output(tiny_llama, tmp_path, schemas):
    run_dir = tmp_path / "r"
    proc = subprocess.Popen([*CMD, "export-onnx", "--run-dir", str(run_dir), "--model", str(tiny_llama), "--debug-sleep-after-load", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=WORKER)
    try:
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            if json.loads(line)["event"] == "model_loaded":
                break
            assert time.monotonic() < deadline
        proc.send_signal(signal.SIGTERM)
        proc.stdout.read()
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 128 + signal.SIGTERM and "cancelled by SIGTERM" in proc.stderr.read()
    run, events = validate_run(run_dir, schemas)
    assert run["status"] == "cancelled" and events[-1]["event"] == "cancelled" and events[-1]["signal"] == "SIGTERM"
    assert sorted(x.name for x in run_dir.iterdir()) == ["events.jsonl", "run.json"]
