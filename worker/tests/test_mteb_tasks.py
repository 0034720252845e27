"""Real MTEB tasks on local data: the adapter (mteb.get_task -> load_data from the datasets cache -> mteb.evaluate)
scores exactly what the built-in task of the same type scores on the same data, and `mteb-tasks` says which tasks
run offline.

The reference is mteb itself end to end: each built-in task's data is written into the datasets cache as the real
MTEB task of its type (mteb_cache.REAL_TASKS) reads it, under that task's repo id and revision, and the real task
object loads it offline with its own loader and transforms and scores it with its own evaluator."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from conftest import validate_run, worker_cli
from mteb_cache import REAL_TASKS, wrap_builtin
from test_mteb_agreement import require_mteb
from l3prune import evaltasks as T

CAP = 40
INSTRUCTION = "Represent the text for retrieval:"


def trigram_embed(texts) -> np.ndarray:
    """A deterministic, non-trivial encoder (hashed character trigrams of instruction and text): both paths embed
    through it, so equal scores mean equal texts, instructions, splits, seeds and evaluators."""
    out = np.zeros((len(texts), 256), dtype=np.float32)
    for r, t in enumerate(texts):
        s = t if isinstance(t, str) else f"{t.instruction} | {t.text}"
        s = f"  {s.lower()}  "
        for i in range(len(s) - 2):
            out[r, int(hashlib.md5(s[i : i + 3].encode()).hexdigest()[:6], 16) % 256] += 1
    return out


@pytest.fixture(scope="module")
def datasets_cache(tmp_path_factory, eval_data) -> Path:
    require_mteb()
    cache = tmp_path_factory.mktemp("hf-datasets")
    for load in T.LOADERS.values():
        wrap_builtin(cache, load(eval_data, CAP))
    return cache


@pytest.fixture
def use_cache(datasets_cache, monkeypatch):
    from datasets import config

    monkeypatch.setattr(config, "HF_DATASETS_CACHE", str(datasets_cache))
    return datasets_cache


@pytest.mark.parametrize("key", T.TASK_KEYS)
def test_a_real_mteb_task_on_local_data_scores_as_the_built_in_task(key, eval_data, use_cache):
    import mteb
    from l3prune import mteb_adapter as A

    task = T.LOADERS[key](eval_data, CAP)
    name = REAL_TASKS[task.type]
    seed = 42  # mteb's own task seed, which the real task keeps
    builtin, engine = task.score(trigram_embed(task.inputs(INSTRUCTION)), seed)
    assert engine == T.ENGINE_MTEB
    real = mteb.get_task(name)
    A.load_local_data(real)
    doc, _ = A.run_task(real, A.MtebEncoder(trigram_embed, instructions={name: INSTRUCTION}), 16)
    (entry,) = doc["scores"]["test"]
    assert doc["task_name"] == name and doc["dataset_revision"] == real.metadata.dataset["revision"]
    assert 0 < entry["main_score"] < 1
    assert entry["main_score"] == pytest.approx(builtin[task.metric], abs=1e-9), (name, entry["main_score"], builtin[task.metric])
    shared = [k for k, v in builtin.items() if isinstance(v, float) and isinstance(entry.get(k), float)]
    assert len(shared) >= 3
    for k in shared:
        assert entry[k] == pytest.approx(builtin[k], abs=1e-9), k


def test_a_real_mteb_task_gets_the_instruction_where_llm2vec_puts_it(eval_data, use_cache):
    """Without the instruction the retrieval score changes: the adapter really passes it (to queries only)."""
    import mteb
    from l3prune import mteb_adapter as A

    real = mteb.get_task("SciFact")
    A.load_local_data(real)
    with_it = A.main_score(A.run_task(real, A.MtebEncoder(trigram_embed, instructions={"SciFact": INSTRUCTION}), 16)[0])
    bare = A.main_score(A.run_task(real, A.MtebEncoder(trigram_embed, instructions={}), 16)[0])
    task = T.LOADERS["retrieval"](eval_data, CAP)
    assert bare == pytest.approx(task.score(trigram_embed(task.inputs(None)), 42)[0]["ndcg_at_10"], abs=1e-9)
    assert with_it != pytest.approx(bare, abs=1e-6)


def test_evaluate_runs_cached_mteb_tasks_beside_the_built_in_ones(tiny_llama, eval_data, datasets_cache, tmp_path, schemas):
    """The worker end to end: the same model scores a built-in task and its real MTEB twin alike."""
    spec = tmp_path / "spec.json"
    names = {T.LOADERS[k](eval_data, CAP).name: REAL_TASKS[t] for k, t in
             (("sts", "STS"), ("retrieval", "Retrieval"), ("pair_classification", "PairClassification"))}
    spec.write_text(json.dumps({"instructions": {n: INSTRUCTION for pair in names.items() for n in pair}}))
    run_dir = tmp_path / "run"
    p = worker_cli("evaluate", "--run-dir", str(run_dir), "--model", str(tiny_llama), "--spec", str(spec),
                   "--tasks", "sts,retrieval,pair_classification", *sum((["--mteb-task", n] for n in names.values()), []),
                   "--max-examples", str(CAP), "--seed", "42", "--data-dir", str(eval_data), "--batch-size", "16",
                   env={"HF_DATASETS_CACHE": str(datasets_cache)}, timeout=600)
    assert p.returncode == 0, p.stderr
    run, events = validate_run(run_dir, schemas)
    scores = run["result"]["scores"]
    assert set(scores) == set(names) | set(names.values())
    for builtin, real in names.items():
        assert scores[real] == pytest.approx(scores[builtin], abs=1e-6), (builtin, real)
    for e in (e for e in events if e["event"] == "task_result" and e["task"] in names.values()):
        doc = json.loads(Path(e["resultPath"]).read_text())
        assert doc["task_name"] == e["task"] and e["scoredBy"] == "mteb"


def test_mteb_tasks_says_which_tasks_run_offline(datasets_cache, schemas):
    import jsonschema

    p = worker_cli("mteb-tasks", env={"HF_DATASETS_CACHE": str(datasets_cache)}, timeout=300)
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout.strip().splitlines()[-1])
    jsonschema.Draft202012Validator(schemas["mteb-tasks-report"], registry=schemas["registry"]).validate(report)
    by_name = {t["name"]: t for t in report["tasks"]}
    assert report["datasetsCache"] == str(datasets_cache)
    for name in REAL_TASKS.values():
        assert by_name[name]["cached"] and by_name[name]["cachedRevision"], name
    # Same dataset, another pinned revision: cached, but not the revision the task asks for.
    assert by_name["Banking77Classification.v2"]["cached"] and not by_name["Banking77Classification.v2"]["cachedRevision"]
    assert by_name["STSBenchmark"]["supersededBy"] == "STSBenchmark.v2"
    assert not by_name["STS12"]["cached"] and not by_name["NFCorpus"]["cached"]
    assert {t["type"] for t in report["tasks"]} == {"STS", "Retrieval", "Classification", "Clustering", "PairClassification", "Reranking"}
    assert len(report["tasks"]) > 300


def test_an_uncached_mteb_task_is_refused_offline_with_how_to_get_it(tiny_llama, datasets_cache, tmp_path, schemas):
    run_dir = tmp_path / "run"
    p = worker_cli("evaluate", "--run-dir", str(run_dir), "--model", str(tiny_llama), "--mteb-task", "STS12",
                   env={"HF_DATASETS_CACHE": str(datasets_cache)}, timeout=300)
    assert p.returncode == 2, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert "STS12" in last and "not in the local datasets cache" in last and "allow the download" in last, last
    run, _ = validate_run(run_dir, schemas)
    assert run["status"] == "failed"


def test_allow_download_reaches_for_the_hub(tiny_llama, datasets_cache, tmp_path):
    """With consent the worker lifts its offline default for the task's data: here the hub is a closed port, so
    the load fails as a download, not as offline."""
    run_dir = tmp_path / "run"
    p = worker_cli("evaluate", "--run-dir", str(run_dir), "--model", str(tiny_llama), "--mteb-task", "STS12", "--allow-download",
                   env={"HF_DATASETS_CACHE": str(datasets_cache), "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_ETAG_TIMEOUT": "2",
                        "HF_HUB_DOWNLOAD_TIMEOUT": "2",
                        "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0"}, timeout=300)
    assert p.returncode == 2, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert "STS12" in last and "the download failed" in last, last
