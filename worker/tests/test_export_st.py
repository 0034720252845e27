"""export-st: the folder sentence-transformers loads gives encode's embeddings (documents and instructed queries,
prompts passed the sentence-transformers way), and its model card is hub metadata huggingface_hub parses, with the
base model, the cut, the recipe, the evaluate run's MTEB results and the analyze run's loss curve."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

import demo_runs
from conftest import run_inproc, validate_run
from test_encode import BASE, write_jsonl

INSTRUCTIONS = ["Given a web search query, retrieve relevant passages that answer the query", "Retrieve semantically similar text"]


@pytest.fixture(scope="module")
def runs(demo_model, tmp_path_factory):
    return demo_runs.shared(tmp_path_factory, demo_model)


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory, schemas):
    import signal

    from l3prune.__main__ import main

    base = tmp_path_factory.mktemp("st")
    try:
        rc = main(["export-st", "--run-dir", str(base / "run"), "--from-run", str(runs["train"])])
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    assert rc == 0
    run, events = validate_run(base / "run", schemas)
    return base, run, events


def test_folder_loads_in_sentence_transformers_and_equals_encode(exported, runs, tmp_path, capsys):
    from sentence_transformers import SentenceTransformer

    base, run, events = exported
    done = events[-1]
    assert done["event"] == "st_exported" and done["parityMinCosine"] >= 0.9999 and done["parityTexts"] >= 30
    assert done["numLayers"] == demo_runs.KEEP and done["originalNumLayers"] == 30
    folder = base / "run" / "sentence-transformers"
    model = SentenceTransformer(str(folder), trust_remote_code=True, device="cpu")
    assert model.max_seq_length == 32 and model.get_embedding_dimension() == 576
    texts = [t.replace("\n", " ") for t in BASE] + [f"{t} (again)" for t in BASE] + [t.lower() for t in BASE]  # 30 texts
    groups = [None, *INSTRUCTIONS]
    for inst in groups:
        src = write_jsonl(tmp_path / f"in-{groups.index(inst)}.jsonl", [(t, inst) for t in texts])
        out = tmp_path / f"enc-{groups.index(inst)}.npy"
        rc, _, err = run_inproc("encode", ["--run-dir", str(tmp_path / f"run-{groups.index(inst)}"), "--from-run", str(runs["train"]),
                                           "--input", str(src), "--output", str(out), "--device", "cpu", "--batch-size", "8"], capsys)
        assert rc == 0, err
        ours = np.load(out)
        st = model.encode(texts, prompt=f"{inst}; " if inst else None, batch_size=5, convert_to_numpy=True)
        cos = (ours * st).sum(1)
        assert cos.min() >= 0.9999, (inst, cos.min())
    # The folder's named prompt is the same instruction string.
    query = model.encode(texts[:6], prompt_name="query", convert_to_numpy=True)
    ref = model.encode(texts[:6], prompt=f"{INSTRUCTIONS[0]}; ", convert_to_numpy=True)
    assert np.allclose(query, ref, atol=1e-6)


def test_loading_without_trust_remote_code_is_refused_by_sentence_transformers(exported):
    from sentence_transformers import SentenceTransformer

    folder = exported[0] / "run" / "sentence-transformers"
    with pytest.raises(ValueError, match="trust_remote_code"):
        SentenceTransformer(str(folder), device="cpu")
    modules = json.loads((folder / "modules.json").read_text())
    # Only the input module is ours; pooling and normalisation are stock.
    assert [m["type"].split(".")[0] for m in modules] == ["l3prune_st", "sentence_transformers", "sentence_transformers"]


def test_model_card_is_hub_metadata_with_results_recipe_and_loss_curve(exported, runs):
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard_data import model_index_to_eval_results

    base, _, events = exported
    folder = base / "run" / "sentence-transformers"
    card = ModelCard.load(folder / "README.md")
    data = card.data.to_dict()
    assert data["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert data["library_name"] == "sentence-transformers" and data["pipeline_tag"] == "sentence-similarity"
    assert {"l3prune", "mteb", "sentence-transformers"} <= set(data["tags"])
    name, results = model_index_to_eval_results(data["model-index"])
    result_files = sorted(p.stem for p in (runs["evaluate"] / "results").glob("*.json"))
    assert sorted({r.dataset_type for r in results}) == result_files == ["LeeDocumentSTS", "WordNetWordToGlossRetrieval"]
    finished = json.loads((runs["evaluate"] / "run.json").read_text())["result"]
    for r in results:
        if r.metric_type == "main_score":
            assert r.metric_value == pytest.approx(finished["scores"][r.dataset_type], abs=1e-6)
    assert events[-1]["modelIndexResults"] == 2 and name.endswith("6of30")
    text = card.text
    assert "6 of its 30 layers" in text and "| learningRate | 0.001 |" in text and "| steps | 2 |" in text
    # The loss curve: one point per depth of the analyze run, marks at its cuts.
    layer_losses = [json.loads(x) for x in (runs["analyze"] / "events.jsonl").read_text().splitlines() if '"layer_losses"' in x][0]
    svg = ET.parse(folder / "loss-curve.svg").getroot()
    points = svg.find("{http://www.w3.org/2000/svg}polyline").get("points").split()
    assert len(points) == len(layer_losses["losses"]) == 30
    assert f"small cut {layer_losses['small']}" in ET.tostring(svg, encoding="unicode")
    assert "(loss-curve.svg)" in text


def test_a_folder_that_would_not_reproduce_the_encoder_is_not_written(runs, tmp_path, schemas, capsys):
    out = tmp_path / "st"
    rc, _, err = run_inproc("export-st", ["--run-dir", str(tmp_path / "run"), "--from-run", str(runs["train"]), "--out", str(out),
                                          "--min-cosine", "1.5"], capsys)
    assert rc == 2 and "parity check failed" in err and "nothing was written" in err, err
    run, events = validate_run(tmp_path / "run", schemas)
    assert run["status"] == "failed" and not out.exists() and not list(tmp_path.glob(".st.tmp-*"))


def test_an_occupied_out_folder_and_an_unfinished_train_run_are_refused_first(runs, tmp_path, capsys):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "x").write_text("x")
    rc, _, err = run_inproc("export-st", ["--run-dir", str(tmp_path / "r1"), "--from-run", str(runs["train"]), "--out", str(out)], capsys)
    assert rc == 2 and "already exists and is not empty; choose a new --out" in err and not (tmp_path / "r1").exists()
    fake = tmp_path / "train"
    fake.mkdir()
    state = json.loads((runs["train"] / "run.json").read_text())
    (fake / "run.json").write_text(json.dumps({**state, "status": "running"}))
    rc, _, err = run_inproc("export-st", ["--run-dir", str(tmp_path / "r2"), "--from-run", str(fake)], capsys)
    assert rc == 2 and "has not finished" in err and not (tmp_path / "r2").exists()
