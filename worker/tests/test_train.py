"""The train verb as the extension runs it: run folder, events, checkpoints, resume, cancel, merge, torchrun."""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import DEMO_TRIPLES, WORKER, assert_failed_cleanly, read_events, run_inproc, validate_run, worker_cli, write_triples

MODULE_ARGS = ["-m", "l3prune", "train"]
CMD = [sys.executable, *MODULE_ARGS]
# Small, quick and deterministic: no warm-up, dropout on (the RNG must be restored for resume to be exact).
FAST = ["--keep", "2", "--batch-size", "4", "--max-length", "24", "--learning-rate", "1e-3", "--warmup-steps", "2", "--heartbeat-seconds", "0.2"]


def train(run_dir: Path, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return worker_cli("train", "--run-dir", str(run_dir), *args, timeout=timeout)


def loss_curve(events: list[dict]) -> dict[int, float]:
    """step -> loss, a later event for the same step (after a resume) replacing the earlier one."""
    return {e["step"]: e["loss"] for e in events if e["event"] == "step"}


@pytest.fixture(scope="module")
def data40(tmp_path_factory) -> Path:
    return write_triples(tmp_path_factory.mktemp("train-data") / "triples.jsonl", 40)


@pytest.fixture(scope="module")
def reference_run(tiny_llama, data40, tmp_path_factory) -> Path:
    """An uninterrupted 8-step run (checkpoints every 3 steps), the yardstick for resume and merge tests."""
    run_dir = tmp_path_factory.mktemp("ref") / "run"
    p = train(run_dir, "--model", str(tiny_llama), "--data", str(data40), "--steps", "8", "--checkpoint-every", "3", *FAST)
    assert p.returncode == 0, p.stderr
    assert p.stderr == ""
    assert [json.loads(l) for l in p.stdout.splitlines()] == read_events(run_dir), "stdout carries exactly the events"
    return run_dir


def test_run_folder_events_and_checkpoints_follow_the_protocol(reference_run, schemas):
    run, events = validate_run(reference_run, schemas)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[1] == "model_loaded" and kinds[-1] == "train_finished"
    assert events[0]["verb"] == "train" and events[0]["spec"] == run["spec"]
    loaded = events[1]
    assert loaded["numLayers"] == 2 and loaded["originalNumLayers"] == 4 and loaded["device"] == "cpu" and loaded["precision"] == "fp32"
    assert 0 < loaded["trainableParams"] < loaded["totalParams"]
    steps = [e for e in events if e["event"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 9)) and all(e["totalSteps"] == 8 for e in steps)
    assert all(e["gpuMemoryBytes"] is None and e["tokensPerSecond"] > 0 for e in steps)
    # transformers' own get_linear_schedule_with_warmup, over the paper's horizon (3 epochs of the data), not the
    # stop step: the rate of step s is what the reference scheduler gives after s of its steps.
    from transformers import get_linear_schedule_with_warmup

    state0 = json.loads((reference_run / "checkpoints" / "step-00000003" / "state.json").read_text())
    horizon = math.ceil(3 * state0["batchesPerEpoch"])
    assert loaded["scheduleSteps"] == horizon and horizon > 8, "the schedule runs past the stop step"
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
    ref = get_linear_schedule_with_warmup(opt, num_warmup_steps=2, num_training_steps=horizon)
    expected = []
    for _ in steps:
        expected.append(ref.get_last_lr()[0])
        opt.step()
        ref.step()
    assert [e["learningRate"] for e in steps] == pytest.approx(expected, abs=1e-12, rel=0)
    assert steps[-1]["learningRate"] > 0.5e-3, "after warm-up the rate stays near its peak"
    assert [e["step"] for e in events if e["event"] == "checkpoint"] == [3, 6]
    ck = sorted(p.name for p in (reference_run / "checkpoints").iterdir())
    assert ck == ["step-00000003", "step-00000006"], "the last two complete checkpoints, no temp folders"
    for name in ck:
        files = {p.name for p in (reference_run / "checkpoints" / name).iterdir()}
        assert {"adapter_model.safetensors", "adapter_config.json", "optimizer.safetensors", "optimizer.json",
                "scheduler.json", "rng.json", "state.json"} <= files
        assert not any(f.endswith((".bin", ".pt", ".pth", ".pkl")) for f in files), "no pickles"
    state = json.loads((reference_run / "checkpoints" / "step-00000006" / "state.json").read_text())
    assert state["step"] == 6 and state["batchInEpoch"] == 6 % state["batchesPerEpoch"]
    rng = json.loads((reference_run / "checkpoints" / "step-00000006" / "rng.json").read_text())
    assert set(rng["ranks"][0]) >= {"python", "numpy", "torch"}
    fin = events[-1]
    assert fin["step"] == 8 and fin["finalLoss"] == steps[-1]["loss"]
    assert fin["adapterPath"] == str(reference_run / "adapter") and fin["mergedPath"] == str(reference_run / "model")
    assert run["status"] == "succeeded" and run["result"]["finalLoss"] == fin["finalLoss"]
    assert run["spec"]["keep"] == 2 and run["spec"]["loraR"] == 16 and Path(run["spec"]["model"]).is_absolute()


def test_resume_after_kill_9_gives_the_uninterrupted_loss_curve(reference_run, tiny_llama, data40, tmp_path, schemas):
    run_dir = tmp_path / "run"
    # A real SIGKILL right after step 5's event: the newest checkpoint is step 3, steps 4-5 are redone.
    p = train(run_dir, "--model", str(tiny_llama), "--data", str(data40), "--steps", "8", "--checkpoint-every", "3", *FAST,
              "--debug-kill-after-step", "5")
    assert p.returncode == -signal.SIGKILL
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running", "a killed worker cannot clean up"
    # What a kill in the middle of writing step 6 would leave: a temp folder, never taken for a checkpoint.
    torn = run_dir / "checkpoints" / ".tmp-step-00000006-99999"
    torn.mkdir()
    (torn / "adapter_model.safetensors").write_bytes(b"\0" * 10)
    p = train(run_dir, "--resume", "--heartbeat-seconds", "0.2")
    assert p.returncode == 0, p.stderr
    run, events = validate_run(run_dir, schemas)
    assert run["status"] == "succeeded" and run["pid"] != events[0]["pid"]
    resumed = [e for e in events if e["event"] == "resumed"]
    assert len(resumed) == 1 and resumed[0]["step"] == 3 and resumed[0]["checkpoint"].endswith("step-00000003")
    assert not torn.exists()
    ref = loss_curve(read_events(reference_run))
    got = loss_curve(events)
    assert sorted(got) == sorted(ref) == list(range(1, 9))
    for s in ref:
        assert got[s] == pytest.approx(ref[s], abs=1e-6, rel=0), f"step {s}"
    from safetensors.torch import load_file

    a, b = load_file(str(reference_run / "adapter" / "adapter_model.safetensors")), load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6, rtol=0) for k in a)


