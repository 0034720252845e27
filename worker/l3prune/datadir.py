"""Where `evaluate` finds its built-in tasks' data when the user names no folder.

The demo data is built by the checkout's set-up (scripts/setup-worker.sh) into `<checkout>/.demo/data`. A worker
that the extension pip-installed lives in site-packages, where "two folders up" is the interpreter's lib folder,
so the checkout default applies only when this package really sits in a checkout (worker/pyproject.toml next to
it); anywhere else the user must say where the data is.
"""
from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "L3PRUNE_DEMO_DATA"


def checkout_root() -> Path | None:
    """The checkout this package runs from (an editable install or PYTHONPATH=worker), or None when installed."""
    here = Path(__file__).resolve().parent
    worker = here.parent
    if worker.name == "worker" and (worker / "pyproject.toml").is_file():
        return worker.parent
    return None


def default_eval_data_dir() -> Path:
    """$L3PRUNE_DEMO_DATA, else the checkout's .demo/data; raises ValueError with what to pass otherwise."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env)
    root = checkout_root()
    if root is not None:
        return root / ".demo" / "data"
    raise ValueError(
        "no evaluation data folder was given and this installed worker has no demo data of its own; pass "
        "--data-dir DIR (a folder with sts.jsonl and eval/), set l3prune.evaluationDataDir in VS Code, or set "
        f"{ENV_VAR}"
    )
