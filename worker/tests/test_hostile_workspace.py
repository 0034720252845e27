"""Hostile workspaces, the worker's half: run folders, model folders and spec files can all come from a cloned
repository. Each test builds the shipped fixture and proves that its payload never runs (a marker file that the
model folder's own code would write stays absent), that its victim file is unchanged, or that the worker refuses
in one sentence before touching anything (docs/reliability.md, "Hostile workspace")."""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from conftest import TRIPLES, make_remote_code_model, run_inproc, validate_run, worker_cli
from test_convert import pickle_copy

VICTIM_TEXT = "export PATH=/usr/bin  # the user's own file\n"


@pytest.fixture()
def victim(tmp_path) -> Path:
    v = tmp_path / "victim" / ".bashrc"
    v.parent.mkdir()
    v.write_text(VICTIM_TEXT)
    return v


def unchanged(victim: Path) -> bool:
    return victim.read_text() == VICTIM_TEXT


def one_sentence(p: subprocess.CompletedProcess, *needles: str) -> str:
    assert p.returncode == 2, (p.returncode, p.stdout[-2000:], p.stderr[-2000:])
    err = p.stderr.strip()
    assert err.count("\n") == 0, f"one sentence on stderr, got: {err!r}"
    for n in needles:
        assert n in err, (n, err)
    return err


@pytest.fixture()
def evil(tiny_llama, tmp_path) -> tuple[Path, Path]:
    """(model folder whose config.json auto_map names a payload, the marker the payload would write)."""
    marker = tmp_path / "PAYLOAD-RAN"
    return make_remote_code_model(tiny_llama, tmp_path / "evil-model", marker), marker


def modules_env(tmp_path: Path) -> dict:
    # Where transformers would copy a model's own code: inside the test's folder, not the user's cache.
    return {"HF_MODULES_CACHE": str(tmp_path / "hf-modules")}


def train_spec(model: Path, data: Path, **extra) -> dict:
    return {"model": str(model), "data": str(data), "keep": 2, "steps": 2, "batchSize": 4, "maxLength": 32, "warmupSteps": 0,
            "checkpointEvery": 1, "device": "cpu", "trustRemoteCode": True, **extra}


def ship_run(run_dir: Path, spec: dict, status: str = "failed", **extra) -> Path:
    """A run folder as a repository would ship it: run.json with the given spec and status, an events.jsonl."""
    run_dir.mkdir(parents=True)
    state = {"schemaVersion": 1, "runId": run_dir.name, "verb": "train", "spec": spec, "status": status, "pid": 1,
             "startedAt": "2026-01-01T00:00:00.000Z", "heartbeatAt": "2026-01-01T00:00:00.000Z", "endedAt": None,
             "error": None, "result": None, **extra}
    (run_dir / "run.json").write_text(json.dumps(state))
    (run_dir / "events.jsonl").write_text(json.dumps({"event": "heartbeat", "time": "2026-01-01T00:00:00.000Z"}) + "\n")
    return run_dir


def write_sts(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "sts.jsonl", "w", encoding="utf-8") as fh:
        for i, (q, p, n) in enumerate(TRIPLES[:8]):
            fh.write(json.dumps({"sentence1": q, "sentence2": p if i % 2 else n, "score": float(i % 5)}) + "\n")
    return folder


# ---------------------------------------------------------------------------------------------------------------
# 1. consent is never data
@pytest.mark.parametrize("verb", ["analyze", "train", "evaluate", "export-onnx"])
@pytest.mark.parametrize("spelling", ["trustRemoteCode", "trust_remote_code"])
def test_a_spec_file_that_sets_trust_remote_code_is_refused_before_anything_runs(verb, spelling, evil, tiny_triples, tmp_path, capsys):
    model, marker = evil
    spec = {"model": str(model), spelling: True}
    if verb in ("analyze", "train"):
        spec["data"] = str(tiny_triples)
    if verb == "train":
        spec["keep"] = 2
    f = tmp_path / "spec.json"
    f.write_text(json.dumps(spec))
    run_dir = tmp_path / "run"
    rc, _, err = run_inproc(verb, ["--run-dir", str(run_dir), "--spec", str(f)], capsys)
    assert rc == 2 and err.count("\n") == 1, err
    assert "sets trustRemoteCode" in err and "--trust-remote-code" in err and "pass the flag instead" in err, err
    assert not run_dir.exists() and not marker.exists()


