"""int8 ONNX exports and evaluate --onnx: the quantized graph is what onnxruntime's quantizer makes, it still
reproduces the torch model within its thresholds, and an exported graph scored in onnxruntime scores as torch does."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_inproc, validate_run, worker_cli

KEEP = "4"
QUICK = ["--max-examples", "8", "--max-length", "32", "--batch-size", "8"]
TEXTS = [
    "A man is playing a guitar on stage.",
    "Hello.",
    "The committee postponed its decision on the new bridge until engineers could review the soil samples taken along "
    "the river bank last autumn.",
    "Where is the nearest train station?",
    "Müller ordered a café au lait 🎉",
]


def export(demo_model: Path, run_dir: Path, precision: str) -> Path:
    p = worker_cli("export-onnx", "--run-dir", str(run_dir), "--model", str(demo_model), "--keep", KEEP, "--precision", precision,
                   "--max-length", "64", timeout=600)
    assert p.returncode == 0, p.stderr
    return run_dir


@pytest.fixture(scope="module")
def fp32_export(demo_model, tmp_path_factory) -> Path:
    return export(demo_model, tmp_path_factory.mktemp("fp32") / "run", "fp32")


@pytest.fixture(scope="module")
def int8_export(demo_model, tmp_path_factory) -> Path:
    return export(demo_model, tmp_path_factory.mktemp("int8") / "run", "int8")


def manifest(run_dir: Path) -> dict:
    return json.loads((run_dir / "onnx" / "l3prune-encoder.json").read_text(encoding="utf-8"))


def ops(path: Path) -> dict[str, int]:
    import onnx

    counts: dict[str, int] = {}
    for n in onnx.load(str(path), load_external_data=False).graph.node:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    return counts


# ---------------------------------------------------------------------------------------------------------------
# export-onnx --precision int8
def test_int8_export_is_a_dynamically_quantized_graph_within_its_parity_thresholds(int8_export, fp32_export, demo_model, schemas):
    from l3prune.encoder import load_encoder, prune
    from l3prune.export_onnx import reference_embeddings

    run, events = validate_run(int8_export, schemas)
    done = events[-1]
    assert run["status"] == "succeeded" and done["event"] == "exported" and done["precision"] == "int8"
    assert run["spec"]["precision"] == "int8" and run["spec"]["minCosine"] == 0.98
    m = manifest(int8_export)
    assert m["precision"] == "int8" and m["pooledOutput"] == "pooled"
    assert m["parity"]["threshold"] == 0.98 and m["parity"]["meanThreshold"] == 0.99
    assert m["parity"]["minCosine"] == done["parityMinCosine"] >= 0.98 and m["parity"]["meanCosine"] >= 0.99
    # What onnxruntime's dynamic quantizer writes: activations quantized at run time, integer matmuls, 7 weight
    # matmuls a layer (q, k, v, o, gate, up, down) of which the down projection stays float.
    counts = ops(int8_export / "onnx" / "model.onnx")
    layers = int(KEEP)
    assert counts.get("DynamicQuantizeLinear", 0) > 0 and counts["MatMulInteger"] == 6 * layers, counts
    assert m["quantization"]["quantizedNodes"] == 6 * layers and m["quantization"]["perChannel"] is True
    assert "MatMulInteger" not in ops(fp32_export / "onnx" / "model.onnx")
    # Smaller than the fp32 file by about 3/4 of the quantized weights' float32 bytes (1 byte for 4); the embedding
    # table (a Gather) and the down projections stay float32, so at 4 layers the file shrinks by less than half.
    import onnx

    g32 = onnx.load(str(fp32_export / "onnx" / "model.onnx")).graph
    quantized = {n.input[1] for n in g32.node if n.op_type == "MatMul" and "down_proj" not in n.name}
    weight_bytes = sum(4 * int(np.prod(t.dims)) for t in g32.initializer if t.name in quantized)
    fp32_bytes = (fp32_export / "onnx" / "model.onnx").stat().st_size
    assert weight_bytes > 0 and fp32_bytes - done["bytes"] > 0.7 * weight_bytes, (done["bytes"], fp32_bytes, weight_bytes)
    # On texts the check never saw, padded together, against the float32 torch model.
    import onnxruntime as ort

    enc = load_encoder(demo_model, max_length=64)
    prune(enc.model, layers)
    batch = enc.tokenize(TEXTS)
    sess = ort.InferenceSession(str(int8_export / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(sess.run(["embedding"], {k: batch[k].numpy() for k in ("input_ids", "attention_mask", "embed_mask")})[0])
    c = torch.nn.functional.cosine_similarity(got.double(), reference_embeddings(enc, TEXTS, "weighted_mean").double(), dim=-1)
    assert c.min() >= 0.98 and c.mean() >= 0.99, c


def test_the_kept_float_matmuls_are_the_mlp_down_projections(fp32_export, demo_model):
    """down_projections finds them by shape (weights with intermediate_size rows), which must be exactly the modules
    transformers names mlp.down_proj, one per layer."""
    import onnx

    from l3prune.export_onnx import down_projections

    cfg = json.loads((demo_model / "config.json").read_text())
    graph = onnx.load(str(fp32_export / "onnx" / "model.onnx")).graph
    names = down_projections(graph, cfg["intermediate_size"])
    assert len(names) == int(KEEP) and all("mlp/down_proj" in n for n in names), names
    assert down_projections(graph, None) == []


def test_the_down_projections_carry_most_of_the_quantization_error(fp32_export, int8_export, tmp_path):
    """The reason they stay float: onnxruntime's quantizer on every weight matmul, down projections included, moves
    the embeddings of the same parity examples (the worker's torch embeddings) several times further from torch
    than the export does. (At 15 of 30 layers it falls below the int8 thresholds: 0.966/0.981, export_onnx.py.)"""
    import logging

    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)
    out = tmp_path / "all.onnx"
    quantize_dynamic(str(fp32_export / "onnx" / "model.onnx"), str(out), op_types_to_quantize=["MatMul"], per_channel=True, weight_type=QuantType.QInt8)
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    examples = json.loads((fp32_export / "onnx" / "parity-examples.json").read_text())["examples"]
    assert [e["text"] for e in examples] == [e["text"] for e in json.loads((int8_export / "onnx" / "parity-examples.json").read_text())["examples"]]
    cos = []
    for e in examples:
        ids = np.array([e["inputIds"]], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "embed_mask": np.array([e["embedMask"]], dtype=np.int64)}
        a, r = sess.run(["embedding"], feed)[0][0].astype(np.float64), np.array(e["embedding"])
        cos.append(float(a @ r / np.linalg.norm(a) / np.linalg.norm(r)))
    ours = manifest(int8_export)["parity"]["meanCosine"]
    assert 1 - np.mean(cos) > 5 * (1 - ours), (np.mean(cos), ours)


def test_int8_with_external_data_keeps_one_data_file(tiny_llama, tmp_path, monkeypatch):
    """A graph over protobuf's limit is quantized with use_external_data_format: one model.onnx.data beside it."""
    from l3prune import export_onnx as X

    monkeypatch.setattr(X, "EXTERNAL_DATA_BYTES", 0)
    spec = X.ExportSpec(model=str(tiny_llama), out=str(tmp_path / "onnx"), precision="int8", maxLength=24)
    res = X.run_export(spec, lambda kind, **f: None)
    out = tmp_path / "onnx"
    m = json.loads((out / "l3prune-encoder.json").read_text())
    assert m["externalData"] == "model.onnx.data" and (out / "model.onnx.data").is_file()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") or p.suffix == ".data" and p.name != "model.onnx.data"]
    assert res["bytes"] == (out / "model.onnx").stat().st_size + (out / "model.onnx.data").stat().st_size
    assert ops(out / "model.onnx").get("MatMulInteger", 0) > 0 and res["parityMinCosine"] >= 0.98


def test_an_int8_export_below_its_threshold_fails_and_names_the_way_out(tiny_llama, tmp_path, capsys):
    out = tmp_path / "onnx"
    rc, _, err = run_inproc("export-onnx", ["--run-dir", str(tmp_path / "r"), "--model", str(tiny_llama), "--out", str(out),
                                            "--precision", "int8", "--min-cosine", "1.01"], capsys)
    assert rc == 2 and "ONNX parity check failed: min cosine" in err and "export fp32 or fp16 instead" in err, err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".onnx")]


