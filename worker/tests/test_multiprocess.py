"""train on several processes as the extension launches them (torchrun, gloo on the CPU): two nodes on 127.0.0.1,
cancel of the launcher's group, a rank that dies, resume onto another number of processes, the device lock."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import WORKER, read_events, run_inproc, validate_run, write_triples

# Dropout off: resume onto another number of processes draws the dropout masks of rank 1's texts from rank 0's
# stream, so only without dropout is the resumed curve the uninterrupted one's (up to float summation order).
BASE = ["--keep", "2", "--batch-size", "2", "--max-length", "24", "--learning-rate", "1e-3", "--warmup-steps", "1",
        "--lora-dropout", "0", "--no-merge", "--checkpoint-every", "2", "--heartbeat-seconds", "0.2"]
TORCHRUN = [sys.executable, "-m", "torch.distributed.run"]
TRAIN = ["-m", "l3prune", "train"]


def env(**extra: str) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def curve(run_dir: Path) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in read_events(run_dir) if e["event"] == "step"}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return write_triples(tmp_path_factory.mktemp("mp-data") / "triples.jsonl", 24)


@pytest.fixture(scope="module")
def one_node(tiny_llama, data, tmp_path_factory) -> Path:
    """The yardstick: one node, two processes (devices cpu:2), 4 steps, uninterrupted."""
    run = tmp_path_factory.mktemp("one-node") / "run"
    p = subprocess.run([*TORCHRUN, "--standalone", "--nproc_per_node=2", *TRAIN, "--run-dir", str(run), "--model", str(tiny_llama),
                        "--data", str(data), *BASE, "--steps", "4", "--devices", "cpu:2"],
                       capture_output=True, text=True, timeout=300, cwd=WORKER, env=env())
    assert p.returncode == 0, p.stderr[-3000:]
    return run


def test_two_nodes_on_localhost_give_the_one_node_curve(one_node, tiny_llama, data, tmp_path, schemas):
    run = tmp_path / "run"
    port = str(free_port())
    launchers = []
    for node in (0, 1):
        # Two machines: each its own device-lock folder (a lock folder is per machine), one run folder (shared storage).
        locks = tmp_path / f"locks-{node}"
        locks.mkdir()
        launchers.append(subprocess.Popen(
            [*TORCHRUN, "--nnodes", "2", "--node-rank", str(node), "--master-addr", "127.0.0.1", "--master-port", port,
             "--nproc_per_node", "1", *TRAIN, "--run-dir", str(run), "--model", str(tiny_llama), "--data", str(data), *BASE,
             "--steps", "4", "--devices", "cpu"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=WORKER, env=env(L3PRUNE_LOCK_DIR=str(locks))))
    for p in launchers:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    record, events = validate_run(run, schemas)
    assert record["status"] == "succeeded" and [e["event"] for e in events].count("started") == 1, "global rank 0 alone writes"
    assert [e for e in events if e["event"] == "model_loaded"][0]["worldSize"] == 2
    a, b = curve(one_node), curve(run)
    assert sorted(a) == sorted(b) == [1, 2, 3, 4]
    assert max(abs(a[s] - b[s]) for s in a) <= 1e-6, (a, b)


def test_devices_that_ask_for_more_processes_than_the_launch_started(tiny_llama, data, tmp_path, capsys):
    rc, _, err = run_inproc("train", ["--run-dir", str(tmp_path / "r"), "--model", str(tiny_llama), "--data", str(data), *BASE,
                                      "--devices", "cpu:2"], capsys)
    assert rc == 2
    assert "devices cpu:2 asks for 2 process(es) on this node but this launch started 1" in err and "--nproc_per_node=2" in err


def launch_detached(run: Path, *args: str) -> subprocess.Popen:
    """As the extension launches: its own session (the launcher leads the group), output to the run folder's log."""
    run.mkdir(parents=True, exist_ok=True)
    log = open(run / "worker.log", "ab")
    try:
        return subprocess.Popen([*TORCHRUN, "--standalone", "--nproc_per_node=2", *TRAIN, "--run-dir", str(run), *args],
                                stdout=log, stderr=log, cwd=WORKER, env=env(), start_new_session=True)
    finally:
        log.close()


def wait_for_step(run: Path, step: int, p: subprocess.Popen, timeout: float = 240) -> None:
    t = time.monotonic() + timeout
    while time.monotonic() < t:
        if (run / "events.jsonl").is_file() and any(s >= step for s in curve(run)):
            return
        assert p.poll() is None, (run / "worker.log").read_text(errors="replace")[-3000:]
        time.sleep(0.2)
    raise AssertionError(f"no step {step} within {timeout} s")


