#!/usr/bin/env bash
# Install the real Codex CLI (npm @openai/codex, pinned) into the project-local prefix
# .ci/node/ for the end-to-end MCP test (tests/test_codex_e2e.py finds it there).
# The npm package carries its native binary in a platform optional dependency
# (@openai/codex-linux-x64 etc., served by the npm registry): nothing is downloaded at run
# time. Needs node and npm (Debian: apt-get install nodejs npm). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${CODEX_VERSION:-0.171.0}
PREFIX=.ci/node
BIN="$PREFIX/node_modules/.bin/codex"

if [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -qx "codex-cli $VERSION"; then
    echo "install-codex: $("$BIN" --version) already present"
    exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo -n"; fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -q
    $SUDO apt-get install -y -q --no-install-recommends nodejs npm
fi
mkdir -p "$PREFIX"
npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error "@openai/codex@$VERSION"
"$BIN" --version