# ---------------------------------------------------------------------------------------------------------------
# evaluate --onnx
def evaluate(run_dir: Path, *args: str, data: Path) -> dict:
    p = worker_cli("evaluate", "--run-dir", str(run_dir), *args, "--data-dir", str(data), *QUICK, timeout=600)
    assert p.returncode == 0, p.stderr
    return json.loads((run_dir / "run.json").read_text())


@pytest.fixture(scope="module")
def torch_scores(demo_model, eval_data, tmp_path_factory) -> dict:
    return evaluate(tmp_path_factory.mktemp("ev-torch") / "run", "--model", str(demo_model), "--keep", KEEP, data=eval_data)


def test_an_fp32_export_scores_as_the_torch_model_it_came_from(fp32_export, torch_scores, eval_data, tmp_path, schemas):
    run_dir = tmp_path / "run"
    run = evaluate(run_dir, "--onnx", str(fp32_export / "onnx"), data=eval_data)
    validate_run(run_dir, schemas)
    res, ref = run["result"], torch_scores["result"]
    assert res["onnx"]["precision"] == "fp32" and res["onnx"]["provider"] == "CPUExecutionProvider"
    assert Path(res["onnx"]["folder"]) == (fp32_export / "onnx").resolve()
    # The spec names the variant as the manifest does, so the host groups the row with its torch evaluation.
    assert run["spec"]["keep"] == int(KEEP) and Path(run["spec"]["model"]) == Path(torch_scores["spec"]["model"]) and run["spec"]["device"] == "cpu"
    assert set(res["scores"]) == set(ref["scores"])
    for task, score in ref["scores"].items():
        assert res["scores"][task] == pytest.approx(score, abs=1e-3), task
    assert res["numLayers"] == ref["numLayers"]
    # Elements of the graph's initializers: the torch parameters (plus the rotary table the tracer folded in).
    assert 1.0 <= res["params"] / ref["params"] < 1.01, (res["params"], ref["params"])


