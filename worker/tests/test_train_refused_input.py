"""A training run refused for its input records error.resumable false in run.json (protocol/run.schema.json): the
extension's isResumable offers no Resume, since a resume reads the same spec and data back. A busy device is the
machine's state, not the input's: that failure stays resumable."""
from __future__ import annotations

import pytest
from conftest import assert_failed_cleanly, worker_cli


def train_once(run_dir, model, data, env=None):
    return worker_cli("train", "--run-dir", str(run_dir), "--model", str(model), "--keep", "2", "--data", str(data),
                      "--steps", "1", "--batch-size", "2", "--max-length", "16", "--device", "cpu", env=env)


@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        pytest.param("query,positive,negative\nq,p,n\n", 1, "not valid JSON", id="not-jsonl"),
        pytest.param('{"query": "q", "positive": "p", "negative": "n"}\n{"query": "q", "positive": "p"}\n', 2, "negative", id="missing-field"),
    ],
)
def test_bad_data_fails_as_refused_input_naming_its_line(tmp_path, tiny_llama, schemas, content, line, words):
    data = tmp_path / "triples.jsonl"
    data.write_text(content, encoding="utf-8")
    run_dir = tmp_path / "run"
    run = assert_failed_cleanly(train_once(run_dir, tiny_llama, data), run_dir, schemas, f"{data}:{line}", words, kind="user")
    assert run["error"]["resumable"] is False
    # What the host's check quotes for the same file (src/runs/dataCheck.ts): the file and the line.
    assert run["error"]["message"].startswith(f"{data}:{line}:")


def test_a_busy_device_stays_resumable(tmp_path, tiny_llama, tiny_triples, schemas, monkeypatch):
    from l3prune.devicelock import DeviceLock

    monkeypatch.setenv("L3PRUNE_LOCK_DIR", str(tmp_path / "locks"))
    holder = DeviceLock("cpu", tmp_path / "other-run")
    holder.acquire()
    try:
        run_dir = tmp_path / "run"
        p = train_once(run_dir, tiny_llama, tiny_triples, env={"L3PRUNE_LOCK_DIR": str(tmp_path / "locks")})
    finally:
        holder.release()
    run = assert_failed_cleanly(p, run_dir, schemas, "busy", kind="user")
    assert "resumable" not in run["error"]
