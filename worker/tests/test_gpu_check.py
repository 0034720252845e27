"""bench/gpu_check.py --tiny, run as a user runs it (a subprocess, OUT set), so the GPU check cannot rot between the
rare runs on a GPU: every case runs on tiny shapes on the CPU and its JSON must say what the GPU run's will."""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

import pytest

from conftest import ENV, REPO, validate_run

SCRIPT = REPO / "bench" / "gpu_check.py"
CASES = ["bf16_agreement", "torchrun", "oom", "analyze", "train", "train_gradcache"]
TIMED = ["analyze", "train", "train_gradcache"]
# The planner's own output (`l3prune plan` of the tiny shape's header-only folder, gpu_check.py --tiny
# --write-shape-model DIR, then `plan DIR --keep 6 --cpu --batch 8 --max-length 32 --precision bf16 --checkpointing on
# --json`), cut to the fields the check reads: its train recipe matches the train case, and no other.
TINY_PLAN = {
    "keep": 6,
    "resources": {
        "model": {"numLayers": 8, "keep": 6, "hiddenSize": 64, "querySize": 64, "keptLayerParams": 320256, "loraParams": 122880},
        "train": {"verb": "train", "recipe": {"batchSize": 8, "maxLength": 32, "precision": "bf16", "gradientCheckpointing": True,
                                              "miniBatchSize": None, "loraR": 16, "loraDropout": 0.05, "steps": 1000, "worldSize": 1,
                                              "attention": "sdpa"},
                  "terms": [{"name": "weights", "bytes": 768640}], "peakBytes": 8296576, "flopsPerStep": 2306211840,
                  "secondsPerStep": None, "fits": None, "tokensPerStep": 768, "usefulFlopsPerStep": 1606680576},
    },
}


def positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