def test_a_spec_file_that_says_false_is_accepted_and_the_flag_alone_decides(tiny_llama, tiny_triples, tmp_path):
    from l3prune import specs
    from l3prune.train import spec_from_args

    f = tmp_path / "spec.json"
    f.write_text(json.dumps({"model": str(tiny_llama), "data": str(tiny_triples), "keep": 2, "trustRemoteCode": False}))
    ns = argparse.Namespace(**{k: None for k in specs.fields("train")}, spec=str(f), resume=False, run_dir=str(tmp_path / "r"))
    assert spec_from_args(ns).trustRemoteCode is False
    spec = spec_from_args(ns)
    specs.apply_consent(spec, argparse.Namespace(trustRemoteCode=True))
    assert spec.trustRemoteCode is True
    specs.apply_consent(spec, argparse.Namespace())
    assert spec.trustRemoteCode is False


def test_resume_of_a_shipped_run_never_runs_its_model_code_without_the_flag(evil, tiny_triples, tmp_path, schemas):
    """run.json says trustRemoteCode true; --resume alone fails in one sentence and the payload never runs. The same
    folder resumed with --trust-remote-code (the user's consent on this command line) does run it: the flag, and
    only the flag, decides."""
    model, marker = evil
    run_dir = ship_run(tmp_path / ".l3prune" / "runs" / "shipped", train_spec(model, tiny_triples))
    env = modules_env(tmp_path)
    p = worker_cli("train", "--run-dir", str(run_dir), "--resume", "--heartbeat-seconds", "0.5", env=env)
    one_sentence(p, "--trust-remote-code", "auto_map")
    assert not marker.exists(), "the model folder's code ran on --resume without the flag"
    run, _ = validate_run(run_dir, schemas)
    assert run["status"] == "failed" and run["spec"]["trustRemoteCode"] is False, "run.json records what this invocation was given"

    p = worker_cli("train", "--run-dir", str(run_dir), "--resume", "--trust-remote-code", "--heartbeat-seconds", "0.5", env=env)
    assert "leave out" not in p.stderr, "--resume accepts --trust-remote-code"
    assert marker.exists(), f"with the flag the code runs (the fixture is live): {p.stderr[-1000:]}"
    run, _ = validate_run(run_dir, schemas)
    assert run["spec"]["trustRemoteCode"] is True


def test_resume_accepts_only_the_consent_flag(tiny_llama, tiny_triples, tmp_path):
    from l3prune import specs
    from l3prune.train import resume_spec

    run_dir = ship_run(tmp_path / "run", train_spec(tiny_llama, tiny_triples))

    def ns(**flags) -> argparse.Namespace:
        return argparse.Namespace(**{**{k: None for k in specs.fields("train")}, **flags}, spec=None, resume=True, run_dir=str(run_dir))

    assert resume_spec(ns()).trustRemoteCode is False, "run.json's true is no consent"
    assert resume_spec(ns(trustRemoteCode=True)).trustRemoteCode is True
    assert resume_spec(ns(trustRemoteCode=False)).trustRemoteCode is False
    with pytest.raises(ValueError, match="leave out --steps"):
        resume_spec(ns(steps=3))


