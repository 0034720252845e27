"""Models named by a Hugging Face repo id: resolved from a hub cache laid out as huggingface_hub writes one (built
here, hub_cache.py), refused in one sentence when not cached, downloaded only with the command line's consent, and a
cache whose links leave it is not read."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import pytest

from conftest import DEMO_TRIPLES, read_events, run_inproc, validate_run, worker_cli
from hub_cache import COMMIT, add_snapshot

import l3prune
from l3prune import hfcache
from l3prune.encoder import check_model_dir


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "hub"
    folder.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(folder))
    return folder


@pytest.fixture
def offline(monkeypatch):
    """The user's environment says HF_HUB_OFFLINE=1 (as the worker's subprocesses in these tests see it)."""
    monkeypatch.setattr(l3prune, "HUB_OFFLINE_GIVEN", {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": None})


@pytest.fixture
def online(monkeypatch):
    monkeypatch.setattr(l3prune, "HUB_OFFLINE_GIVEN", {"HF_HUB_OFFLINE": None, "TRANSFORMERS_OFFLINE": None})


def test_the_cache_folder_follows_huggingface_hubs_rules(monkeypatch, tmp_path):
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    assert hfcache.hub_cache() == Path.home() / ".cache" / "huggingface" / "hub"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert hfcache.hub_cache() == tmp_path / "xdg" / "huggingface" / "hub"
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    assert hfcache.hub_cache() == tmp_path / "home" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    assert hfcache.hub_cache() == tmp_path / "hub"


def test_a_repo_id_is_told_from_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert hfcache.parse("Org/Name") == hfcache.RepoRef("Org/Name", "main", False)
    assert hfcache.parse(f"Org/Name@{COMMIT}") == hfcache.RepoRef("Org/Name", COMMIT, True)
    assert hfcache.parse("Org/Name@refs/pr/1").revision == "refs/pr/1"
    (tmp_path / "Org" / "Name").mkdir(parents=True)
    assert hfcache.parse("Org/Name") is None, "an existing folder is a folder"
    for path in ("/abs/Org/Name", "./Org/Other", "a/b/c", "~/m", "Org--x/Name", "Org/..", "name", "Org/Name/"):
        assert hfcache.parse(path) is None, path
    for bad in ("Org/Name@../../etc", "Org/Name@", "Org/Name@a b", "Org/Name@main.lock"):
        with pytest.raises(hfcache.CacheError, match="neither a branch, a tag nor a 40-digit commit hash"):
            hfcache.parse(bad)


def test_a_repo_id_resolves_to_its_snapshot_by_ref_and_by_commit(demo_model, cache):
    snapshot = add_snapshot(cache, "Org/Name", demo_model)
    for given in ("Org/Name", "Org/Name@main", f"Org/Name@{COMMIT}"):
        assert hfcache.resolve_model(given, allow_download=False) == str(snapshot), given
    # The snapshot is a model folder like any other: config.json, safetensors, the demo model's layers.
    check_model_dir(snapshot)
    layers = json.loads((demo_model / "config.json").read_text())["num_hidden_layers"]
    assert json.loads((snapshot / "config.json").read_text())["num_hidden_layers"] == layers
    assert os.path.samefile(snapshot / "model.safetensors", demo_model / "model.safetensors") or \
        (snapshot / "model.safetensors").stat().st_size == (demo_model / "model.safetensors").stat().st_size


def test_analyze_runs_on_a_repo_id_and_records_its_snapshot(demo_model, tmp_path, schemas):
    cache = tmp_path / "hub"
    snapshot = add_snapshot(cache, "HuggingFaceTB/SmolLM2-135M", demo_model)
    run_dir = tmp_path / "run"
    p = worker_cli("analyze", "--model", "HuggingFaceTB/SmolLM2-135M@main", "--data", str(DEMO_TRIPLES), "--run-dir", str(run_dir),
                   "--samples", "4", "--batch-size", "2", "--max-length", "16", "--device", "cpu", env={"HF_HUB_CACHE": str(cache)})
    assert p.returncode == 0, p.stderr
    run, events = validate_run(run_dir, schemas)
    assert run["spec"]["model"] == str(snapshot) and run["spec"]["allowDownload"] is False
    layers = json.loads((demo_model / "config.json").read_text())["num_hidden_layers"]
    assert [e["event"] for e in events][:2] == ["started", "model_loaded"], "a cached model downloads nothing"
    assert events[1]["numLayers"] == layers and len(events[-1]["losses"]) == layers


def test_a_missing_repo_id_is_refused_offline_in_one_sentence_before_any_run_folder(cache, tmp_path, capsys, offline):
    run_dir = tmp_path / "run"
    for consent in ([], ["--allow-download"]):
        rc, out, err = run_inproc("analyze", ["--model", "Org/Missing", "--data", str(tmp_path / "t.jsonl"), "--run-dir", str(run_dir), *consent], capsys)
        assert rc == 2 and out == ""
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert "Org/Missing is neither a model folder nor a model in the Hugging Face cache" in err and str(cache) in err
        assert "HF_HUB_OFFLINE" in err and "`hf download Org/Missing`" in err, err
        assert not run_dir.exists(), "refused before the run folder is made"


def test_a_missing_repo_id_without_consent_says_how_to_get_it(cache, tmp_path, capsys, online, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda *a, **k: pytest.fail("looked up the Hub without consent"))
    rc, _out, err = run_inproc("evaluate", ["--model", "Org/Missing@v1.0", "--run-dir", str(tmp_path / "run")], capsys)
    assert rc == 2
    assert "Org/Missing@v1.0 is neither a model folder nor a model in the Hugging Face cache" in err
    assert "only with --allow-download" in err and "`hf download Org/Missing --revision v1.0`" in err, err


def test_a_spec_file_cannot_allow_a_download(tmp_path, capsys):
    f = tmp_path / "spec.json"
    f.write_text(json.dumps({"model": "Org/Missing", "data": "t.jsonl", "allowDownload": True}))
    rc, _out, err = run_inproc("analyze", ["--spec", str(f), "--run-dir", str(tmp_path / "run")], capsys)
    assert rc == 2 and "sets allowDownload to true, but a model or an MTEB task's data is downloaded only when --allow-download is on the command line" in err, err


def test_convert_refuses_a_repo_id(cache, tiny_llama, capsys):
    add_snapshot(cache, "Org/Tiny", tiny_llama)
    rc, _out, err = run_inproc("convert-safetensors", ["--model", "Org/Tiny"], capsys)
    assert rc == 2 and "never writes into the Hugging Face cache" in err, err


# ---------------------------------------------------------------------------------------------------------------
# a cache that lies
def test_a_link_out_of_the_cache_is_refused(cache, tiny_llama, tmp_path):
    snapshot = add_snapshot(cache, "Org/Tiny", tiny_llama)
    secret = tmp_path / "secret.json"
    secret.write_text("{}")
    (snapshot / "config.json").unlink()
    (snapshot / "config.json").symlink_to(secret)
    with pytest.raises(hfcache.CacheError, match=r"config\.json links to .*secret\.json, outside the cache's blobs of models--Org--Tiny"):
        hfcache.resolve_model("Org/Tiny", allow_download=False)
    # A link to another repo's blobs is as far outside as any.
    other = add_snapshot(cache, "Org/Other", tiny_llama, refs=())
    (snapshot / "config.json").unlink()
    (snapshot / "config.json").symlink_to(os.path.realpath(other / "config.json"))
    with pytest.raises(hfcache.CacheError, match="outside the cache's blobs"):
        hfcache.resolve_model("Org/Tiny", allow_download=False)


def test_refs_that_are_no_commit_hash_are_refused(cache, tiny_llama, tmp_path):
    repo = add_snapshot(cache, "Org/Tiny", tiny_llama).parents[1]
    ref = repo / "refs" / "main"
    for text in ("../../../../" + str(tmp_path), "x" * 10_000, ""):
        ref.write_text(text)
        with pytest.raises(hfcache.CacheError, match="refs/main (does not hold a commit hash|is not a small regular file)"):
            hfcache.resolve_model("Org/Tiny", allow_download=False)
    ref.unlink()
    ref.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(hfcache.CacheError, match="is not a small regular file"):
        hfcache.resolve_model("Org/Tiny", allow_download=False)


def test_a_repo_or_blobs_folder_that_is_a_link_is_not_read_through(cache, tiny_llama, tmp_path):
    real = add_snapshot(tmp_path / "elsewhere", "Org/Tiny", tiny_llama).parents[1]
    (cache / real.name).symlink_to(real)
    with pytest.raises(hfcache.CacheError, match="is not a real folder"):
        hfcache.resolve_model("Org/Tiny", allow_download=False)
    repo = add_snapshot(cache, "Org/Blobs", tiny_llama).parents[1]
    (repo / "blobs").rename(tmp_path / "moved-blobs")
    (repo / "blobs").symlink_to(tmp_path / "moved-blobs")
    with pytest.raises(hfcache.CacheError, match="is not a real folder with real snapshots/ and blobs/ folders"):
        hfcache.resolve_model("Org/Blobs", allow_download=False)


# ---------------------------------------------------------------------------------------------------------------
# downloading, with consent (the Hub itself replaced: these tests never reach the network)
class FakeHub:
    """huggingface_hub's HfApi.model_info / hf_hub_download / snapshot_download over a local model folder: the files
    it lists are the folder's plus pickles, code and a README, which the download must leave alone."""

    def __init__(self, source: Path, cache: Path):
        self.source, self.cache, self.fetched = source, cache, []
        self.files = {p.name: p.stat().st_size for p in source.iterdir() if p.is_file()}
        self.files.update({"pytorch_model.bin": 10, "modeling_evil.py": 10, "README.md": 10, "onnx/model.onnx": 10})

    def install(self, monkeypatch):
        import huggingface_hub

        hub = self
        monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda _self, repo_id, **k: SimpleNamespace(
            sha=COMMIT, siblings=[SimpleNamespace(rfilename=n, size=s) for n, s in hub.files.items()]))
        monkeypatch.setattr(huggingface_hub, "hf_hub_download", self.hf_hub_download)
        real = huggingface_hub.snapshot_download

        def snapshot_download(repo_id, *, revision, cache_dir, allow_patterns, local_files_only=False):
            if not local_files_only:
                (Path(cache_dir) / ("models--" + repo_id.replace("/", "--")) / "refs").mkdir(exist_ok=True)
                (Path(cache_dir) / ("models--" + repo_id.replace("/", "--")) / "refs" / revision).write_text(COMMIT)
            return real(repo_id, revision=revision, cache_dir=cache_dir, allow_patterns=allow_patterns, local_files_only=True)

        monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)

    def hf_hub_download(self, repo_id, filename, *, revision, cache_dir):
        from huggingface_hub import constants

        assert not constants.HF_HUB_OFFLINE, "the worker's offline default is lifted for the download"
        assert revision == COMMIT, "files come from the one commit the Hub named"
        self.fetched.append(filename)
        one = self.cache / "one"
        one.mkdir(exist_ok=True)
        shutil.copyfile(self.source / filename, one / filename)
        add_snapshot(Path(cache_dir), repo_id, one, refs=())
        (one / filename).unlink()


