#!/usr/bin/env bash
# Install Debian's bubblewrap (`bwrap`), which confines container kernels (sandbox=auto|bwrap).
# From the distribution only; nothing is downloaded from elsewhere. Idempotent.
set -euo pipefail

if command -v bwrap >/dev/null 2>&1; then
    echo "install-sandbox: $(command -v bwrap) already present: $(bwrap --version 2>/dev/null || true)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        echo "install-sandbox: not root and no sudo; cannot install bubblewrap" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends bubblewrap

if ! command -v bwrap >/dev/null 2>&1; then
    echo "install-sandbox: apt-get finished but bwrap is missing" >&2
    exit 1
fi
echo "install-sandbox: installed $(bwrap --version)"
