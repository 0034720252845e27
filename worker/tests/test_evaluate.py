"""The evaluate verb: MTEB's metrics against hand-computed values, the held-out data, and the verb end to end."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from conftest import DEMO_TRIPLES, ENV, REPO, assert_failed_cleanly, read_events, run_inproc, validate_run, worker_cli

from l3prune import evaltasks as T
from test_mteb_agreement import _numbers, require_mteb

DATA = REPO / ".demo" / "data"
EVAL = DATA / "eval"
# Small enough for seconds per run on 2 CPU cores, large enough that every metric is defined.
QUICK = ["--max-examples", "8", "--max-length", "32", "--batch-size", "8", "--heartbeat-seconds", "0.5"]

def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return worker_cli("evaluate", *args, timeout=timeout)


# ---------------------------------------------------------------------------------------------------------------
# metrics, by hand
def test_spearman_matches_hand_computed_ranks():
    # No ties: rho = 1 - 6 * sum(d^2) / (n (n^2 - 1)) with d = (0, 1, -1, 0).
    assert T.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(1 - 6 * 2 / (4 * 15))
    # Ties take the mean rank: y ranks (1, 2.5, 2.5, 4); Pearson of the ranks = 4.5 / sqrt(5 * 4.5).
    assert T.spearman([1, 2, 3, 4], [1, 2, 2, 3]) == pytest.approx(4.5 / math.sqrt(22.5))
    assert T.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)


def test_ndcg_map_mrr_recall_precision_match_hand_computed_values():
    # Query 0: 6 docs, relevant {1, 4}, ranked at 2 and 5. Query 1: relevant {0}, ranked first.
    scores = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4], [0.9, 0.1, 0.2, 0.3, 0.4, 0.5]])
    scores[0] = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    scores[0, [1, 4]] = [0.85, 0.55]  # order: 0, 1, 2, 3, 4, 5 -> relevant at ranks 2 and 5
    m = T.retrieval_metrics(scores, [{1, 4}, {0}])
    q0 = (1 / math.log2(3) + 1 / math.log2(6)) / (1 + 1 / math.log2(3))
    assert m["ndcg_at_10"] == pytest.approx((q0 + 1.0) / 2)
    assert m["ndcg_at_1"] == pytest.approx((0 + 1) / 2)
    assert m["mrr_at_10"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["map_at_10"] == pytest.approx(((1 / 2 + 2 / 5) / 2 + 1) / 2)
    assert m["recall_at_3"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["precision_at_5"] == pytest.approx((2 / 5 + 1 / 5) / 2)
    # A relevant document below the cut-off earns nothing at that k.
    far = np.arange(20, 0, -1, dtype=float)[None, :]
    assert T.retrieval_metrics(far, [{10}])["ndcg_at_10"] == 0.0
    assert T.retrieval_metrics(far, [{10}])["ndcg_at_20"] == pytest.approx(1 / math.log2(12))


def test_v_measure_matches_hand_computed_entropies():
    assert T.v_measure([0, 0, 1, 1], [5, 5, 7, 7]) == pytest.approx(1.0)
    assert T.v_measure([0, 0, 1, 1], [0, 1, 0, 1]) == pytest.approx(0.0)
    labels, clusters = [0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1]

    def h(*p):
        return -sum(x * math.log(x) for x in p if x)

    h_c, h_k = h(1 / 2, 1 / 2), h(1 / 3, 2 / 3)
    h_c_given_k = 4 / 6 * h(1 / 4, 3 / 4)  # cluster 1 holds one of class 0 and three of class 1
    h_k_given_c = 3 / 6 * h(2 / 3, 1 / 3)  # class 0 is split 2/1 over the clusters
    hom, comp = 1 - h_c_given_k / h_c, 1 - h_k_given_c / h_k
    assert T.v_measure(labels, clusters) == pytest.approx(2 * hom * comp / (hom + comp))


def test_average_precision_and_thresholds_match_hand_computed_values():
    # Relevant at ranks 1 and 3: AP = (1/1 + 2/3) / 2.
    assert T.average_precision([1, 0, 1, 0], [0.9, 0.8, 0.7, 0.1]) == pytest.approx((1 + 2 / 3) / 2)
    # Cutting after rank 2 (t = 0.75) or rank 4 (t = 0.35) both get 4 of 5 right; the first is kept.
    assert T.best_accuracy([1, 1, 0, 1, 0], [0.9, 0.8, 0.7, 0.6, 0.1]) == pytest.approx((0.8, 0.75))
    f1, p, r, t = T.best_f1([1, 1, 0, 1, 0], [0.9, 0.8, 0.7, 0.6, 0.1])
    assert (f1, p, r, t) == pytest.approx((6 / 7, 3 / 4, 1.0, 0.35))


def test_logistic_regression_accuracy_and_f1_on_a_known_split():
    a = [[0, 0], [0, 1], [1, 0]]
    b = [[10, 10], [10, 11], [11, 10]]
    # The last test point is labelled a but lies among b: exactly 3 of 4 right.
    x_test = [[0, 0.5], [10.5, 10], [0.5, 0], [10, 10.5]]
    s = T.classification_scores(np.array(a + b, float), ["a"] * 3 + ["b"] * 3, np.array(x_test, float), ["a", "b", "a", "a"], seed=0)
    assert s["accuracy"] == pytest.approx(0.75)
    # a: precision 1, recall 2/3 -> F1 0.8; b: precision 1/2, recall 1 -> F1 2/3.
    assert s["f1"] == pytest.approx((0.8 + 2 / 3) / 2)


def test_clustering_finds_separated_groups_and_averages_runs():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.01, (5, 3)) + c for c in ([1, 0, 0], [0, 1, 0], [0, 0, 1])])
    s = T.clustering_scores(x, [0] * 5 + [1] * 5 + [2] * 5, seed=0)
    assert s["v_measure"] == pytest.approx(1.0) and len(s["v_measures"]) == T.CLUSTERING_RUNS


# ---------------------------------------------------------------------------------------------------------------
# data
def test_eval_sets_are_held_out_from_training_and_disjoint(eval_data):
    train_texts = set()
    for line in DEMO_TRIPLES.read_text(encoding="utf-8").splitlines():
        t = json.loads(line)
        train_texts.add(t["query"])
        train_texts.update(t[k].split(": ", 1)[1] for k in ("positive", "negative"))
    ev = eval_data / "eval"
    glosses = {
        "retrieval": {json.loads(l)["text"] for l in (ev / "retrieval" / "corpus.jsonl").read_text().splitlines()},
        "classification": {json.loads(l)["text"] for l in (ev / "classification.jsonl").read_text().splitlines()},
        "clustering": {json.loads(l)["text"] for l in (ev / "clustering.jsonl").read_text().splitlines()},
        "pairs": {json.loads(l)["sentence2"].split(": ", 1)[1] for l in (ev / "pair_classification.jsonl").read_text().splitlines()},
    }
    examples = {json.loads(l)["sentence1"] for l in (ev / "pair_classification.jsonl").read_text().splitlines()}
    latency = {json.loads(l)["text"] for l in (ev / "latency.jsonl").read_text().splitlines()}
    for name, g in glosses.items():
        assert not g & train_texts, f"{name} shares glosses with triples.jsonl"
    assert not (examples | latency) & train_texts and not examples & latency
    names = list(glosses)
    for i, x in enumerate(names):
        for y in names[i + 1 :]:
            assert not glosses[x] & glosses[y], f"{x} and {y} share glosses"


def test_full_sets_and_caps(eval_data):
    full = {k: T.LOADERS[k](eval_data, None) for k in T.TASK_KEYS}
    assert full["sts"].examples == 1225 and len(full["sts"].texts) == 50
    assert full["retrieval"].examples == 100 and full["classification"].examples == 200
    assert full["clustering"].examples == 250 and full["pair_classification"].examples == 200
    cap = {k: T.LOADERS[k](eval_data, 8) for k in T.TASK_KEYS}
    assert all(t.examples <= 8 for t in cap.values())
    assert len(cap["retrieval"].texts) <= 8 + 32
    assert len(set(json.loads(l)["label"] for l in (eval_data / "eval" / "clustering.jsonl").read_text().splitlines())) == 25
    assert cap["sts"].revision().endswith("-max8") and not full["sts"].revision().endswith("-max8")
    assert T.LOADERS["sts"](eval_data, 8).texts == cap["sts"].texts, "a cap picks the same examples every time"


# ---------------------------------------------------------------------------------------------------------------
# the verb, end to end
@pytest.fixture(scope="module")
def full_run(demo_model, eval_data, tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("eval-full") / "run"
    p = cli("--run-dir", str(run_dir), "--model", str(demo_model), *QUICK)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    assert [json.loads(l) for l in p.stdout.splitlines()] == read_events(run_dir), "stdout carries exactly the events"
    return run_dir


def test_evaluate_writes_mteb_result_files_and_valid_events(full_run, schemas):
    from l3prune import mteb_adapter

    require_mteb()
    mteb_version = mteb_adapter.version()
    run, events = validate_run(full_run, schemas)
    kinds = [e["event"] for e in events]
    assert kinds[:2] == ["started", "model_loaded"] and kinds[-1] == "evaluation_finished"
    assert run["status"] == "succeeded" and run["verb"] == "evaluate" and run["spec"]["maxExamples"] == 8
    results = [e for e in events if e["event"] == "task_result"]
    assert [e["key"] for e in results] == list(T.TASK_KEYS)
    progress = [e for e in events if e["event"] == "progress"]
    assert [e["batch"] for e in progress] == list(range(1, progress[0]["batches"] + 1))
    assert progress[-1]["samplesDone"] == progress[-1]["samples"]
    fin = events[-1]
    assert fin["numLayers"] == 30 and fin["params"] > 100_000_000 and fin["bytes"] == 4 * fin["params"]
    assert fin["latencyMsPerBatch"] > 0 and fin["textsPerSecond"] > 0 and fin["batchSize"] == 8 and fin["device"] == "cpu"
    # The conditions Compare matches evaluations by are the result's own, the cap and counts as the tasks used them.
    assert fin["maxLength"] == 32 and fin["maxExamples"] == 8
    assert fin["examples"] == {e["task"]: e["examples"] for e in results} and all(0 < n <= 8 for n in fin["examples"].values())
    assert {k: v for k, v in run["result"].items()} == {k: v for k, v in fin.items() if k not in ("event", "time")}
    for e in results:
        doc = json.loads(Path(e["resultPath"]).read_text())
        assert Path(e["resultPath"]).name == f"{e['task']}.json"
        assert set(doc) == {"dataset_revision", "task_name", "mteb_version", "scores", "evaluation_time", "kg_co2_emissions"}
        assert doc["task_name"] == e["task"] and doc["kg_co2_emissions"] is None and doc["evaluation_time"] >= 0
        (entry,) = doc["scores"]["test"]
        assert entry["hf_subset"] == "default" and entry["languages"] == ["eng-Latn"]
        assert entry["main_score"] == e["mainScore"] == entry[e["metric"]] == fin["scores"][e["task"]]
        assert isinstance(e["mainScore"], float) and -1 <= e["mainScore"] <= 1
        # mteb is installed here (worker[eval]): its evaluators scored every task, and the file says so.
        assert e["scoredBy"] == "mteb" and doc["mteb_version"] == mteb_version, (e["scoredBy"], doc["mteb_version"])
        assert e["instruction"] == run["spec"]["instructions"][e["task"]]
    assert fin["averageScore"] == pytest.approx(np.mean(list(fin["scores"].values())), abs=1e-6)


def test_result_files_load_in_mteb(full_run):
    mteb = require_mteb()
    TaskResult = getattr(mteb, "TaskResult", None)
    if TaskResult is None:
        from mteb.load_results.task_results import TaskResult  # older layout
    for f in (full_run / "results").glob("*.json"):
        r = TaskResult.from_disk(f)
        assert r.task_name == f.stem


def test_a_pruned_model_scores_differently_from_the_full_one(full_run, demo_model, tmp_path, schemas):
    run_dir = tmp_path / "keep4"
    p = cli("--run-dir", str(run_dir), "--model", str(demo_model), "--keep", "4", *QUICK)
    assert p.returncode == 0, p.stderr
    _, events = validate_run(run_dir, schemas)
    pruned, full = events[-1], read_events(full_run)[-1]
    assert pruned["numLayers"] == 4 and pruned["params"] < full["params"]
    assert pruned["scores"].keys() == full["scores"].keys()
    assert any(abs(pruned["scores"][k] - full["scores"][k]) > 1e-3 for k in full["scores"]), (pruned["scores"], full["scores"])


@pytest.fixture(scope="module")
def tiny_train_run(demo_model, tmp_path_factory) -> Path:
    """Two LoRA steps on the demo model cut to 2 layers: enough to move the weights away from the base."""
    run_dir = tmp_path_factory.mktemp("eval-train") / "run"
    p = subprocess.run(
        [sys.executable, "-m", "l3prune", "train", "--run-dir", str(run_dir), "--model", str(demo_model), "--data", str(DEMO_TRIPLES),
         "--keep", "2", "--steps", "2", "--batch-size", "4", "--max-length", "32", "--learning-rate", "1e-3", "--warmup-steps", "0",
         "--pooling", "mean", "--device", "cpu"],
        capture_output=True, text=True, timeout=600, env=ENV,
    )
    assert p.returncode == 0, p.stderr
    return run_dir


def test_base_plus_adapter_scores_as_the_merged_model(tiny_train_run, demo_model, eval_data, tmp_path, schemas):
    merged, adapter, base = tmp_path / "merged", tmp_path / "adapter", tmp_path / "base"
    # --from-run: the run's merged model/ and its pooling (mean, not the default).
    p = cli("--run-dir", str(merged), "--from-run", str(tiny_train_run), *QUICK)
    assert p.returncode == 0, p.stderr
    run, _ = validate_run(merged, schemas)
    assert run["spec"]["model"] == str(tiny_train_run / "model") and run["spec"]["adapter"] is None
    assert run["spec"]["pooling"] == "mean" and run["spec"]["fromRun"] == str(tiny_train_run)
    # base + adapter: pruned to the adapter's depth (2) without --keep, then merged.
    p = cli("--run-dir", str(adapter), "--model", str(demo_model), "--adapter", str(tiny_train_run / "adapter"), "--pooling", "mean", *QUICK)
    assert p.returncode == 0, p.stderr
    p = cli("--run-dir", str(base), "--model", str(demo_model), "--keep", "2", "--pooling", "mean", *QUICK)
    assert p.returncode == 0, p.stderr
    a, b = (read_events(d)[-1] for d in (merged, adapter))
    assert a["numLayers"] == b["numLayers"] == 2 and a["params"] == b["params"]
    for task in a["scores"]:
        assert b["scores"][task] == pytest.approx(a["scores"][task], abs=1e-4), task
    per_task = lambda d: {e["task"]: _numbers(e["scores"]) for e in read_events(d) if e["event"] == "task_result"}  # noqa: E731
    ta, tb, tc = per_task(merged), per_task(adapter), per_task(base)
    for task, s in ta.items():
        for k, v in s.items():
            assert tb[task][k] == pytest.approx(v, abs=1e-4), (task, k)
    diffs = [abs(np.subtract(tc[t][k], v)).max() for t, s in ta.items() for k, v in s.items() if v is not None]
    assert max(diffs) > 1e-6, "the adapter changed the encoder"


def test_missing_data_file_fails_the_run_before_loading_the_model(tiny_llama, tmp_path, schemas):
    data = tmp_path / "data"
    (data / "eval").mkdir(parents=True)
    run_dir = tmp_path / "run"
    p = cli("--run-dir", str(run_dir), "--model", str(tiny_llama), "--data-dir", str(data), "--tasks", "sts,clustering")
    assert_failed_cleanly(p, run_dir, schemas, str(data / "sts.jsonl"), "does not exist")
    assert "model_loaded" not in [e["event"] for e in read_events(run_dir)]


def test_keep_out_of_range_fails_the_run(tiny_llama, eval_data, tmp_path, schemas):
    run_dir = tmp_path / "run"
    p = cli("--run-dir", str(run_dir), "--model", str(tiny_llama), "--keep", "99", "--tasks", "clustering", "--max-examples", "8")
    assert_failed_cleanly(p, run_dir, schemas, "--keep 99", "1..4")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--tasks", "sts,translation"], "--tasks has 'translation', which is not one of sts, retrieval"),
        (["--max-examples", "2"], "--max-examples must be at least 4, got 2"),
        (["--keep", "0"], "--keep must be at least 1"),
        (["--device", "tpu"], "--device must be auto, cpu, cuda or cuda:N"),
        (["--tasks", "none"], "nothing to evaluate"),
    ],
)
def test_bad_flags_are_refused_before_a_run_folder_exists(tiny_llama, tmp_path, capsys, args, needle):
    run_dir = tmp_path / "run"
    rc, _, err = run_inproc("evaluate", ["--run-dir", str(run_dir), "--model", str(tiny_llama), *args], capsys)
    assert rc == 2 and needle in err and err.count("\n") == 1, err
    assert not run_dir.exists()


def test_from_run_refuses_what_is_not_a_finished_train_run(tmp_path, capsys):
    other = tmp_path / "analyze"
    other.mkdir()
    (other / "run.json").write_text(json.dumps({"verb": "analyze", "spec": {}, "status": "succeeded"}))
    rc, _, err = run_inproc("evaluate", ["--run-dir", str(tmp_path / "run"), "--from-run", str(other)], capsys)
    assert rc == 2 and "is not a train run" in err
    (other / "run.json").write_text(json.dumps({"verb": "train", "spec": {"model": "m"}, "status": "running"}))
    rc, _, err = run_inproc("evaluate", ["--run-dir", str(tmp_path / "run"), "--from-run", str(other)], capsys)
    assert rc == 2 and "has not finished" in err
    rc, _, err = run_inproc("evaluate", ["--run-dir", str(tmp_path / "run"), "--from-run", str(other), "--adapter", str(other)], capsys)
    assert rc == 2 and "either --adapter or --from-run" in err
    assert not (tmp_path / "run").exists()


def test_a_spec_file_takes_the_same_fields_and_flags_override_it(tiny_llama, tmp_path, capsys):
    from l3prune.evaluate import add_arguments, spec_from_args
    import argparse

    spec_file = tmp_path / "spec.json"
    spec_file.write_text(json.dumps({"model": str(tiny_llama), "tasks": ["sts", "clustering"], "max_examples": 12, "batchSize": 4}))
    ap = argparse.ArgumentParser()
    add_arguments(ap)
    s = spec_from_args(ap.parse_args(["--run-dir", "r", "--spec", str(spec_file), "--batch-size", "8"]))
    assert (s.tasks, s.maxExamples, s.batchSize, s.keep, s.pooling, s.maxLength) == (["sts", "clustering"], 12, 8, None, "weighted_mean", 512)
    assert Path(s.dataDir).is_absolute() and s.model == str(tiny_llama)
    spec_file.write_text(json.dumps({"model": str(tiny_llama), "shots": 3}))
    rc, _, err = run_inproc("evaluate", ["--run-dir", str(tmp_path / "run"), "--spec", str(spec_file)], capsys)
    assert rc == 2 and "unknown field 'shots'" in err


def test_sigterm_cancels_the_run(tiny_llama, eval_data, tmp_path, schemas):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "l3prune", "evaluate", "--run-dir", str(run_dir), "--model", str(tiny_llama), "--tasks", "clustering",
         "--max-examples", "8", "--debug-sleep-after-load", "60", "--heartbeat-seconds", "0.2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=ENV,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if (run_dir / "events.jsonl").exists() and any(e["event"] == "model_loaded" for e in read_events(run_dir)):
                break
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    run, events = validate_run(run_dir, schemas)
    assert run["status"] == "cancelled" and run["error"]["message"] == "cancelled by SIGTERM"
    assert events[-1]["event"] == "cancelled" and events[-1]["signal"] == "SIGTERM"


# ---------------------------------------------------------------------------------------------------------------
# the optional MTEB adapter
def _without_mteb(tmp_path: Path) -> dict:
    """An environment where `import mteb` fails, as on a machine without the eval extra."""
    stub = tmp_path / "no-mteb" / "mteb"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('mteb is not installed (test stub)')\n")
    return {**ENV, "PYTHONPATH": os.pathsep.join([str(stub.parent), *filter(None, [ENV.get("PYTHONPATH")])])}


def test_mteb_task_without_the_mteb_package_is_a_clear_error(tiny_llama, tmp_path, schemas):
    run_dir = tmp_path / "run"
    p = worker_cli("evaluate", "--run-dir", str(run_dir), "--model", str(tiny_llama), "--mteb-task", "STS12", env=_without_mteb(tmp_path))
    assert_failed_cleanly(p, run_dir, schemas, "needs the mteb package")


def test_without_mteb_the_built_in_tasks_use_the_fallback(tiny_llama, eval_data, tmp_path, schemas):
    run_dir = tmp_path / "run"
    p = worker_cli("evaluate", "--run-dir", str(run_dir), "--model", str(tiny_llama), "--tasks", "sts,pair_classification",
                   "--max-examples", "8", env=_without_mteb(tmp_path))
    assert p.returncode == 0 and p.stderr == "", p.stderr
    _, events = validate_run(run_dir, schemas)
    results = [e for e in events if e["event"] == "task_result"]
    assert [e["scoredBy"] for e in results] == ["l3prune", "l3prune"]
    for e in results:
        assert json.loads(Path(e["resultPath"]).read_text())["mteb_version"] == T.MTEB_FORMAT_VERSION


def test_the_mteb_wrapper_speaks_both_mteb_encode_apis():
    from l3prune.mteb_adapter import MtebEncoder, main_score

    seen = []
    enc = MtebEncoder(lambda texts: seen.append(list(texts)) or np.ones((len(texts), 3)))
    assert enc.encode(["a", "b"], task_name="X").shape == (2, 3)  # mteb 1.x: a list of strings
    assert enc.encode([{"text": ["c", "d"]}, {"text": ["e"]}], task_metadata=None).shape == (3, 3)  # 2.x: batches
    assert seen == [["a", "b"], ["c", "d", "e"]]
    doc = {"scores": {"test": [{"main_score": 0.5, "hf_subset": "en"}, {"main_score": 0.7, "hf_subset": "de"}]}}
    assert main_score(doc) == pytest.approx(0.6)


def test_a_real_mteb_task_with_missing_local_data_is_a_clear_error(tiny_llama, tmp_path, schemas):
    require_mteb()
    run_dir = tmp_path / "run"
    env_cache = tmp_path / "empty-hf-cache"
    p = subprocess.run(
        [sys.executable, "-m", "l3prune", "evaluate", "--run-dir", str(run_dir), "--model", str(tiny_llama), "--mteb-task", "STS12"],
        capture_output=True, text=True, timeout=300, env={**ENV, "HF_HOME": str(env_cache), "HF_DATASETS_CACHE": str(env_cache)},
    )
    assert_failed_cleanly(p, run_dir, schemas, "STS12", "not in the local datasets cache", "allow the download")


def test_mteb_tasks_run_through_the_real_package_on_local_data(eval_data, tmp_path, monkeypatch, schemas):
    require_mteb()
    from datasets import Dataset, DatasetDict

    from l3prune import evaluate as E
    from l3prune import mteb_adapter

    minilm = REPO / ".demo" / "models" / "all-minilm-l6-v2"
    if not (minilm / ".complete").exists():
        if os.environ.get("CI"):
            pytest.fail("the demo MiniLM model is absent; CI runs scripts/setup-worker.sh first")
        pytest.skip("the demo MiniLM model is absent")
    real_get_tasks = mteb_adapter.get_tasks
    rows = [json.loads(l) for l in (eval_data / "sts.jsonl").read_text().splitlines()[:16]]

    def local_sts12(names):
        # STS12 with its data "already local": the Lee pairs stand in for the download this machine cannot make.
        (task,) = real_get_tasks(names)
        cols = {"sentence1": [r["sentence1"] for r in rows], "sentence2": [r["sentence2"] for r in rows], "score": [5 * r["score"] for r in rows]}
        task.dataset = {"default": DatasetDict({"test": Dataset.from_dict(cols)})}
        task.data_loaded = True
        return [task]

    monkeypatch.setattr(mteb_adapter, "get_tasks", local_sts12)
    spec = E.EvalSpec(model=str(minilm), tasks=[], mtebTasks=["STS12"], dataDir=str(eval_data), pooling="mean", maxLength=64, batchSize=8, device="cpu")
    events: list[dict] = []
    out = E.run_evaluate(spec, lambda kind, **f: events.append({"event": kind, "time": "2026-01-01T00:00:00.000Z", **f}), tmp_path)
    v = jsonschema.Draft202012Validator(schemas["events"], registry=schemas["registry"])
    for e in events:
        v.validate(e)
    (tr,) = [e for e in events if e["event"] == "task_result"]
    assert (tr["task"], tr["taskType"], tr["metric"]) == ("STS12", "STS", "cosine_spearman")
    doc = json.loads((tmp_path / "results" / "STS12.json").read_text())
    assert doc["task_name"] == "STS12" and doc["scores"]["test"][0]["main_score"] == pytest.approx(tr["mainScore"])
    assert doc["mteb_version"] != T.MTEB_FORMAT_VERSION, "a real MTEB run records the real version"
    assert out["scores"] == {"STS12": tr["mainScore"]} and -1 <= tr["mainScore"] <= 1