def test_a_cached_checkpointed_run_killed_and_resumed_follows_the_plain_loss_curve(reference_run, tiny_llama, data40, tmp_path, schemas):
    """The gradient cache (mini-batch 5 of 12 texts) with gradient checkpointing, killed after step 5 and resumed
    from step 3: the whole run is still the plain, uninterrupted run's, step for step."""
    run_dir = tmp_path / "run"
    p = train(run_dir, "--model", str(tiny_llama), "--data", str(data40), "--steps", "8", "--checkpoint-every", "3", *FAST,
              "--mini-batch-size", "5", "--gradient-checkpointing", "true", "--debug-kill-after-step", "5")
    assert p.returncode == -signal.SIGKILL
    p = train(run_dir, "--resume", "--heartbeat-seconds", "0.2")
    assert p.returncode == 0, p.stderr
    run, events = validate_run(run_dir, schemas)
    assert run["spec"]["miniBatchSize"] == 5 and run["spec"]["gradientCheckpointing"] is True
    assert [e["step"] for e in events if e["event"] == "resumed"] == [3]
    ref, got = loss_curve(read_events(reference_run)), loss_curve(events)
    assert sorted(got) == list(range(1, 9))
    for s in ref:
        assert got[s] == pytest.approx(ref[s], abs=1e-5, rel=0), f"step {s}"


