#!/usr/bin/env bash
# Install everything (Python packages into ./.venv, Node.js for the JupyterLab extension,
# Debian chromium for the browser tests) and run the whole suite: ruff, mypy --strict,
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
export CI=${CI:-1}  # the browser test fails (never skips) when chromium is missing
echo "== ruff";          ruff check jupyter_exec_sessions tests benchmarks
echo "== ruff format";   ruff format --check jupyter_exec_sessions tests benchmarks
echo "== mypy --strict"; mypy
echo "== import-linter"; lint-imports
echo "== jest";          (cd labextension && jlpm install --immutable >/dev/null && jlpm test)
echo "== pytest";        pytest "$@"
