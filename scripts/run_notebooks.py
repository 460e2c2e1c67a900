"""Execute the example notebooks against a real server and write their outputs back.

Starts a ``jupyter server`` with the extension on a free loopback port (private data and
runtime directories, random token, ``root_dir`` = ``notebooks/``), then runs every
``notebooks/NN_*.ipynb`` top to bottom with nbclient in a kernel of this Python environment,
whose working directory is ``notebooks/``. The notebooks find the server the way
``SessionMonitor()`` does (the running server whose ``root_dir`` holds the kernel's directory):
no URL or token is handed to them. Any error output fails the run; nothing is written then.

    python scripts/run_notebooks.py            # all of them
    python scripts/run_notebooks.py 04 05      # the ones whose name contains 04 or 05
    python scripts/run_notebooks.py --check    # execute, do not write back

The server runs with ``minute_seconds=3`` (one "minute" of ``expires_after`` lasts 3 s) so that
``03_gateway_hook`` waits seconds, not a minute, for its container to expire. The test suite uses
:func:`execute` and :func:`launch_server` from here (``tests/test_notebooks.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import nbformat
from jupyter_client.manager import AsyncKernelManager
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
#: The server settings the notebooks are run under (see the module docstring).
SERVER_TRAITS: dict[str, Any] = {
    "pool_size": 2,
    "minute_seconds": 3,
    "reaper_interval": 0.5,
    "max_containers_per_user": 50,
    # the committed story of 04 is the confined one; a host without bubblewrap fails loudly
    "sandbox": "bwrap",
}
_LAB_OFF = ["jupyterlab", "jupyter_lsp", "notebook_shim", "jupyter_server_terminals"]
_ENV_DROP = ("JUPYTER_EXEC_SESSIONS_URL", "JUPYTER_EXEC_SESSIONS_TOKEN", "JPY_PARENT_PID")


@dataclass
class Server:
    """A running ``jupyter server`` subprocess with the extension."""

    url: str
    token: str
    root_dir: Path
    runtime_dir: Path
    proc: subprocess.Popen[bytes]
    log_path: Path

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def notebook_paths(selectors: list[str] | None = None) -> list[Path]:
    """The numbered example notebooks, in order (optionally only names containing a selector)."""
    paths = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
    if selectors:
        paths = [p for p in paths if any(s in p.name for s in selectors)]
    return paths


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def launch_server(
    tmp: Path,
    root_dir: Path,
    *,
    lab: bool = False,
    extra_args: tuple[str, ...] = (),
    ready_timeout: float = 90,
    **traits: Any,
) -> Iterator[Server]:
    """Start a server whose ``root_dir`` is ``root_dir``; stop it on exit (bounded waits).

    ``lab=True`` keeps JupyterLab (and the other installed server extensions) enabled.
    """
    runtime = tmp / "runtime"
    for d in (tmp / "data", runtime, tmp / "config", tmp / "jdata"):
        d.mkdir(parents=True, exist_ok=True)
    port, token = _free_port(), secrets.token_hex(16)
    extensions = {"jupyter_exec_sessions": True, **dict.fromkeys([] if lab else _LAB_OFF, False)}
    args = [
        sys.executable,
        "-m",
        "jupyter_server",
        "--no-browser",
        "--allow-root",
        f"--port={port}",
        "--ip=127.0.0.1",
        f"--ServerApp.root_dir={root_dir}",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.jpserver_extensions={extensions!r}",
        f"--ExecSessionsApp.data_dir={tmp / 'data'}",
    ]
    args += [f"--ExecSessionsApp.{k}={v}" for k, v in {**SERVER_TRAITS, **traits}.items()]
    args += extra_args
    env = {k: v for k, v in os.environ.items() if k not in _ENV_DROP}
    env.update(
        JUPYTER_RUNTIME_DIR=str(runtime),
        JUPYTER_CONFIG_DIR=str(tmp / "config"),
        JUPYTER_DATA_DIR=str(tmp / "jdata"),
        JUPYTER_PLATFORM_DIRS="1",
    )
    log_path = tmp / "server.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    server = Server(f"http://127.0.0.1:{port}/", token, root_dir, runtime, proc, log_path)
    try:
        deadline = time.monotonic() + ready_timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited early:\n{log_path.read_text()}")
            with contextlib.suppress(httpx2.TransportError):
                r = httpx2.get(
                    f"{server.url}exec-sessions/v1/containers?limit=1",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=2,
                )
                if r.status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield server
    finally:
        server.stop()


def kernel_env(server: Server) -> dict[str, str]:
    """The notebook kernel's environment: the server's runtime dir, no explicit URL/token."""
    env = {k: v for k, v in os.environ.items() if k not in _ENV_DROP}
    env["JUPYTER_RUNTIME_DIR"] = str(server.runtime_dir)
    env.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return env


def error_outputs(nb: nbformat.NotebookNode) -> list[str]:
    """Every error output of a notebook, as ``cell id: name: value``."""
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                found.append(f"{cell.get('id')}: {out.get('ename')}: {out.get('evalue')}")
    return found


def execute(path: Path, server: Server, cwd: Path, *, timeout: int = 300) -> nbformat.NotebookNode:
    """Run one notebook top to bottom in a fresh kernel; raise on the first error."""
    nb = nbformat.read(path, as_version=4)
    # ipc: no race for TCP ports with other processes of a busy machine
    ipc_dir = tempfile.mkdtemp(prefix="jes-kernel-")  # short: unix socket paths are limited
    km = AsyncKernelManager(kernel_name="python3", transport="ipc", ip=f"{ipc_dir}/k")
    client = NotebookClient(
        nb,
        km=km,
        timeout=timeout,
        kernel_name="python3",
        resources={"metadata": {"path": str(cwd)}},
        allow_errors=False,
        record_timing=False,
    )
    try:
        client.execute(env=kernel_env(server))
    finally:
        shutil.rmtree(ipc_dir, ignore_errors=True)
    errors = error_outputs(nb)
    if errors:
        raise RuntimeError(f"{path.name}: error outputs: {errors}")
    return nb


def main(argv: list[str] | None = None) -> int:
    """Run the notebooks and write their outputs back (unless ``--check``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("only", nargs="*", help="run only notebooks whose name contains these")
    parser.add_argument("--check", action="store_true", help="execute without writing back")
    args = parser.parse_args(argv)
    paths = notebook_paths(args.only)
    if not paths:
        parser.error("no notebook matches")
    with (
        tempfile.TemporaryDirectory(prefix="jes-notebooks-") as tmp,
        launch_server(Path(tmp), NOTEBOOKS) as server,
    ):
        for path in paths:
            t0 = time.monotonic()
            nb = execute(path, server, NOTEBOOKS)
            print(f"{path.name}: ok in {time.monotonic() - t0:.1f} s", flush=True)
            if not args.check:
                nbformat.write(nb, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