def rank_pids(run: Path) -> list[int]:
    return [json.loads((run / "ranks" / f"{r}.json").read_text())["pid"] for r in (0, 1)]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_cancel_of_two_processes_then_resume_onto_one_gives_the_uninterrupted_curve(one_node, tiny_llama, data, tmp_path, schemas):
    run = tmp_path / "run"
    p = launch_detached(run, "--model", str(tiny_llama), "--data", str(data), *BASE, "--steps", "4", "--devices", "cpu:2",
                        "--debug-step-sleep", "1.5")
    wait_for_step(run, 1, p)
    record = json.loads((run / "run.json").read_text())
    # run.json names the launcher: the group leader the host signals and checks after a reload.
    assert record["pid"] == p.pid and os.getpgid(p.pid) == p.pid
    os.killpg(p.pid, signal.SIGTERM)
    p.wait(timeout=120)
    ranks = rank_pids(run)
    assert all(gone(pid) for pid in ranks), "both ranks are gone"
    record, events = validate_run(run, schemas)
    assert record["status"] == "cancelled", (run / "worker.log").read_text(errors="replace")[-3000:]
    stopped = [e for e in events if e["event"] == "cancelled"][-1]["step"]
    assert stopped < 4, "the cancel came before the last step"
    # One clean checkpoint for the stop: at the step it stopped after (step 2's periodic one is the same checkpoint).
    saved = [e["step"] for e in events if e["event"] == "checkpoint"]
    assert saved.count(stopped) == 1 and max(saved) == stopped, saved
    assert sorted(c.name for c in (run / "checkpoints").iterdir())[-1] == f"step-{stopped:08d}"
    # Resume on one process: the global batch (2 x 2) stays, that one process takes all of it.
    r = subprocess.run([sys.executable, *TRAIN, "--run-dir", str(run), "--resume", "--devices", "cpu"],
                       capture_output=True, text=True, timeout=300, cwd=WORKER, env=env())
    assert r.returncode == 0, r.stderr[-3000:]
    record, events = validate_run(run, schemas)
    assert record["status"] == "succeeded" and record["spec"]["devices"] == "cpu"
    assert [e for e in events if e["event"] == "model_loaded"][-1]["worldSize"] == 1
    a, b = curve(one_node), curve(run)
    assert sorted(b) == [1, 2, 3, 4]
    assert max(abs(a[s] - b[s]) for s in a) <= 1e-5, (a, b)


def test_resume_onto_a_count_that_cannot_share_the_global_batch(one_node, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(one_node, run)
    for ck in sorted((run / "checkpoints").iterdir())[1:]:
        shutil.rmtree(ck)  # back to step 2, as a crash there would leave it
    state = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**state, "status": "failed"}))
    p = subprocess.run([*TORCHRUN, "--standalone", "--nproc_per_node=3", *TRAIN, "--run-dir", str(run), "--resume", "--devices", "cpu:3"],
                       capture_output=True, text=True, timeout=300, cwd=WORKER, env=env())
    assert p.returncode != 0
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "failed"
    assert "global batch of 4, which 3 processes cannot share evenly" in record["error"]["message"]


def test_a_killed_rank_fails_the_run_naming_it(tiny_llama, data, tmp_path, schemas):
    run = tmp_path / "run"
    p = launch_detached(run, "--model", str(tiny_llama), "--data", str(data), *BASE, "--steps", "6", "--devices", "cpu:2",
                        "--debug-kill-after-step", "2", "--debug-kill-rank", "1")
    p.wait(timeout=300)
    assert p.returncode != 0
    record, _ = validate_run(run, schemas)
    assert record["status"] == "failed", (run / "worker.log").read_text(errors="replace")[-3000:]
    assert record["error"]["message"].startswith("rank 1 (pid "), record["error"]
    assert "died without a word" in record["error"]["message"]
    assert all(gone(pid) for pid in rank_pids(run))


def test_a_busy_device_is_refused_naming_the_holder(tiny_llama, data, tmp_path):
    from l3prune.devicelock import DeviceLock

    holder = tmp_path / "holder"
    with DeviceLock("cpu", holder):
        run = tmp_path / "run"
        p = launch_detached(run, "--model", str(tiny_llama), "--data", str(data), *BASE, "--steps", "2", "--devices", "cpu:2")
        p.wait(timeout=300)
    record = json.loads((run / "run.json").read_text())
    assert record["status"] == "failed"
    assert f"device cpu is busy with run {holder}" in record["error"]["message"]