@pytest.fixture(scope="module")
def check(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check-out")
    plan = tmp_path_factory.mktemp("plan") / "plan.json"
    plan.write_text(json.dumps(TINY_PLAN), encoding="utf-8")
    env = {**ENV, "OUT": str(out), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--plan", str(plan)], capture_output=True, text=True,
                       timeout=600, cwd=str(tmp_path_factory.mktemp("cwd")), env=env)
    seconds = time.monotonic() - t0
    assert p.returncode == 0, (p.stdout[-4000:], p.stderr[-4000:])
    res = json.loads((out / "gpu-check.json").read_text(encoding="utf-8"))
    return {"res": res, "out": out, "stdout": p.stdout, "seconds": seconds}


def test_every_case_present_and_ok(check):
    res = check["res"]
    assert res["schema"] == "l3prune-gpu-check/1" and res["mode"] == "tiny" and res["environment"]["device"] == "cpu"
    assert list(res["cases"]) == ["bf16_agreement", "analyze", "train", "train_gradcache", "torchrun", "oom"]
    assert sorted(res["cases"]) == sorted(CASES)
    for name, c in res["cases"].items():
        assert c["ok"] is True and "error" not in c, (name, c.get("error"), c.get("traceback"))
    assert res["ok"] is True
    # The summary on stdout is the one in summary.txt.
    summary = (check["out"] / "summary.txt").read_text(encoding="utf-8").strip()
    assert "all cases ok" in summary.splitlines()[0] and summary in check["stdout"]
    assert len(summary.splitlines()) == 1 + len(CASES)


def test_timed_cases_report_finite_positive_numbers(check):
    res = check["res"]
    prof = res["profile"]
    for name in TIMED:
        c = res["cases"][name]
        for k in ("seconds", "stepSeconds", "firstStepSeconds", "tokensPerSecond", "tokensPerStep", "usefulFlopsPerStep"):
            assert positive(c[k]), (name, k, c[k])
        assert c["stepTimes"] and all(positive(t) for t in c["stepTimes"]), (name, c["stepTimes"])
        assert c["tokensPerSecond"] == pytest.approx(c["tokensPerStep"] / c["stepSeconds"])
        # On a CPU: no allocator statistics and no peak FLOP/s, so those are null (not zero, not made up) ...
        assert c["peakMemoryBytes"] is None and c["mfu"] is None, (name, c)
        # ... and the resident-memory delta is given instead.
        assert isinstance(c["rssDeltaBytes"], int)
    assert res["flops"]["peakFlopsPerSecond"] is None
    # Every text is exactly seq tokens: 3 groups x batch x seq tokens a step or an analyze batch.
    assert res["cases"]["analyze"]["tokensPerStep"] == 3 * prof["batch"] * prof["seq"]
    a = res["cases"]["analyze"]
    n = prof["shape"]["num_hidden_layers"]
    assert a["numLayers"] == n and len(a["losses"]) == n and all(math.isfinite(x) for x in a["losses"])
    assert a["batches"] == prof["analyze_batches"] and 1 <= a["small"] <= n // 2 < a["large"] <= n
    for name in ("train", "train_gradcache"):
        c = res["cases"][name]
        assert c["steps"] == prof["steps"] and len(c["losses"]) == prof["steps"] and all(math.isfinite(x) for x in c["losses"])
        assert c["numLayers"] == prof["keep"] and c["gradientCheckpointing"] is True and c["precision"] == "bf16"
        assert 0 < c["trainableParams"] < c["totalParams"]
    t, g = res["cases"]["train"], res["cases"]["train_gradcache"]
    assert t["miniBatchSize"] is None and g["miniBatchSize"] == prof["mini"]
    # The gradient cache's extra forward is not useful work: the same useful FLOPs per step.
    assert g["usefulFlopsPerStep"] == t["usefulFlopsPerStep"] and g["tokensPerStep"] == t["tokensPerStep"]


def test_the_planner_is_matched_by_recipe_and_its_flops_formula_is_the_scripts(check):
    res = check["res"]
    t = res["cases"]["train"]
    plan = t["plan"]
    assert plan is not None and plan["predictedPeakBytes"] == 8296576 and plan["predictedTokensPerStep"] == t["tokensPerStep"]
    assert plan["measuredPeakBytes"] is None and plan["peakRatio"] is None, "no allocator statistics on a CPU"
    # The script's useful-FLOPs formula is the planner's (planTrain's usefulFlopsPerStep), to the FLOP.
    assert plan["flopsRatio"] == pytest.approx(1.0, abs=1e-12)
    assert t["trainableParams"] == TINY_PLAN["resources"]["model"]["loraParams"], "the adapter the planner counts"
    # The gradient-cache case and analyze have other recipes: not compared with this plan.
    assert res["cases"]["train_gradcache"]["plan"] is None and res["cases"]["analyze"]["plan"] is None
    assert res["plans"][0]["usedBy"] == ["train"]


def test_bf16_embeddings_agree_with_fp32(check):
    c = check["res"]["cases"]["bf16_agreement"]
    # bf16's unit roundoff is 2^-8; 1 - cos = e^2 / 2 for a relative error e, so 0.99 allows e ~ 14 %, about ten
    # times the error these models show (cos ~ 0.9999): a broken cast, mask or pooling in bf16 falls far below it.
    assert c["threshold"] == 0.99
    for k in ("bf16Weights", "bf16Autocast"):
        assert c[k]["minCosine"] >= 0.99, (k, c[k])
        # ... and the agreement means something: it beats the closest pair of different texts.
        assert c[k]["minCosine"] > c["maxCosineBetweenTexts"]


def test_torchrun_smoke_run_trains_with_a_finite_loss(check, schemas):
    c = check["res"]["cases"]["torchrun"]
    assert c["rc"] == 0 and c["status"] == "succeeded" and c["backend"] == "gloo" and c["worldSize"] == 1
    assert c["steps"] == 3 and all(math.isfinite(x) for x in c["losses"]) and math.isfinite(c["finalLoss"])
    assert c["finalLoss"] == c["losses"][-1]
    assert c["probe"] == {"ok": True, "backend": "gloo", "worldSize": 1, "allReduce": [1.0, 1.0, 1.0, 1.0]}
    run, events = validate_run(check["out"] / c["runFolder"], schemas)
    assert run["status"] == "succeeded" and events[-1]["event"] == "train_finished"


def test_out_of_memory_ends_in_one_sentence_a_failed_run_json_and_a_resumable_run(check, schemas):
    from l3prune.train import VERB
    from l3prune.verbs import Job

    sentence = VERB.advice(Job(args=argparse.Namespace(run_dir="x"), world=None, stop=None)).out_of_memory
    res = check["res"]
    assert res["oomSentence"] == sentence, "the script expects the worker's own sentence"
    c = res["cases"]["oom"]
    inj = c["injected"]
    assert inj["rc"] == 2 and inj["stderr"] == f"l3prune: {sentence}\n" and inj["sentence"] == f"l3prune: {sentence}"
    assert inj["runJsonParses"] is True
    # The run folder as it was right after the failure: run.json and every event valid against the protocol.
    run, events = validate_run(check["out"] / inj["runFolder"], schemas)
    assert run["status"] == "failed" and run["error"] == {"message": sentence, "kind": "resource"}
    assert events[-1]["event"] == "error" and events[-1]["message"] == sentence and events[-1]["kind"] == "resource"
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [1], "step 1's checkpoint was written before the failure"
    assert "step-00000001" in inj["checkpoints"]
    # Resumable: --resume continues from that checkpoint and finishes, on the curve of an uninterrupted run.
    r = inj["resume"]
    assert r["rc"] == 0 and r["status"] == "succeeded" and r["resumedFromStep"] == 1 and r["steps"] == [1, 2, 3]
    assert all(math.isfinite(x) for x in r["losses"])
    assert r["maxAbsDiffToUninterrupted"] <= 1e-6, (r["losses"], r["uninterruptedLosses"])
    run, events = validate_run(check["out"] / "runs" / "oom-injected-resumed", schemas)
    assert run["status"] == "succeeded" and [e["event"] for e in events].count("resumed") == 1
    # The genuine out-of-memory run needs a CUDA allocator: on a CPU it is left out, and says why.
    assert c["genuine"] is None and "CUDA only" in c["genuineSkipped"]


def test_runs_in_reasonable_time(check):
    # Aimed at under 90 s on two busy cores; the bound only catches a case that started to crawl.
    assert check["res"]["seconds"] < 300, check["res"]["seconds"]