def test_sigterm_checkpoints_cancels_and_resume_finishes(tiny_llama, data40, tmp_path, schemas):
    from peft import PeftModel
    from l3prune.encoder import load_encoder, prune

    run_dir = tmp_path / "run"
    proc = subprocess.Popen([*CMD, "--run-dir", str(run_dir), "--model", str(tiny_llama), "--data", str(data40), "--steps", "12",
                             "--checkpoint-every", "100", *FAST, "--debug-step-sleep", "0.15"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=WORKER)
    try:
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            e = json.loads(line)
            if e["event"] == "step" and e["step"] >= 3:
                break
            assert time.monotonic() < deadline
        proc.send_signal(signal.SIGTERM)
        proc.stdout.read()
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 128 + signal.SIGTERM
    assert "cancelled" in proc.stderr.read()
    run, events = validate_run(run_dir, schemas)
    assert run["status"] == "cancelled" and run["endedAt"] and "resume" in run["error"]["message"]
    last = events[-1]
    assert last["event"] == "cancelled" and last["signal"] == "SIGTERM"
    stopped = last["step"]
    assert 3 <= stopped < 12 and last["checkpoint"].endswith(f"step-{stopped:08d}")
    assert [e for e in events if e["event"] == "checkpoint"][-1]["step"] == stopped, "the step in flight finished, then a checkpoint"
    # The checkpoint is a loadable peft adapter on the pruned model.
    enc = load_encoder(tiny_llama)
    prune(enc.model, 2)
    m = PeftModel.from_pretrained(enc.model, last["checkpoint"])
    assert sum("lora_A" in n for n, _ in m.named_parameters()) > 0

    p = train(run_dir, "--resume", "--heartbeat-seconds", "0.2")
    assert p.returncode == 0, p.stderr
    run, events = validate_run(run_dir, schemas)
    assert run["status"] == "succeeded" and run["error"] is None
    after = events[[e["event"] for e in events].index("resumed") :]
    assert after[0]["step"] == stopped
    assert [e["step"] for e in after if e["event"] == "step"] == list(range(stopped + 1, 13))
    assert events[-1]["event"] == "train_finished" and events[-1]["step"] == 12


def test_merged_model_reloads_pruned_and_embeds_like_base_plus_adapter(reference_run, tiny_llama):
    from peft import PeftModel
    from transformers import AutoModel

    from l3prune.encoder import Encoder, load_encoder, prune

    texts = ["A man is playing a guitar on stage.", "The cat sleeps.", "Rain falls over the quiet town."]
    merged = AutoModel.from_pretrained(reference_run / "model")
    assert merged.config.num_hidden_layers == 2 and len(merged.layers) == 2
    assert (reference_run / "model" / "tokenizer.json").is_file()
    assert not any((reference_run / "model").glob("*.bin"))
    m_enc = load_encoder(reference_run / "model", max_length=24)
    base = load_encoder(tiny_llama, max_length=24)
    prune(base.model, 2)
    base.model = PeftModel.from_pretrained(base.model, reference_run / "adapter").eval()
    pruned_only = load_encoder(tiny_llama, max_length=24)
    prune(pruned_only.model, 2)
    for pooling in ("weighted_mean", "mean"):
        a, b = m_enc.encode(texts, pooling), base.encode(texts, pooling)
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), (a - b).abs().max()
    assert not torch.allclose(m_enc.encode(texts, "weighted_mean"), pruned_only.encode(texts, "weighted_mean"), atol=1e-4), "training changed the encoder"
    cfg = json.loads((reference_run / "model" / "l3prune_encoder.json").read_text())
    assert cfg["pooling"] == "weighted_mean" and cfg["keep"] == 2


