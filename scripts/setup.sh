#!/usr/bin/env bash
# Everything a fresh machine needs, idempotent: system packages, the extension's npm packages and bundles,
# the packaged .vsix, the worker's Python environment with the demo model and data, and a local VS Code
# (code-server) for the end-to-end tests and the demo. Safe to rerun; fast when done.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS

# onnxruntime-node's install script would download CUDA libraries; the CPU runtime needs nothing more.
export ONNXRUNTIME_NODE_INSTALL=skip
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  echo "setup: installing npm packages"
  npm ci --no-audit --no-fund
fi
echo "setup: building and packaging the extension"
npm run --silent package >/dev/null

bash scripts/setup-worker.sh
bash scripts/setup-e2e.sh
echo "setup: done in $((SECONDS - started)) s"
