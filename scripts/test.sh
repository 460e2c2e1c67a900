#!/usr/bin/env bash
# Install everything (Python packages into ./.venv, Node.js for the JupyterLab extension,
# Jupyter Enterprise Gateway into ./.venv-eg, Debian chromium for the browser tests, Debian
# bubblewrap for the sandbox, the Codex CLI) and run the whole suite: ruff, mypy --strict,
# import-linter, the extension's jest tests, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
bash .ci/install-node.sh
export PATH="$PWD/.venv/bin:$PATH"
# builds labextension/ into the package (hatch-jupyter-builder) unless already built
.venv/bin/python -m pip install --quiet -e ".[test]"
bash .ci/install-browser.sh
bash .ci/install-sandbox.sh
bash .ci/install-codex.sh
bash scripts/install-eg.sh  # Jupyter Enterprise Gateway in ./.venv-eg: remote-kernel tests
export CI=${CI:-1}  # browser and sandbox tests fail (never skip) when chromium/bwrap are missing
echo "== ruff";          ruff check jupyter_exec_sessions tests benchmarks
echo "== ruff format";   ruff format --check jupyter_exec_sessions tests benchmarks
echo "== mypy --strict"; mypy
echo "== import-linter"; lint-imports
echo "== jest";          (cd labextension && jlpm install --immutable >/dev/null && jlpm test)
echo "== pytest";        pytest "$@"
# the container and execution tests once more with confined kernels (the first pass: sandbox=none);
# their [gateway] variants are left out: remote kernels are never confined locally, so they
# would repeat the first pass exactly
echo "== pytest (sandbox=bwrap)"
EXEC_SESSIONS_TEST_SANDBOX=bwrap pytest tests/test_containers_api.py tests/test_executions_api.py \
    -k "not gateway"
