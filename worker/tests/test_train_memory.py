"""The memory a CPU training run reports per step (rssBytes), checked against what the kernel says of the process."""
from __future__ import annotations

import resource
import sys

from conftest import read_events, validate_run, worker_cli, write_triples


def test_cpu_steps_report_the_process_resident_memory(tiny_llama, tmp_path, schemas):
    data = write_triples(tmp_path / "triples.jsonl", 8)
    run_dir = tmp_path / "run"
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    p = worker_cli("train", "--run-dir", str(run_dir), "--model", str(tiny_llama), "--data", str(data), "--keep", "2", "--steps", "3",
                   "--batch-size", "4", "--max-length", "24", "--warmup-steps", "1", "--checkpoint-every", "3")
    assert p.returncode == 0, p.stderr
    validate_run(run_dir, schemas)
    steps = [e for e in read_events(run_dir) if e["event"] == "step"]
    assert len(steps) == 3 and all(e["gpuMemoryBytes"] is None for e in steps)
    rss = [e["rssBytes"] for e in steps]
    if not sys.platform.startswith("linux"):
        assert all(r is None for r in rss)
        return
    # The kernel's own account of the finished worker: the peak resident size of the largest child waited for
    # (kilobytes on Linux). A step's resident size cannot exceed the worker's peak, and a process that has
    # imported torch and holds a model is well over 50 MB.
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    assert peak > 0 and before * 1024 <= peak
    assert all(isinstance(r, int) and 50 * 2**20 < r <= peak for r in rss), (rss, peak)