def test_an_int8_export_is_scored_with_its_precision(int8_export, torch_scores, eval_data, tmp_path, schemas):
    run_dir = tmp_path / "run"
    run = evaluate(run_dir, "--onnx", str(int8_export / "onnx"), data=eval_data)
    _, events = validate_run(run_dir, schemas)
    loaded = next(e for e in events if e["event"] == "model_loaded")
    assert loaded["precision"] == "int8" and run["result"]["onnx"]["precision"] == "int8"
    assert set(run["result"]["scores"]) == set(torch_scores["result"]["scores"])


def test_evaluate_onnx_refuses_what_it_cannot_score_faithfully(fp32_export, tiny_llama, tmp_path, capsys):
    folder = str(fp32_export / "onnx")
    for args, needle in (
        (["--onnx", folder, "--model", str(tiny_llama)], "leave out --model"),
        (["--onnx", folder, "--pooling", "mean"], "was exported with pooling weighted_mean"),
        (["--onnx", folder, "--device", "cuda"], "onnxruntime's CPU provider"),
        (["--onnx", str(tmp_path)], "l3prune-encoder.json"),
    ):
        rc, _, err = run_inproc("evaluate", ["--run-dir", str(tmp_path / "r"), *args], capsys)
        assert rc == 2 and needle in err and err.strip().count("\n") == 0, (args, err)
        assert not (tmp_path / "r").exists()
    # An export made before the pooled output: scoring its unit vectors would not compare with torch's raw ones.
    old = tmp_path / "old"
    old.mkdir()
    for f in (fp32_export / "onnx").iterdir():
        (old / f.name).symlink_to(f)
    m = manifest(fp32_export)
    del m["pooledOutput"]
    (old / "l3prune-encoder.json").unlink()
    (old / "l3prune-encoder.json").write_text(json.dumps(m))
    rc, _, err = run_inproc("evaluate", ["--run-dir", str(tmp_path / "r"), "--onnx", str(old)], capsys)
    assert rc == 2 and "export the variant again" in err, err
