"""The encode verb: rows equal a plain-transformers reference of the trained model, in input order, unit length,
float32; streamed in chunks with the same rows as one pass; a cancel leaves only <output>.partial; bad input is
refused with the file and line."""
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

import demo_runs
from conftest import ENV, WORKER, read_events, run_inproc, validate_run

# Mixed lengths (1 to ~70 tokens; several past the train run's maxLength of 32, so truncation is covered), a
# few languages, code, blank-looking punctuation.
BASE = [
    "Hello.", "OK", "A man is playing a guitar on stage.", "東京は日本の首都です。", "def add(a, b):\n    return a + b",
    "The cat sleeps on the warm sofa while the rain keeps falling outside.",
    "Prices rose 3.2% in March, the fastest pace since 2008.",
    "The committee postponed its decision on the new bridge until engineers could review the soil samples taken along "
    "the river bank last autumn, a delay that frustrated residents who had waited nearly a decade for the crossing.",
    "Is this vaccine safe for children under five?", "Rain falls over the quiet town.",
]
INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


def texts_40() -> list[tuple[str, str | None]]:
    out = []
    for i in range(4):
        for j, t in enumerate(BASE):
            variant = t if i == 0 else f"{t} ({i})" if i == 1 else t.upper() if i == 2 else t[: max(1, len(t) // 2)]
            out.append((variant, INSTRUCTION if (i + j) % 3 == 0 else None))
    return out


@pytest.fixture(scope="module")
def runs(demo_model, tmp_path_factory):
    return demo_runs.shared(tmp_path_factory, demo_model)


def reference(model_dir: Path, items: list[tuple[str, str | None]], max_length: int) -> np.ndarray:
    """The merged model run by plain transformers, one unpadded text at a time, SmolLM2's chat user turn written
    out by hand, weighted mean (weights 1..k) over the last k tokens, k = the text's own token count (the paper's
    embed mask): no l3prune code involved."""
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, dtype=torch.float32).eval()
    rows = []
    with torch.no_grad():
        for text, inst in items:
            full = "<|im_start|>user\n" + (f"{inst}; " if inst else "") + text + "<|im_end|>"
            ids = tok(full, truncation=True, max_length=max_length, return_tensors="pt")
            hidden = model(**ids).last_hidden_state[0]
            k = len(tok(text, add_special_tokens=False, truncation=True, max_length=max_length)["input_ids"])
            k = max(1, min(k, hidden.shape[0]))
            w = torch.arange(1, k + 1, dtype=torch.float32)
            v = (hidden[-k:] * w[:, None]).sum(0) / w.sum()
            rows.append((v / v.norm()).numpy())
    return np.stack(rows)


def write_jsonl(path: Path, items) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        for text, inst in items:
            fh.write(json.dumps({"text": text, **({"instruction": inst} if inst else {})}, ensure_ascii=False) + "\n")
    return path


def test_rows_equal_a_plain_transformers_reference_in_input_order(runs, tmp_path, schemas, capsys):
    items = texts_40()
    src = write_jsonl(tmp_path / "in.jsonl", items)
    out = tmp_path / "emb.npy"
    rc, _, err = run_inproc("encode", ["--run-dir", str(tmp_path / "run"), "--from-run", str(runs["train"]), "--input", str(src),
                                       "--output", str(out), "--batch-size", "7", "--device", "cpu"], capsys)
    assert rc == 0, err
    run, events = validate_run(tmp_path / "run", schemas)
    assert run["status"] == "succeeded" and run["spec"]["maxLength"] == 32 and run["spec"]["pooling"] == "weighted_mean"
    done = events[-1]
    assert done["event"] == "encoded" and done["rows"] == 40 and done["dim"] == 576 and done["numLayers"] == demo_runs.KEEP
    prog = [e for e in events if e["event"] == "progress"]
    assert prog[-1]["samplesDone"] == prog[-1]["samples"] == 40 and len(prog) == prog[-1]["batches"] == 6
    got = np.load(out)
    assert got.dtype == np.float32 and got.shape == (40, 576)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    ref = reference(runs["train"] / "model", items, 32)
    cos = (got * ref).sum(1)
    assert cos.min() >= 0.9999, (cos.min(), items[int(cos.argmin())])
    # Order: a row matches no other text's reference (texts that truncation makes equal excepted).
    distinct = ref @ ref.T < 0.9999
    assert distinct.sum() > 1000 and ((got @ ref.T)[distinct] < 0.9999).all()
    assert not (tmp_path / "emb.npy.partial").exists()


def test_streams_in_chunks_with_the_rows_of_one_pass(runs, tmp_path, monkeypatch, capsys):
    from l3prune import encode

    items = texts_40()
    lines = []
    for i, (t, inst) in enumerate(items):
        lines.append(t.replace("\n", " ") if inst is None else t.replace("\n", " "))
        if i % 9 == 0:
            lines.append("   ")  # blank lines give no row
    src = tmp_path / "in.txt"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    seen: list[int] = []
    real_embed = encode.embed

    def counting_embed(enc, texts, *a, **kw):
        seen.append(len(texts))
        return real_embed(enc, texts, *a, **kw)

    monkeypatch.setattr(encode, "embed", counting_embed)
    common = ["--from-run", str(runs["train"]), "--input", str(src), "--instruction", INSTRUCTION, "--device", "cpu", "--batch-size", "4"]
    monkeypatch.setattr(encode, "CHUNK_TEXTS", 100_000)
    assert run_inproc("encode", ["--run-dir", str(tmp_path / "one"), "--output", str(tmp_path / "one.npy"), *common], capsys)[0] == 0
    assert seen == [40]
    seen.clear()
    monkeypatch.setattr(encode, "CHUNK_TEXTS", 7)
    assert run_inproc("encode", ["--run-dir", str(tmp_path / "chunked"), "--output", str(tmp_path / "chunked.npy"), *common], capsys)[0] == 0
    # Never more than one chunk of texts (and so of rows) in memory at once.
    assert seen == [7, 7, 7, 7, 7, 5]
    one, chunked = np.load(tmp_path / "one.npy"), np.load(tmp_path / "chunked.npy")
    assert one.shape == chunked.shape == (40, 576)
    assert np.allclose(one, chunked, atol=1e-6)
    # --instruction applies to every line of a .txt file: the rows are the instructed reference's.
    ref = reference(runs["train"] / "model", [(t.replace("\n", " "), INSTRUCTION) for t, _ in items[:5]], 32)
    assert (chunked[:5] * ref).sum(1).min() >= 0.9999


def test_a_cancel_leaves_only_the_partial_file(runs, tmp_path, schemas):
    src = write_jsonl(tmp_path / "in.jsonl", texts_40())
    run_dir, out = tmp_path / "run", tmp_path / "emb.npy"
    p = subprocess.Popen([sys.executable, "-m", "l3prune", "encode", "--run-dir", str(run_dir), "--from-run", str(runs["train"]),
                          "--input", str(src), "--output", str(out), "--device", "cpu", "--debug-sleep-after-load", "60"],
                         cwd=WORKER, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (run_dir / "events.jsonl").exists() and any(e["event"] == "model_loaded" for e in read_events(run_dir)):
                break
            time.sleep(0.3)
        time.sleep(0.5)
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 128 + signal.SIGTERM, err
    run, events = validate_run(run_dir, schemas)
    assert run["status"] == "cancelled" and events[-1]["event"] == "cancelled"
    assert "emb.npy.partial" in run["error"]["message"]
    assert not out.exists() and (tmp_path / "emb.npy.partial").is_file()


@pytest.mark.parametrize("content, needle", [
    ('{"text": "fine"}\n{"txt": "typo"}\n', "in.jsonl:2: each line must be a JSON object with a string \"text\" field"),
    ('{"text": "fine"}\n\n{"text": "a", \n', "in.jsonl:3: not a JSON object"),
    ('{"text": "fine", "instruction": 3}\n', "in.jsonl:1: \"instruction\" must be a string"),
    ("\n  \n", "holds no texts"),
])
def test_bad_lines_are_refused_with_file_and_line_before_the_model_loads(runs, tmp_path, schemas, capsys, content, needle):
    src = tmp_path / "in.jsonl"
    src.write_text(content, encoding="utf-8")
    rc, _, err = run_inproc("encode", ["--run-dir", str(tmp_path / "run"), "--from-run", str(runs["train"]), "--input", str(src),
                                       "--output", str(tmp_path / "o.npy"), "--device", "cpu"], capsys)
    assert rc == 2 and needle in err and err.strip().count("\n") == 0, err
    run, events = validate_run(tmp_path / "run", schemas)
    assert run["status"] == "failed" and not any(e["event"] == "model_loaded" for e in events)
    assert not (tmp_path / "o.npy").exists() and not (tmp_path / "o.npy.partial").exists()


@pytest.mark.parametrize("case, needle", [
    ("exists", "already exists; choose a new --output"),
    ("suffix", "neither .jsonl nor .txt"),
    ("missing", "does not exist; pass the texts with --input"),
    ("npy", "--output"),
])
def test_bad_paths_are_refused_before_the_run_folder(runs, tmp_path, capsys, case, needle):
    src = write_jsonl(tmp_path / "in.jsonl", [("a", None)])
    out = tmp_path / "o.npy"
    if case == "exists":
        np.save(out, np.zeros(1))
    if case == "suffix":
        src = src.rename(tmp_path / "in.csv")
    if case == "missing":
        src = tmp_path / "nope.jsonl"
    if case == "npy":
        out = tmp_path / "o.bin"
    rc, _, err = run_inproc("encode", ["--run-dir", str(tmp_path / "run"), "--from-run", str(runs["train"]), "--input", str(src),
                                       "--output", str(out)], capsys)
    assert rc == 2 and needle in err, err
    assert not (tmp_path / "run").exists()
