"""The CLI as the extension runs it: a subprocess, a run folder, stdout lines, exit codes, signals."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import jsonschema
import pytest

from conftest import assert_failed_cleanly, validate_run, write_triples
from conftest import worker_cli as cli


def test_schemas_are_valid_draft_2020_12(schemas):
    jsonschema.Draft202012Validator.check_schema(schemas["events"])
    jsonschema.Draft202012Validator.check_schema(schemas["run"])


def test_analyze_writes_a_valid_run_folder_and_ends_with_layer_losses(tiny_llama, tiny_triples, tmp_path, schemas):
    run_dir = tmp_path / "run"
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"model": str(tiny_llama), "data": str(tiny_triples), "samples": 4, "batchSize": 2, "pooling": "mean"}))
    # Flags override the spec file.
    p = cli("analyze", "--spec", str(spec), "--samples", "10", "--batch-size", "4", "--run-dir", str(run_dir), "--heartbeat-seconds", "0.05")
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    run, events = validate_run(run_dir, schemas)
    lines = [e for e in map(json.loads, p.stdout.splitlines()) if e["event"] != "heartbeat"]
    assert lines == events, "stdout carries exactly the events of events.jsonl"
    assert events[0]["event"] == "started" and events[-1]["event"] == "layer_losses"
    last = events[-1]
    assert len(last["losses"]) == len(last["blockInfluence"]) == len(last["angularDistance"]) == 4
    # 10 sampled, cut into full batches of 4 (the paper's sample): 2 batches, the short one dropped, 8 triples used.
    assert last["samples"] == 8 and last["pooling"] == "mean"
    progress = [e for e in events if e["event"] == "progress"]
    assert [e["batch"] for e in progress] == [1, 2] and progress[-1]["samplesDone"] == 8
    # The cut's uncertainty from the same two batches: a spread per depth and bootstrap shares that back the cuts.
    stability = last["cutStability"]
    assert stability["batches"] == 2 and len(stability["lossStd"]) == 4
    assert abs(sum(stability["smallShare"]) - 1) < 1e-9 and abs(sum(stability["largeShare"]) - 1) < 1e-9
    assert stability["small"] == stability["smallShare"][last["small"] - 1] > 0
    assert stability["large"] == stability["largeShare"][last["large"] - 1] > 0
    assert run["status"] == "succeeded" and run["result"]["small"] == last["small"] and run["endedAt"]
    assert run["spec"]["samples"] == 10 and run["spec"]["batchSize"] == 4 and run["spec"]["pooling"] == "mean"


def test_a_used_run_folder_is_refused(tiny_llama, tiny_triples, tmp_path):
    run_dir = tmp_path / "run"
    assert cli("analyze", "--model", str(tiny_llama), "--data", str(tiny_triples), "--run-dir", str(run_dir), "--samples", "2", "--batch-size", "2").returncode == 0
    p = cli("analyze", "--model", str(tiny_llama), "--data", str(tiny_triples), "--run-dir", str(run_dir), "--samples", "2", "--batch-size", "2")
    assert p.returncode != 0 and "already holds a run" in p.stderr


def test_bad_data_line_fails_with_file_and_line(tiny_llama, tmp_path, schemas):
    data = write_triples(tmp_path / "d.jsonl", 3)
    with open(data, "a", encoding="utf-8") as fh:
        fh.write('{"query": "q", "positive": "p"}\n')
    p = cli("analyze", "--model", str(tiny_llama), "--data", str(data), "--run-dir", str(tmp_path / "r"))
    assert_failed_cleanly(p, tmp_path / "r", schemas, f"{data}:4:", "negative")


def test_missing_model_fails_clearly(tiny_triples, tmp_path, schemas):
    p = cli("analyze", "--model", str(tmp_path / "no-model"), "--data", str(tiny_triples), "--run-dir", str(tmp_path / "r"), "--batch-size", "4")
    assert_failed_cleanly(p, tmp_path / "r", schemas, "does not exist", "--model")


def test_pickle_only_model_is_refused(tiny_triples, tmp_path, schemas):
    m = tmp_path / "bin-model"
    m.mkdir()
    (m / "config.json").write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 2}))
    (m / "pytorch_model.bin").write_bytes(b"\x80\x02not really a pickle")
    p = cli("analyze", "--model", str(m), "--data", str(tiny_triples), "--run-dir", str(tmp_path / "r"), "--batch-size", "4")
    assert_failed_cleanly(p, tmp_path / "r", schemas, "pickle", "safetensors")


def test_remote_code_needs_the_explicit_flag(tiny_llama, tiny_triples, tmp_path, schemas):
    import shutil

    m = tmp_path / "remote"
    shutil.copytree(tiny_llama, m)
    cfg = json.loads((m / "config.json").read_text())
    cfg["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (m / "config.json").write_text(json.dumps(cfg))
    p = cli("analyze", "--model", str(m), "--data", str(tiny_triples), "--run-dir", str(tmp_path / "r"), "--batch-size", "4")
    assert_failed_cleanly(p, tmp_path / "r", schemas, "--trust-remote-code")


def test_invalid_spec_is_refused_before_a_run_folder_exists(tiny_llama, tiny_triples, tmp_path):
    p = cli("analyze", "--model", str(tiny_llama), "--data", str(tiny_triples), "--run-dir", str(tmp_path / "r"), "--samples", "0")
    assert p.returncode == 2 and "samples" in p.stderr and not (tmp_path / "r" / "run.json").exists()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_mid_run_leaves_run_json_cancelled(tiny_llama, tmp_path, schemas, sig):
    data = write_triples(tmp_path / "many.jsonl", 4000)
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "l3prune", "analyze", "--model", str(tiny_llama), "--data", str(data), "--run-dir", str(run_dir),
         "--samples", "4000", "--batch-size", "1", "--heartbeat-seconds", "0.05"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        seen = 0
        for line in proc.stdout:  # wait until batches are really being processed
            if json.loads(line)["event"] == "progress":
                seen += 1
                if seen >= 3:
                    break
            assert time.monotonic() < deadline
        proc.send_signal(sig)
        proc.stdout.read()
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 128 + sig
    assert "cancelled" in proc.stderr.read()
    run, events = validate_run(run_dir, schemas)
    assert run["status"] == "cancelled" and run["endedAt"] is not None
    assert events[-1] == {**events[-1], "event": "cancelled", "signal": sig.name}
    assert any(e["event"] == "progress" for e in events)
    assert not any(e["event"] == "layer_losses" for e in events)