def test_with_consent_only_safetensors_json_and_tokenizer_files_are_downloaded(cache, tiny_llama, tmp_path, online, monkeypatch, schemas):
    hub = FakeHub(tiny_llama, tmp_path)
    hub.install(monkeypatch)
    assert hfcache.resolve_model("Org/Tiny", allow_download=True) == "Org/Tiny", "left for the run to download"
    events = []
    spec = SimpleNamespace(model="Org/Tiny", allowDownload=True)
    run = SimpleNamespace(spec={"model": "Org/Tiny"}, emit=lambda kind, **f: events.append({"event": kind, **f}))
    job = SimpleNamespace(spec=spec, run=run, world=SimpleNamespace(distributed=False), state={})
    hfcache.fetch(job)
    snapshot = cache / "models--Org--Tiny" / "snapshots" / COMMIT
    assert spec.model == run.spec["model"] == str(snapshot), "the spec and run.json's copy of it name the snapshot"
    assert sorted(hub.fetched) == sorted(n for n in hub.files if n.endswith((".safetensors", ".json")) or n.startswith("tokenizer"))
    assert not any(n.endswith((".bin", ".py", ".md", ".onnx")) for n in hub.fetched)
    v = jsonschema.Draft202012Validator(schemas["events"], registry=schemas["registry"])
    for e in events:
        v.validate({"time": "2025-01-01T00:00:00.000Z", **e})
    assert [e["filesDone"] for e in events] == list(range(len(hub.fetched) + 1))
    assert events[-1]["bytesDone"] == events[-1]["bytes"] == sum(hub.files[n] for n in hub.fetched)
    check_model_dir(snapshot)
    # Now it is cached: the next run resolves it without the Hub.
    assert hfcache.resolve_model("Org/Tiny", allow_download=False) == str(snapshot)


