#!/usr/bin/env bash
# Install everything (Python packages into ./.venv, Jupyter Enterprise Gateway into ./.venv-eg,
# Debian chromium for the browser tests)
# and run the whole suite: ruff, mypy --strict, import-linter, pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[test]"
bash .ci/install-browser.sh
bash scripts/install-eg.sh  # Jupyter Enterprise Gateway in ./.venv-eg: remote-kernel tests
export PATH="$PWD/.venv/bin:$PATH"
export CI=${CI:-1}  # the browser test fails (never skips) when chromium is missing
echo "== ruff";          ruff check jupyter_exec_sessions tests benchmarks
echo "== ruff format";   ruff format --check jupyter_exec_sessions tests benchmarks
echo "== mypy --strict"; mypy
echo "== import-linter"; lint-imports
echo "== pytest";        pytest "$@"
