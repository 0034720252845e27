"""The worker as the extension installs it: `pip install worker/` (not editable) into an interpreter outside the
checkout. What ships must be the runtime only (no demo builder, no `gguf`), carry its own copy of protocol/, and
never look for data "two folders up", which for an installed package is inside the interpreter's lib folder."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import ENV, PROTOCOL, WORKER, make_tiny_llama


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # Built from a clean copy: setuptools builds in the source tree, and a stale build/ folder there would put files
    # into the wheel that the sources no longer have.
    source = out / "worker"
    shutil.copytree(WORKER, source, ignore=shutil.ignore_patterns("tests", "build", "*.egg-info", "__pycache__"))
    # --no-build-isolation: setuptools comes from this environment, so no index is needed.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
                   check=True, env=ENV, cwd=out, timeout=300)
    (found,) = out.glob("l3prune-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """An interpreter that has the wheel's l3prune and this environment's dependencies, but not the checkout."""
    root = tmp_path_factory.mktemp("installed")
    site = root / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, env=ENV, cwd=root, timeout=300)
    return site


def run_installed(site: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    # -S and an explicit path: this environment's site-packages holds the editable install's finder, which must
    # not be processed; the dependencies are still found as a plain path entry after the installed copy.
    deps = sysconfig.get_paths()["purelib"]
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(site), deps])}
    env.pop("L3PRUNE_DEMO_DATA", None)
    return subprocess.run([sys.executable, "-S", "-m", "l3prune", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_wheel_ships_the_runtime_and_the_protocol_but_not_the_demo_builder(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert not [n for n in names if "demo_assets" in n]
    for schema in PROTOCOL.rglob("*.schema.json"):
        assert f"l3prune/protocol/{schema.relative_to(PROTOCOL).as_posix()}" in names, schema.name
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    requires = [line for line in zipfile.ZipFile(wheel).read(metadata).decode().splitlines() if line.startswith("Requires-Dist:")]
    runtime = [r for r in requires if "extra ==" not in r]
    assert not [r for r in runtime if "gguf" in r], runtime
    assert any("torch" in r for r in runtime)


def test_the_installed_worker_runs_from_its_own_copy(installed, tmp_path):
    probe = subprocess.run([sys.executable, "-S", "-c", "import l3prune, sys; print(l3prune.__file__)"],
                           env={**ENV, "PYTHONPATH": str(installed)}, capture_output=True, text=True, cwd=tmp_path)
    assert probe.returncode == 0, probe.stderr
    assert Path(probe.stdout.strip()).is_relative_to(installed)
    proc = run_installed(installed, ["--help"], tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "evaluate" in proc.stdout


def test_evaluate_without_a_data_folder_says_what_to_pass(installed, tmp_path):
    model = make_tiny_llama(tmp_path / "tiny")
    run_dir = tmp_path / "runs" / "e1"
    proc = run_installed(installed, ["evaluate", "--model", str(model), "--run-dir", str(run_dir)], tmp_path)
    assert proc.returncode == 2, proc.stderr
    message = proc.stderr.strip()
    assert len(message.splitlines()) == 1, message
    assert "--data-dir" in message and "l3prune.evaluationDataDir" in message, message
    assert "site-packages" not in message and ".demo" not in message, message
    # Refused before the run folder is touched, as every bad input is.
    assert not run_dir.exists()


def test_the_installed_worker_validates_specs_against_its_protocol_copy(installed, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"model": str(tmp_path), "data": str(tmp_path / "t.jsonl"), "samples": 0}), encoding="utf-8")
    proc = run_installed(installed, ["analyze", "--spec", str(spec), "--run-dir", str(tmp_path / "runs" / "a1")], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "samples" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
