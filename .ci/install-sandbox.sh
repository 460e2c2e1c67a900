#!/usr/bin/env bash
# Install Debian's bubblewrap (`bwrap`), which confines container kernels (sandbox=auto|bwrap).
# From the distribution only; nothing is downloaded from elsewhere. Idempotent.
set -euo pipefail
exec bash "$(dirname "$0")/apt-install.sh" install-sandbox bwrap bubblewrap
