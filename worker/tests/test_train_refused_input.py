"""A training run refused for its input records error kind "user" in run.json: the extension's isResumable reads
that kind (protocol/run.schema.json) and offers no Resume, since a resume reads the same spec and data back."""
from __future__ import annotations

from conftest import assert_failed_cleanly, worker_cli


def test_data_that_is_not_jsonl_fails_as_refused_input(tmp_path, tiny_llama, schemas):
    data = tmp_path / "triples.jsonl"
    data.write_text("query,positive,negative\nq,p,n\n", encoding="utf-8")
    run_dir = tmp_path / "run"
    p = worker_cli("train", "--run-dir", str(run_dir), "--model", str(tiny_llama), "--keep", "2", "--data", str(data),
                   "--steps", "1", "--batch-size", "2", "--max-length", "16", "--device", "cpu")
    run = assert_failed_cleanly(p, run_dir, schemas, f"{data}:1", "not valid JSON", kind="user")
    # What the host's check quotes for the same file (src/runs/dataCheck.ts): the file and the line.
    assert run["error"]["message"].startswith(f"{data}:1:")


def test_a_missing_field_fails_as_refused_input_naming_its_line(tmp_path, tiny_llama, schemas):
    data = tmp_path / "triples.jsonl"
    data.write_text('{"query": "q", "positive": "p", "negative": "n"}\n{"query": "q", "positive": "p"}\n', encoding="utf-8")
    run_dir = tmp_path / "run"
    p = worker_cli("train", "--run-dir", str(run_dir), "--model", str(tiny_llama), "--keep", "2", "--data", str(data),
                   "--steps", "1", "--batch-size", "2", "--max-length", "16", "--device", "cpu")
    assert_failed_cleanly(p, run_dir, schemas, f"{data}:2", "negative", kind="user")
