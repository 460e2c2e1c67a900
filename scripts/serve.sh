#!/usr/bin/env bash
# Install jupyter-exec-sessions (with JupyterLab) into ./.venv and start JupyterLab with the
# extension, printing how to reach the containers API and the MCP endpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
bash .ci/install-node.sh  # builds the JupyterLab panel during the install below
export PATH="$PWD/.venv/bin:$PATH"
.venv/bin/python -m pip install --quiet -e ".[lab]"
# bubblewrap confines container kernels; without it the server runs them unconfined (logged)
bash .ci/install-sandbox.sh || echo "serve: bubblewrap not installed: containers run without a sandbox" >&2
PORT=${PORT:-8888}
TOKEN=${JUPYTER_TOKEN:-$(.venv/bin/python -c 'import secrets; print(secrets.token_hex(24))')}
cat <<MSG

  jupyter-exec-sessions is starting on http://127.0.0.1:${PORT}/

  JupyterLab:      http://127.0.0.1:${PORT}/lab?token=${TOKEN}
  Containers API:  http://127.0.0.1:${PORT}/exec-sessions/v1   (Authorization: Bearer ${TOKEN})
  MCP endpoint:    http://127.0.0.1:${PORT}/exec-sessions/mcp  (streamable HTTP, same token)

  from openai import OpenAI
  client = OpenAI(base_url="http://127.0.0.1:${PORT}/exec-sessions/v1", api_key="${TOKEN}")
  c = client.containers.create(name="demo")

MSG
EXTRA=()
[ "$(id -u)" = 0 ] && EXTRA+=(--allow-root)
exec .venv/bin/jupyter lab "${EXTRA[@]}" --no-browser --ip=127.0.0.1 --port="${PORT}" \
  --IdentityProvider.token="${TOKEN}" "$@"
