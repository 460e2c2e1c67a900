#!/usr/bin/env bash
# Install Debian packages unless a program they provide is already there. Idempotent; from the
# distribution only, nothing is downloaded from elsewhere.
#   bash .ci/apt-install.sh LABEL PROGRAM PACKAGE...
# LABEL prefixes every message; PROGRAM (a name on PATH or an absolute path) is what must exist
# afterwards.
set -euo pipefail
label=$1 program=$2
shift 2

if command -v "$program" >/dev/null 2>&1; then
    echo "$label: $(command -v "$program") already present: $("$program" --version 2>/dev/null || true)"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo -n"
    else
        echo "$label: not root and no sudo; cannot install $*" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "$@"

if ! command -v "$program" >/dev/null 2>&1; then
    echo "$label: apt-get finished but $program is missing" >&2
    exit 1
fi
echo "$label: installed $("$program" --version 2>/dev/null || echo "$program")"