def test_torchrun_two_processes_match_one_process_with_the_double_batch(tiny_llama, data40, tmp_path, schemas):
    # One process, batch 4, from a spec.json as the extension writes it (PAPER_RECIPE + model/keep/data, folder pre-made).
    one = tmp_path / "one"
    one.mkdir()
    spec = {"steps": 3, "batchSize": 4, "learningRate": 1e-3, "warmupSteps": 1, "scheduleEpochs": 3, "scheduleSteps": None,
            "maxLength": 24, "miniBatchSize": None, "loraR": 16, "loraAlpha": 32,
            "loraDropout": 0, "targetModules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            "scale": 50, "pooling": "weighted_mean", "checkpointEvery": 2, "seed": 0, "device": "auto", "devices": "auto", "precision": "auto",
            "gradientCheckpointing": "auto", "taskHomogeneous": True, "dataColumns": None, "mergeAtEnd": False, "trustRemoteCode": False, "allowDownload": False, "chatTemplate": "auto",
            "model": str(tiny_llama), "keep": 2, "data": str(data40)}
    (one / "spec.json").write_text(json.dumps(spec, indent=2))
    p = train(one, "--spec", str(one / "spec.json"))
    assert p.returncode == 0, p.stderr
    run1, ev1 = validate_run(one, schemas)
    assert run1["spec"] == {**spec, "learningRate": 1e-3, "scale": 50} and ev1[1]["numLayers"] == 2
    assert ev1[-1]["mergedPath"] is None and run1["result"]["mergedPath"] is None
    assert (one / "adapter" / "adapter_model.safetensors").is_file() and not (one / "model").exists(), "--no-merge: adapter only"
    # Two processes (gloo), batch 2 each, same flags otherwise.
    two = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *MODULE_ARGS,
                        "--run-dir", str(two), "--spec", str(one / "spec.json"), "--batch-size", "2", "--device", "cpu"],
                       capture_output=True, text=True, timeout=300, cwd=WORKER, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    run, events = validate_run(two, schemas)
    assert run["status"] == "succeeded"
    assert [e["event"] for e in events].count("started") == 1, "rank 0 alone writes events"
    assert [e for e in events if e["event"] == "model_loaded"][0]["worldSize"] == 2
    a, b = loss_curve(ev1), loss_curve(events)
    assert sorted(a) == sorted(b) == [1, 2, 3]
    for s in a:
        assert b[s] == pytest.approx(a[s], abs=1e-4, rel=1e-5), (s, a, b)
    assert json.loads((two / "checkpoints" / "step-00000002" / "state.json").read_text())["worldSize"] == 2
    assert len(json.loads((two / "checkpoints" / "step-00000002" / "rng.json").read_text())["ranks"]) == 2
    # The gradient cache under torchrun: gathered cached embeddings, one gradient sync per step, the same curve.
    cached = tmp_path / "two-cached"
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *MODULE_ARGS,
                        "--run-dir", str(cached), "--spec", str(one / "spec.json"), "--batch-size", "2", "--mini-batch-size", "1",
                        "--device", "cpu"], capture_output=True, text=True, timeout=300, cwd=WORKER, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    run, events = validate_run(cached, schemas)
    assert run["spec"]["miniBatchSize"] == 1
    c = loss_curve(events)
    for s in a:
        assert c[s] == pytest.approx(a[s], abs=1e-4, rel=1e-5), (s, a, c)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--keep", "0"], "--keep must be at least 1, got 0"),
        (["--steps", "0"], "--steps must be at least 1"),
        (["--learning-rate", "-1"], "--learning-rate must be a positive number"),
        (["--lora-dropout", "1"], "--lora-dropout must be at least 0 and less than 1"),
        (["--precision", "fp16"], "invalid choice"),
        (["--device", "tpu"], "--device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
        (["--keep", None], "no 'keep' given"),
    ],
)
def test_bad_flags_are_refused_before_a_run_folder_exists(tiny_llama, data40, tmp_path, capsys, args, needle):
    base = {"--model": str(tiny_llama), "--data": str(data40), "--keep": "2", "--run-dir": str(tmp_path / "r")}
    base[args[0]] = args[1]
    rc, _, err = run_inproc("train", [x for k, v in base.items() if v is not None for x in (k, v)], capsys)
    assert rc == 2 and needle in err, err
    assert not (tmp_path / "r" / "run.json").exists()


