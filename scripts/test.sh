#!/usr/bin/env bash
# All tests: set-up, type check, generated protocol code, lint, mocha unit tests, the worker's pytest suite,
# and the end-to-end suite in a real VS Code. Every suite runs even when an earlier one fails; the last line
# sums them up.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || { echo "setup failed"; echo "tests: 0 passed, 1 failed"; exit 1; }

mkdir -p test-artifacts
passed=0; failed=0; skipped=0; status=0
count() { # $1 log, $2 regex with one number group
  grep -oE "$2" "$1" | grep -oE '[0-9]+' | awk '{s+=$1} END {print s+0}'
}
run_mocha() { # $1 name, rest: command
  local name=$1 log="test-artifacts/$1.log"; shift
  echo "== $name"
  "$@" 2>&1 | tee "$log"; local rc=${PIPESTATUS[0]}
  passed=$((passed + $(count "$log" '[0-9]+ passing'))); failed=$((failed + $(count "$log" '[0-9]+ failing')))
  skipped=$((skipped + $(count "$log" '[0-9]+ pending')))
  if [ "$rc" -ne 0 ]; then status=1; [ "$(count "$log" '[0-9]+ failing')" -eq 0 ] && failed=$((failed + 1)); fi
}

# The type check, the generated protocol code and the lint each count as one failure when they fail.
check() { # $1 name, rest: command
  echo "== $1"; shift
  if ! "$@"; then status=1; failed=$((failed + 1)); fi
}
check typecheck npm run --silent typecheck
check "protocol (generated code and worker copy up to date)" node scripts/generate-protocol.mjs --check
check lint npx --no-install eslint .
run_mocha unit npx --no-install mocha --import=tsx 'test/unit/**/*.test.ts'

echo "== worker (pytest)"
.venv/bin/python -m pytest worker/tests -q -p no:cacheprovider 2>&1 | tee test-artifacts/worker.log; rc=${PIPESTATUS[0]}
summary=$(grep -E '^(=+ )?[0-9]+ (passed|failed)' test-artifacts/worker.log | tail -1)
passed=$((passed + $(echo "$summary" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+' || echo 0)))
failed=$((failed + $(echo "$summary" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+' || echo 0) + $(echo "$summary" | grep -oE '[0-9]+ error' | grep -oE '[0-9]+' || echo 0)))
skipped=$((skipped + $(echo "$summary" | grep -oE '[0-9]+ skipped' | grep -oE '[0-9]+' || echo 0)))
if [ "$rc" -ne 0 ]; then status=1; [ -z "$summary" ] && failed=$((failed + 1)); fi

run_mocha e2e npx --no-install mocha --import=tsx --timeout 300000 'test/e2e/**/*.test.ts'

echo "tests: ${passed} passed, ${failed} failed, ${skipped} skipped"
exit $status