@pytest.mark.parametrize("verb", ["evaluate", "export-onnx"])
@pytest.mark.parametrize("merged", [True, False], ids=["merged-model", "base-plus-adapter"])
def test_a_shipped_train_run_never_lends_its_consent_to_from_run(verb, merged, evil, tiny_llama, tmp_path, schemas):
    """A finished train run (spec trustRemoteCode true) whose merged model/ (or base model) asks for its own code,
    with "trustRemoteCode": true in l3prune_encoder.json too: --from-run fails in one sentence, nothing runs."""
    model, marker = evil
    train_run = tmp_path / "ws" / ".l3prune" / "runs" / "t1"
    ship_run(train_run, train_spec(model, tmp_path / "absent.jsonl", pooling="mean"), status="succeeded")
    if merged:
        shutil.copytree(model, train_run / "model")
        (train_run / "model" / "l3prune_encoder.json").write_text(json.dumps(
            {"pooling": "mean", "maxLength": 32, "keep": 2, "sourceModel": str(model), "scale": 50, "trustRemoteCode": True}))
    else:
        (train_run / "adapter").mkdir()
        (train_run / "adapter" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    run_dir = tmp_path / "out-run"
    extra = ["--data-dir", str(write_sts(tmp_path / "data")), "--tasks", "sts"] if verb == "evaluate" else []
    p = worker_cli(verb, "--run-dir", str(run_dir), "--from-run", str(train_run), *extra, env=modules_env(tmp_path))
    one_sentence(p, "--trust-remote-code")
    assert not marker.exists(), f"{verb} --from-run ran the shipped model's code"
    run, _ = validate_run(run_dir, schemas)
    assert run["spec"]["trustRemoteCode"] is False and run["spec"]["pooling"] == "mean", "pooling is taken, consent is not"


def test_a_merged_model_folder_given_as_model_brings_no_consent(evil, tmp_path, schemas):
    model, marker = evil
    info = {"pooling": "mean", "maxLength": 32, "keep": 2, "sourceModel": str(model), "scale": 50, "trustRemoteCode": True}
    (model / "l3prune_encoder.json").write_text(json.dumps(info))
    run_dir = tmp_path / "run"
    p = worker_cli("export-onnx", "--run-dir", str(run_dir), "--model", str(model), env=modules_env(tmp_path))
    one_sentence(p, "--trust-remote-code")
    assert not marker.exists()
    run, _ = validate_run(run_dir, schemas)
    assert run["spec"]["trustRemoteCode"] is False and run["spec"]["pooling"] == "mean"


def test_a_tokenizer_that_asks_for_its_own_code_never_runs_it_without_consent(tiny_llama, tmp_path):
    """auto_map in tokenizer_config.json only (config.json is clean), which the worker's own check does not look at:
    transformers, told trust_remote_code=False, loads the tokenizer class it knows (or refuses); the payload never
    runs."""
    from l3prune.encoder import ModelError, load_encoder

    marker = tmp_path / "PAYLOAD-RAN"
    model = make_remote_code_model(tiny_llama, tmp_path / "evil-tok", marker, via="tokenizer_config.json")
    try:
        enc = load_encoder(model)
        assert type(enc.tokenizer).__name__ != "EvilTokenizer"
    except ModelError:
        pass
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------------------------
# 2. no write follows a link we did not make
@pytest.mark.parametrize("shards", [1, 2])
def test_convert_never_writes_through_links_planted_under_its_temp_names(tiny_llama, tmp_path, victim, shards):
    """A pickle-only model folder shipping links to the victim under every name the conversion ever used for temp
    files, and a tensor named like a shell command: the conversion writes through fresh names of its own."""
    from safetensors.torch import load_file

    folder = pickle_copy(tiny_llama, tmp_path / "pickled", shards=shards)
    if shards == 2:
        part = folder / "pytorch_model-00002-of-00002.bin"
        state = torch.load(part, weights_only=True)
        state["$(touch PWNED)`touch PWNED`"] = torch.zeros(2)
        torch.save(state, part)
        index = json.loads((folder / "pytorch_model.bin.index.json").read_text())
        index["weight_map"]["$(touch PWNED)`touch PWNED`"] = part.name
        (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index))
    names = [".model.safetensors.index.json.tmp", ".model.safetensors.tmp",
             *(f".model-{i:05d}-of-{shards:05d}.safetensors.tmp" for i in range(1, shards + 1))]
    for n in names:
        os.symlink(victim, folder / n)
    p = worker_cli("convert-safetensors", "--model", str(folder))
    assert p.returncode == 0, p.stderr
    assert unchanged(victim), "the conversion wrote through a shipped link"
    for n in names:
        assert os.readlink(folder / n) == str(victim), "someone else's link is left as it was"
    files = json.loads(p.stdout)["files"]
    for f in files:
        assert (folder / f).is_file() and not (folder / f).is_symlink()
        load_file(str(folder / f))
    if shards == 2:
        index = json.loads((folder / "model.safetensors.index.json").read_text())
        assert index["weight_map"]["$(touch PWNED)`touch PWNED`"] in files
    assert not list(folder.glob(".convert-*")), "the staging folder is gone"
    assert not (folder / "PWNED").exists() and not (Path.cwd() / "PWNED").exists()


def test_a_shipped_events_jsonl_link_is_refused_on_resume(tiny_llama, tiny_triples, tmp_path, victim):
    """reopen would truncate events.jsonl's torn tail: through a link that would cut the victim."""
    from l3prune.events import RunFolder, RunFolderError

    run_dir = ship_run(tmp_path / "run", train_spec(tiny_llama, tiny_triples))
    (run_dir / "events.jsonl").unlink()
    victim.write_text(VICTIM_TEXT + "no newline at the end")
    os.symlink(victim, run_dir / "events.jsonl")
    before = (run_dir / "run.json").read_bytes()
    with pytest.raises(RunFolderError, match="symbolic links \\(events.jsonl\\)"):
        RunFolder(run_dir, "train", {}).reopen()
    assert victim.read_text() == VICTIM_TEXT + "no newline at the end" and (run_dir / "run.json").read_bytes() == before