@pytest.mark.parametrize(
    "extra, needle",
    [
        ({"learnigRate": 1e-3}, "unknown field 'learnigRate'; allowed: model, keep, data, steps"),
        ({"loraR": "16"}, "'loraR' must be a whole number"),
        ({"mergeAtEnd": 1}, "'mergeAtEnd' must be true or false"),
        ({"gradientCheckpointing": "yes"}, "spec field 'gradientCheckpointing' must be one of auto, true, false"),
        ({"targetModules": []}, "targetModules"),
        ({"pooling": "max"}, "spec field 'pooling' must be one of mean, weighted_mean, last_token, got 'max'"),
    ],
)
def test_bad_spec_file_is_refused_with_one_clear_sentence(tiny_llama, data40, tmp_path, capsys, extra, needle):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"model": str(tiny_llama), "data": str(data40), "keep": 2, **extra}))
    rc, _, err = run_inproc("train", ["--run-dir", str(tmp_path / "r"), "--spec", str(spec)], capsys)
    assert rc == 2 and err.strip().count("\n") == 0 and needle in err, err
    assert not (tmp_path / "r" / "run.json").exists()


def test_lora_alpha_is_twice_the_rank_unless_set_and_the_horizon_is_the_trainers(tiny_llama, data40):
    from transformers import get_linear_schedule_with_warmup

    from l3prune.train import make_spec
    from l3prune.train.loop import linear_warmup_decay, schedule_horizon

    base = {"model": str(tiny_llama), "data": str(data40), "keep": 2}
    s = make_spec(base, source="x")
    assert (s.loraR, s.loraAlpha, s.scheduleEpochs, s.scheduleSteps) == (16, 32, 3, None)
    assert make_spec({**base, "lora_r": 8}, source="x").loraAlpha == 16
    assert make_spec({**base, "loraR": 8, "loraAlpha": None}, source="x").loraAlpha == 16
    assert make_spec({**base, "loraR": 8, "loraAlpha": 5}, source="x").loraAlpha == 5
    # HF Trainer: max_steps = ceil(num_train_epochs * batches per epoch); scheduleSteps, when set, wins.
    assert schedule_horizon(None, 3, 10) == 30 and schedule_horizon(None, 2.5, 3) == 8 and schedule_horizon(500, 3, 10) == 500
    assert schedule_horizon(None, 3, 2_000) == 6_000, "the paper's case: far past the stop step 1000"
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
    ref = get_linear_schedule_with_warmup(opt, num_warmup_steps=5, num_training_steps=30)
    f = linear_warmup_decay(5, 30)
    for step in range(40):
        assert 2e-4 * f(step) == pytest.approx(ref.get_last_lr()[0], abs=1e-12, rel=0), step
        opt.step()
        ref.step()


def test_snake_case_spec_fields_are_accepted_and_stored_camel_case(tiny_llama, data40):
    from l3prune.train import make_spec

    s = make_spec({"model": str(tiny_llama), "data": str(data40), "keep": 2, "batch_size": 8, "merge_at_end": False}, source="x")
    assert s.batchSize == 8 and s.mergeAtEnd is False and s.learningRate == 2e-4 and s.warmupSteps == 300


def test_bad_input_fails_the_run_with_one_sentence(tiny_llama, data40, tmp_path, schemas):
    p = train(tmp_path / "a", "--model", str(tiny_llama), "--data", str(data40), "--keep", "9", "--batch-size", "4")
    assert_failed_cleanly(p, tmp_path / "a", schemas, "keep is 9", "4 layers")