def test_a_run_with_consent_downloads_then_loads_and_run_json_names_the_snapshot(cache, tiny_llama, tiny_triples, tmp_path, online,
                                                                                monkeypatch, capsys, schemas):
    FakeHub(tiny_llama, tmp_path).install(monkeypatch)
    run_dir = tmp_path / "run"
    rc, _out, err = run_inproc("analyze", ["--model", "Org/Tiny", "--allow-download", "--data", str(tiny_triples), "--run-dir", str(run_dir),
                                           "--samples", "4", "--batch-size", "2", "--device", "cpu"], capsys)
    assert rc == 0, err
    run, events = validate_run(run_dir, schemas)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "layer_losses" and kinds.index("model_loaded") > kinds.index("download")
    assert events[0]["spec"]["model"] == "Org/Tiny", "started holds the spec as given"
    assert run["spec"]["model"] == str(cache / "models--Org--Tiny" / "snapshots" / COMMIT) and run["spec"]["allowDownload"] is True
    assert len(read_events(run_dir, heartbeats=False)[-1]["losses"]) == 4


def test_no_download_without_consent_even_online(cache, online, monkeypatch):
    import huggingface_hub

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", lambda *a, **k: pytest.fail("looked up the Hub without consent"))
    job = SimpleNamespace(spec=SimpleNamespace(model="Org/Tiny", allowDownload=False), run=None, world=SimpleNamespace(distributed=False), state={})
    with pytest.raises(hfcache.CacheError, match="only with --allow-download"):
        hfcache.fetch(job)


