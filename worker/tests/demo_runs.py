"""A runs root like the extension's (.l3prune/runs/<id>/) holding a short LoRA train run of the demo model (6 of its
30 layers kept, merged), an analyze run of the same model and an evaluate run of the trained variant: what encode
and export-st read. Built once per test session, in this process (interpreter start-ups cost more than the runs)."""
from __future__ import annotations

import signal
from pathlib import Path

from conftest import DEMO_DATA, DEMO_TRIPLES

KEEP = 6


def _run(verb: str, argv: list[str]) -> None:
    from l3prune.__main__ import main

    try:
        rc = main([verb, *argv])
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    assert rc == 0, f"{verb} {argv} exited {rc}"


def build(root: Path, model: Path) -> dict[str, Path]:
    runs = root / "runs"
    runs.mkdir(parents=True)
    train, analyze, evaluate = runs / "train-demo", runs / "analyze-demo", runs / "evaluate-demo"
    _run("analyze", ["--run-dir", str(analyze), "--model", str(model), "--data", str(DEMO_TRIPLES), "--samples", "8",
                     "--batch-size", "4", "--max-length", "32", "--device", "cpu"])
    _run("train", ["--run-dir", str(train), "--model", str(model), "--data", str(DEMO_TRIPLES), "--keep", str(KEEP), "--steps", "2",
                   "--batch-size", "4", "--max-length", "32", "--learning-rate", "1e-3", "--warmup-steps", "0", "--device", "cpu"])
    _run("evaluate", ["--run-dir", str(evaluate), "--from-run", str(train), "--tasks", "sts,retrieval", "--max-examples", "8",
                      "--max-length", "64", "--data-dir", str(DEMO_DATA), "--device", "cpu"])
    return {"train": train, "analyze": analyze, "evaluate": evaluate, "root": runs}


def shared(tmp_path_factory, model: Path) -> dict[str, Path]:
    """build() once per test session: every test module that asks gets the same runs."""
    root = tmp_path_factory.getbasetemp() / "demo-runs"
    if not (root / "runs" / "evaluate-demo" / "run.json").is_file():
        build(root, model)
    runs = root / "runs"
    return {"train": runs / "train-demo", "analyze": runs / "analyze-demo", "evaluate": runs / "evaluate-demo", "root": runs}