def test_open_append_refuses_links_hard_links_and_fifos_without_blocking(tmp_path, victim):
    from l3prune.fileio import UnsafePathError, open_append

    os.symlink(victim, tmp_path / "link")
    os.link(victim, tmp_path / "hard")
    os.mkfifo(tmp_path / "fifo")
    os.symlink(tmp_path / "nowhere", tmp_path / "dangling")
    for name, what in [("link", "symbolic link"), ("hard", "hard link"), ("fifo", "not a regular file"), ("dangling", "symbolic link")]:
        with pytest.raises(UnsafePathError, match=what):
            open_append(tmp_path / name)
    assert unchanged(victim) and not (tmp_path / "nowhere").exists()
    fd = open_append(tmp_path / "new.jsonl")
    os.write(fd, b"x\n")
    os.close(fd)
    with pytest.raises(FileExistsError):
        open_append(tmp_path / "new.jsonl", empty=True)


def test_reopen_cuts_a_torn_tail_reading_backwards(tmp_path):
    from l3prune.fileio import cut_torn_tail, open_append

    cases = [(b"", b""), (b"a\n", b"a\n"), (b"a\nb", b"a\n"), (b"torn", b""), (b"a\n" + b"x" * 200_000, b"a\n"),
             (b"y" * 150_000 + b"\n" + b"z" * 10, b"y" * 150_000 + b"\n")]
    for i, (data, want) in enumerate(cases):
        f = tmp_path / f"e{i}.jsonl"
        f.write_bytes(data)
        fd = open_append(f)
        cut_torn_tail(fd, chunk=4096)
        os.close(fd)
        assert f.read_bytes() == want, i


def test_a_new_run_refuses_a_folder_holding_links_or_an_events_link(tmp_path, victim):
    from l3prune.events import RunFolder, RunFolderError

    d = tmp_path / "pre-made"
    d.mkdir()
    empty_victim = tmp_path / "victim" / "empty"
    empty_victim.write_text("")
    os.symlink(empty_victim, d / "events.jsonl")
    with pytest.raises(RunFolderError, match="symbolic links"):
        RunFolder(d, "analyze", {}).open()
    assert empty_victim.read_text() == "" and not (d / "run.json").exists()
    os.unlink(d / "events.jsonl")
    os.symlink(tmp_path / "nowhere", d / "run.json")
    with pytest.raises(RunFolderError):
        RunFolder(d, "analyze", {}).open()
    assert not (tmp_path / "nowhere").exists()


def test_atomic_json_writes_never_open_a_planted_temp_name_and_replace_a_link(tmp_path, victim, monkeypatch):
    """fileio.write_json_atomic (run.json, results, checkpoint JSON): its temp file is created O_EXCL|O_NOFOLLOW
    under a random name; one that someone planted (here: the very name the next write picks) is skipped, and a
    link under the target's own name is replaced by the rename, not written through."""
    from l3prune import fileio

    tokens = iter(["deadbeef", "deadbeef", "0badcafe"])
    monkeypatch.setattr(fileio.secrets, "token_hex", lambda _n: next(tokens))
    os.symlink(victim, tmp_path / f".run.json.{os.getpid()}.deadbeef.tmp")
    os.symlink(victim, tmp_path / "run.json")
    fileio.write_json_atomic(tmp_path / "run.json", {"status": "running"})
    assert unchanged(victim)
    assert not (tmp_path / "run.json").is_symlink() and json.loads((tmp_path / "run.json").read_text()) == {"status": "running"}
    assert os.readlink(tmp_path / f".run.json.{os.getpid()}.deadbeef.tmp") == str(victim)
    assert not (tmp_path / f".run.json.{os.getpid()}.0badcafe.tmp").exists()


def test_fresh_temp_folders_fail_on_a_link_rather_than_write_through_it(tmp_path):
    from l3prune.fileio import make_fresh_dir

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, tmp_path / ".adapter.tmp-123")
    with pytest.raises(FileExistsError):
        make_fresh_dir(tmp_path / ".adapter.tmp-123")
    assert list(elsewhere.iterdir()) == [] and (tmp_path / ".adapter.tmp-123").is_symlink()
    (tmp_path / ".model.tmp-1" / "old").mkdir(parents=True)
    make_fresh_dir(tmp_path / ".model.tmp-1")
    assert list((tmp_path / ".model.tmp-1").iterdir()) == []