def test_batches_are_deterministic_task_homogeneous_and_full(tmp_path):
    from l3prune.data import DataError, Triple
    from l3prune.train import BatchPlan

    triples = [Triple(f"q{i}", "p", "n", task="a" if i % 3 else "b") for i in range(30)]  # 20 of a, 10 of b
    plan = BatchPlan(triples, 4, seed=7, task_homogeneous=True)
    assert plan.per_epoch == 5 + 2
    again = BatchPlan(triples, 4, seed=7, task_homogeneous=True)
    seen = [plan.batch(k) for k in range(3 * plan.per_epoch)]
    assert seen == [again.batch(k) for k in range(3 * plan.per_epoch)], "a pure function of (data, seed, k)"
    assert all(len(b) == 4 and len({triples[i].task for i in b}) == 1 for b in seen)
    assert seen[: plan.per_epoch] != seen[plan.per_epoch : 2 * plan.per_epoch], "each epoch reshuffles"
    assert seen[:7] != [BatchPlan(triples, 4, seed=8, task_homogeneous=True).batch(k) for k in range(7)]
    with pytest.raises(DataError, match="no task has 24 triples"):
        BatchPlan(triples, 24, seed=0, task_homogeneous=True)
    assert BatchPlan(triples, 24, seed=0, task_homogeneous=False).per_epoch == 1
    with pytest.raises(DataError, match="fewer than one batch of 64; lower batchSize"):
        BatchPlan(triples, 64, seed=0, task_homogeneous=False)


def test_lora_targets_missing_from_the_model_are_named(tiny_llama):
    from l3prune.encoder import load_encoder
    from l3prune.train import present_targets

    m = load_encoder(tiny_llama).model
    assert present_targets(m, ["q_proj", "c_attn", "down_proj"]) == ["q_proj", "down_proj"]
    with pytest.raises(ValueError, match="none of targetModules \\(c_attn\\).*q_proj"):
        present_targets(m, ["c_attn"])


def test_resume_refuses_what_cannot_be_resumed(reference_run, tmp_path, capsys):
    rc, _, err = run_inproc("train", ["--run-dir", str(reference_run), "--resume"], capsys)
    assert rc == 2 and "already finished" in err
    rc, _, err = run_inproc("train", ["--run-dir", str(tmp_path / "nothing"), "--resume"], capsys)
    assert rc == 2 and "nothing to resume" in err
    rc, _, err = run_inproc("train", ["--run-dir", str(reference_run), "--resume", "--steps", "3"], capsys)
    assert rc == 2 and "--resume takes the spec from run.json" in err
    rc, _, err = run_inproc("train", ["--run-dir", str(reference_run), "--model", "x", "--data", "y", "--keep", "1"], capsys)
    assert rc == 2 and "already holds a run" in err


def test_training_lowers_the_loss_on_the_demo_data(demo_model, tmp_path):
    """SmolLM2-135M pruned to 6 of 30 layers, 40 steps of batch 8 on the real demo triples: the held-out loss
    (fixed triples the run never sees first) falls, and so does the training curve."""
    from l3prune.data import read_triples
    from l3prune.encoder import load_encoder, prune
    from l3prune.losses import HardNegativeInfoNCE

    triples = read_triples(DEMO_TRIPLES)
    train_file, held = tmp_path / "train.jsonl", triples[-32:]
    with open(train_file, "w", encoding="utf-8") as fh:
        for t in triples[:2000]:
            fh.write(json.dumps({"query": t.query, "positive": t.positive, "negative": t.negative, "task": t.task}) + "\n")
    run_dir = tmp_path / "run"
    p = train(run_dir, "--model", str(demo_model), "--data", str(train_file), "--keep", "6", "--steps", "40", "--batch-size", "8",
              "--max-length", "32", "--learning-rate", "5e-4", "--warmup-steps", "4", "--checkpoint-every", "100", timeout=600)
    assert p.returncode == 0, p.stderr
    curve = [v for _, v in sorted(loss_curve(read_events(run_dir)).items())]
    assert sum(curve[-10:]) / 10 < sum(curve[:10]) / 10, curve

    loss_fn = HardNegativeInfoNCE(50)

    def held_out_loss(enc) -> float:
        total = 0.0
        for i in range(0, len(held), 16):
            b = held[i : i + 16]
            e = enc.encode([t.query for t in b] + [t.positive for t in b] + [t.negative for t in b], "weighted_mean")
            total += float(loss_fn(e[: len(b)], e[len(b) : 2 * len(b)], e[2 * len(b) :], reduction="sum"))
        return total / len(held)

    before = load_encoder(demo_model, max_length=32)
    prune(before.model, 6)
    after = load_encoder(run_dir / "model", max_length=32)
    lb, la = held_out_loss(before), held_out_loss(after)
    assert la < lb - 0.05, (lb, la)