# ---------------------------------------------------------------------------------------------------------------
# download-model: the verb the extension's "Open Hugging Face Model…" runs after its consent dialog
def test_download_model_prints_download_events_then_the_snapshot(cache, tiny_llama, tmp_path, online, monkeypatch, capsys, schemas):
    hub = FakeHub(tiny_llama, tmp_path)
    hub.install(monkeypatch)
    rc, out, err = run_inproc("download-model", ["--model", "Org/Tiny", "--allow-download"], capsys)
    assert rc == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    v = jsonschema.Draft202012Validator(schemas["events"], registry=schemas["registry"])
    for e in lines[:-1]:
        assert e["event"] == "download"
        v.validate(e)
    snapshot = cache / "models--Org--Tiny" / "snapshots" / COMMIT
    assert lines[-1] == {"event": "model_ready", "repoId": "Org/Tiny", "commit": COMMIT, "path": str(snapshot), "downloaded": True}
    # Cached now: the same command needs neither the Hub nor the consent.
    monkeypatch.setattr(__import__("huggingface_hub").HfApi, "model_info", lambda *a, **k: pytest.fail("looked up the Hub for a cached model"))
    rc, out, err = run_inproc("download-model", ["--model", f"Org/Tiny@{COMMIT}"], capsys)
    assert rc == 0, err
    assert json.loads(out) == {"event": "model_ready", "repoId": "Org/Tiny", "commit": COMMIT, "path": str(snapshot), "downloaded": False}


def test_download_model_refuses_without_consent_offline_and_for_a_folder(cache, tiny_llama, tmp_path, offline, capsys):
    rc, out, err = run_inproc("download-model", ["--model", "Org/Missing", "--allow-download"], capsys)
    assert rc == 2 and out == "" and "HF_HUB_OFFLINE" in err and "`hf download Org/Missing`" in err, err
    rc, out, err = run_inproc("download-model", ["--model", str(tiny_llama)], capsys)
    assert rc == 2 and "a model folder needs no download" in err, err


def test_the_worker_as_the_extension_starts_it_honours_an_offline_environment(tmp_path):
    """A real process: HF_HUB_OFFLINE=1 from its environment (the extension sets it unless the user allowed a
    download) wins over --allow-download, and the refusal is one sentence on stderr."""
    p = worker_cli("download-model", "--model", "Org/Missing", "--allow-download",
                   env={"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"})
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.count("\n") == 1 and "HF_HUB_OFFLINE" in p.stderr and str(tmp_path / "hub") in p.stderr, p.stderr
