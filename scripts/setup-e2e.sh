#!/usr/bin/env bash
# Prepare everything the end-to-end tests need, so that nothing downloads at test time:
#   - Debian packages: chromium (the browser playwright-core drives), libkrb5-dev (node-pty/kerberos
#     headers for code-server's native modules), ripgrep (seeds @vscode/ripgrep's download cache).
#   - code-server 4.100.3 (VS Code 1.100.3, the newest release that runs on Node 20), installed into the
#     git-ignored .tools/code-server/ with its own package.json, so it never touches the root lockfile.
# Idempotent: when everything is already in place it only checks and exits (well under a second).
# See /work/shared/OFFLINE-NOTES.md for why each step is needed.
set -euo pipefail

CODE_SERVER_VERSION=4.100.3
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="$ROOT/.tools/code-server"
CS_BIN="$TOOLS_DIR/node_modules/.bin/code-server"
STAMP="$TOOLS_DIR/.installed-$CODE_SERVER_VERSION"

log() { printf '[setup-e2e] %s\n' "$*"; }
start=$(date +%s)

# ---- 1. Debian packages (only when missing; `apt-get update` only when an install is needed) ----------
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v rg >/dev/null 2>&1 || missing+=(ripgrep)
# libkrb5-dev has no binary to probe; krb5-config ships with it.
{ command -v krb5-config >/dev/null 2>&1 || dpkg -s libkrb5-dev >/dev/null 2>&1; } || missing+=(libkrb5-dev)
if ((${#missing[@]})); then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { log "need root (or sudo) to install: ${missing[*]}"; exit 1; }
    SUDO="sudo"
  fi
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # `apt-get update` only when needed: a fresh image has no package lists; stale lists make the
  # install fail (404), then update and try once more. (Recommends stay on: chromium's fonts.)
  if ! compgen -G '/var/lib/apt/lists/*_Packages*' >/dev/null; then $SUDO apt-get update; fi
  if ! $SUDO apt-get install -y "${missing[@]}"; then
    $SUDO apt-get update
    $SUDO apt-get install -y "${missing[@]}"
  fi
fi

# ---- 2. code-server into .tools/code-server ------------------------------------------------------------
if [ -f "$STAMP" ] && [ -x "$CS_BIN" ]; then
  log "code-server $CODE_SERVER_VERSION already installed ($(( $(date +%s) - start ))s)"
  exit 0
fi

# code-server's postinstall refuses any Node but 20 (and its native modules are built for that ABI).
if [ "$(node -p 'process.versions.node.split(".")[0]')" != 20 ]; then
  log "code-server $CODE_SERVER_VERSION needs Node 20, this is $(node --version)"
  exit 1
fi
log "installing code-server@$CODE_SERVER_VERSION into ${TOOLS_DIR#"$ROOT"/}"
mkdir -p "$TOOLS_DIR"

# @vscode/ripgrep's postinstall downloads a ripgrep release from GitHub unless its cache
# ($TMPDIR/vscode-ripgrep-cache-<its version>) already has the archive; code-server 4.100.3 ships
# @vscode/ripgrep 1.15.11, which wants ripgrep v13.0.0-10. Put Debian's rg in that archive instead.
case "$(uname -m)" in
  x86_64) RG_TARGET=x86_64-unknown-linux-musl ;;
  aarch64 | arm64) RG_TARGET=aarch64-unknown-linux-musl ;;
  *) log "unsupported architecture $(uname -m) for the offline ripgrep seed"; exit 1 ;;
esac
RG_CACHE="${TMPDIR:-/tmp}/vscode-ripgrep-cache-1.15.11"
RG_TARBALL="$RG_CACHE/ripgrep-v13.0.0-10-$RG_TARGET.tar.gz"
if [ ! -f "$RG_TARBALL" ]; then
  mkdir -p "$RG_CACHE"
  tar czf "$RG_TARBALL.tmp" -C "$(dirname "$(command -v rg)")" rg
  mv "$RG_TARBALL.tmp" "$RG_TARBALL" # never leave a half-written archive for the next run to trust
fi

# Own package.json so `npm install` here neither climbs to the root project nor edits its lockfile.
if [ ! -f "$TOOLS_DIR/package.json" ]; then
  printf '{\n  "name": "l3prune-e2e-tools",\n  "private": true\n}\n' >"$TOOLS_DIR/package.json"
fi

# yes: node-pty's build runs `npx node-gyp` non-interactively; unsafe_perm: code-server's postinstall
# refuses to run as root otherwise (CI runs as root).
(
  cd "$TOOLS_DIR"
  npm_config_yes=true npm_config_unsafe_perm=true npm_config_fund=false npm_config_audit=false \
    npm install --no-save --no-package-lock "code-server@$CODE_SERVER_VERSION"
)

# The npm package is only half of code-server: its postinstall installs VS Code's own dependencies and
# builds the native modules. npm 11 warns that it will stop running dependency install scripts unless
# allowed; fail here, not at test time, if they were skipped.
VSCODE_DIR="$TOOLS_DIR/node_modules/code-server/lib/vscode"
for f in node_modules.asar node_modules/node-pty/build/Release/pty.node node_modules/@vscode/ripgrep/bin/rg \
  extensions/node_modules; do
  if [ ! -e "$VSCODE_DIR/$f" ]; then
    log "code-server's postinstall did not complete (missing lib/vscode/$f); were install scripts skipped?"
    exit 1
  fi
done
"$CS_BIN" --version >/dev/null
touch "$STAMP"
log "done in $(( $(date +%s) - start ))s"
