#!/usr/bin/env bash
# Jupyter Enterprise Gateway in its own virtual environment (./.venv-eg), for the remote-kernel
# tests and benchmarks. It cannot share ./.venv: Enterprise Gateway 3.x pins jupyter_server<2
# and jupyter_client<7. ipykernel is installed beside it, so the gateway's default python3
# kernelspec (the "local process proxy": kernels are processes of the gateway) runs a kernel
# that has nothing of ours: the engine installs its helper through the kernel's channels.
# Idempotent and fast when the environment is already there (one import check).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${EG_VENV:-.venv-eg}
if [ -x "$VENV/bin/jupyter-enterprisegateway" ] \
    && "$VENV/bin/python" -c "import enterprise_gateway, ipykernel" 2>/dev/null; then
    exit 0
fi
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet "jupyter_enterprise_gateway>=3.2,<4" ipykernel
"$VENV/bin/python" -c "import enterprise_gateway, ipykernel; print('enterprise gateway', enterprise_gateway.__version__)"
