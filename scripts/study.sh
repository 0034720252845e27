#!/usr/bin/env bash
# The demo study (docs/study/): train and evaluate the demo model at p ∈ {0, 20, 40, 60, 80} % pruned and at both
# L³Prune cuts, same recipe, then write the table and the plot. Arguments go to scripts/study.py (--check reruns
# everything and compares with the committed table). About an hour on 2 CPU cores; a rerun reuses finished runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-worker.sh
# matplotlib draws the committed plot; it is the study's own dependency, not the worker's.
.venv/bin/python -c "import matplotlib" 2>/dev/null || .venv/bin/python -m pip install -q "matplotlib>=3.8"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python scripts/study.py "$@"
