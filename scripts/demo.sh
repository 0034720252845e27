#!/usr/bin/env bash
# The demo, end to end: set everything up, inspect the demo model (SmolLM2-135M, from a PyPI package),
# compute its initial loss at every depth on the demo triples with the worker, print L³Prune's two cuts,
# then serve VS Code on 127.0.0.1 with the extension installed and the demo workspace open.
#   bash scripts/demo.sh              # everything, then serve until Ctrl-C
#   bash scripts/demo.sh --no-serve   # stop after the analysis (headless machines, scripts)
# Environment: PORT (default 8080), SAMPLES (default 256), BATCH_SIZE (default 16).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
serve=1
[ "${1:-}" = "--no-serve" ] && serve=0

bash scripts/setup.sh

MODEL="$ROOT/.demo/models/smollm2-135m"
DATA="$ROOT/.demo/data/triples.jsonl"
WORKSPACE="$ROOT/.demo/workspace"
mkdir -p "$WORKSPACE/.vscode"
cat > "$WORKSPACE/.vscode/settings.json" <<JSON
{
  "l3prune.models": ["$MODEL"],
  "l3prune.dataFile": "$DATA",
  "l3prune.pythonPath": "$ROOT/.venv/bin/python"
}
JSON

echo "== the demo model's layer stack (npx l3prune inspect)"
npx --no-install l3prune inspect "$MODEL" | head -4
npx --no-install l3prune plan "$MODEL" --prune-percent 30

RUN_DIR="$WORKSPACE/.l3prune/runs/analyze-demo-$(date -u +%Y%m%dT%H%M%S)"
echo "== initial loss at every depth (python -m l3prune analyze → $RUN_DIR)"
.venv/bin/python -m l3prune analyze --model "$MODEL" --data "$DATA" --run-dir "$RUN_DIR" \
  --samples "${SAMPLES:-256}" --batch-size "${BATCH_SIZE:-16}" >/dev/null
.venv/bin/python - "$RUN_DIR/events.jsonl" <<'PY'
import json, sys
last = [json.loads(l) for l in open(sys.argv[1]) if l.strip()][-1]
losses = last["losses"]
print("depth  loss")
for d, v in enumerate(losses, 1):
    mark = "  <- small" if d == last["small"] else "  <- large" if d == last["large"] else ""
    print(f"{d:5d}  {v:.4f}{mark}")
print(f"L³Prune cuts: small keeps {last['small']} of {len(losses)} layers, large keeps {last['large']}")
PY

[ "$serve" -eq 1 ] || exit 0
PORT=${PORT:-8080}
STATE="$ROOT/.demo/code-server"
mkdir -p "$STATE/user-data/User" "$STATE/extensions"
echo '{"workbench.startupEditor": "none", "security.workspace.trust.enabled": true}' > "$STATE/user-data/User/settings.json"
CS="$ROOT/.tools/code-server/node_modules/.bin/code-server"
"$CS" --user-data-dir "$STATE/user-data" --extensions-dir "$STATE/extensions" --install-extension "$ROOT/dist/l3prune-studio.vsix" --force >/dev/null
echo "== VS Code with L³Prune Studio: http://127.0.0.1:$PORT/?folder=$WORKSPACE  (Ctrl-C stops it)"
echo "   open the L³Prune view in the activity bar; the demo model and its cuts are listed there."
exec "$CS" --auth none --bind-addr "127.0.0.1:$PORT" --user-data-dir "$STATE/user-data" --extensions-dir "$STATE/extensions" \
  --disable-telemetry --disable-update-check "$WORKSPACE"