LINKS = ["events.jsonl", "worker.log", "checkpoints", "checkpoints/step-00000001", "checkpoints/step-00000001/state.json",
         "adapter", ".adapter.tmp-4242", "model/config.json", "."]


@pytest.mark.parametrize("where", LINKS)
def test_resume_refuses_a_run_folder_with_links_before_touching_it(where, tiny_llama, tiny_triples, tmp_path, victim, capsys):
    real = ship_run(tmp_path / "real-run", train_spec(tiny_llama, tiny_triples, trustRemoteCode=False))
    (real / "checkpoints" / "step-00000001").mkdir(parents=True)
    (real / "model").mkdir()
    run_dir = real
    if where == ".":
        run_dir = tmp_path / "linked-run"
        os.symlink(real, run_dir)
    else:
        target = real / where
        if target.exists():
            if target.is_dir():
                shutil.rmtree(target)
            else:
                target.unlink()
        os.symlink(victim.parent if where in ("checkpoints", "checkpoints/step-00000001", "adapter", ".adapter.tmp-4242") else victim, target)
    before = {p: p.read_bytes() for p in real.rglob("*") if p.is_file() and not p.is_symlink()}
    rc, _, err = run_inproc("train", ["--run-dir", str(run_dir), "--resume"], capsys)
    assert rc == 2 and err.count("\n") == 1, err
    assert "contains symbolic links" in err and (where in err), err
    assert unchanged(victim) and sorted(os.listdir(victim.parent)) == [".bashrc"]
    assert {p: p.read_bytes() for p in real.rglob("*") if p.is_file() and not p.is_symlink()} == before, "nothing in the folder changed"


@pytest.mark.parametrize("verb", ["evaluate", "export-onnx"])
def test_from_run_refuses_a_train_run_folder_with_links(verb, tiny_llama, tmp_path, victim, capsys):
    train_run = ship_run(tmp_path / "t1", train_spec(tiny_llama, tmp_path / "d.jsonl", trustRemoteCode=False), status="succeeded")
    (train_run / "model").mkdir()
    os.symlink(victim, train_run / "model" / "config.json")
    run_dir = tmp_path / "out"
    rc, _, err = run_inproc(verb, ["--run-dir", str(run_dir), "--from-run", str(train_run)], capsys)
    assert rc == 2 and "contains symbolic links (model/config.json)" in err and err.count("\n") == 1, err
    assert not run_dir.exists() and unchanged(victim)


# ---------------------------------------------------------------------------------------------------------------
# 3. bounded reads
def test_a_run_json_past_one_megabyte_is_not_read(tiny_llama, tiny_triples, tmp_path, capsys):
    spec = train_spec(tiny_llama, tiny_triples, trustRemoteCode=False)
    big = ship_run(tmp_path / "big", spec, status="succeeded", padding="x" * (1024 * 1024 + 10))
    rc, _, err = run_inproc("train", ["--run-dir", str(big), "--resume"], capsys)
    assert rc == 2 and "too large" in err and err.count("\n") == 1, err
    rc, _, err = run_inproc("evaluate", ["--run-dir", str(tmp_path / "e"), "--from-run", str(big)], capsys)
    assert rc == 2 and "too large" in err and err.count("\n") == 1, err
    assert not (tmp_path / "e").exists()


def test_read_json_reads_no_further_than_its_limit_even_if_the_file_grows(tmp_path, monkeypatch):
    from l3prune import fileio

    f = tmp_path / "run.json"
    f.write_text(json.dumps({"a": "x" * 100}))
    assert fileio.read_json(f, limit=200)["a"] == "x" * 100
    real_stat = Path.stat
    # stat says small, the file is large (it grew after stat): still refused, without reading it all.
    f.write_text(json.dumps({"a": "x" * 10_000}))
    monkeypatch.setattr(Path, "stat", lambda self, **kw: os.stat_result((0o100644, 0, 0, 1, 0, 0, 10, 0, 0, 0)) if self == f else real_stat(self, **kw))
    with pytest.raises(fileio.JsonFileError, match="more than 200 bytes"):
        fileio.read_json(f, limit=200)
