"""Shared fixtures: real Jupyter servers (subprocesses) with the extension enabled.

``server`` is one module-scoped server; ``start_server`` starts extra ones with their own
configuration (``start_server(pool_size=0, max_containers_per_user=2)``) or on an existing
data directory (restart tests). Every server is a real ``jupyter server`` process on loopback
with a random token, real kernels and the extension loaded from this checkout.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    """A live ``jupyter server`` subprocess."""

    url: str  # ends with "/"
    token: str
    data_dir: Path
    root_dir: Path
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def api_base(self) -> str:
        return f"{self.url}exec-sessions/v1"

    @property
    def mcp_url(self) -> str:
        return f"{self.url}exec-sessions/mcp"

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def http(self, **kw: Any) -> httpx.Client:
        """A sync httpx2 client on the containers API, authenticated."""
        return httpx.Client(base_url=self.api_base + "/", headers=self.headers, timeout=60, **kw)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def _launch(
    tmp: Path,
    *,
    lab: bool = False,
    **kw: Any,
) -> RunningServer:
    """Start a server; other server extensions (JupyterLab, LSP, ...) only with ``lab=True``."""
    lab_off = (
        [] if lab else ["jupyterlab", "jupyter_lsp", "notebook_shim", "jupyter_server_terminals"]
    )
    return _launch_with(tmp, lab_off=lab_off, **kw)


def _launch_with(
    tmp: Path,
    lab_off: list[str],
    *,
    data_dir: Path | None = None,
    token: str | None = None,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    unset_env: tuple[str, ...] = (),
    **config: Any,
) -> RunningServer:
    data_dir = data_dir or (tmp / "data")
    root_dir = tmp / "root"
    for d in (data_dir, root_dir, tmp / "runtime", tmp / "config"):
        d.mkdir(parents=True, exist_ok=True)
    port = free_port()
    token = token or secrets.token_hex(16)
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
        "--ServerApp.jpserver_extensions="
        + repr({"jupyter_exec_sessions": True, **{name: False for name in lab_off}}),
        f"--ExecSessionsApp.data_dir={data_dir}",
    ]
    config.setdefault("pool_size", 1)
    for key, value in config.items():
        args.append(f"--ExecSessionsApp.{key}={value}")
    args += extra_args or []
    full_env = {
        **os.environ,
        "JUPYTER_DATA_DIR": str(tmp / "jdata"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "JUPYTER_CONFIG_DIR": str(tmp / "config"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
        **(env or {}),
    }
    for name in unset_env:
        full_env.pop(name, None)
    log_path = tmp / f"server-{port}.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=tmp)
    server = RunningServer(
        url=f"http://127.0.0.1:{port}/",
        token=token,
        data_dir=data_dir,
        root_dir=root_dir,
        port=port,
        proc=proc,
        log_path=log_path,
        config=config,
    )
    deadline = time.monotonic() + 180  # a loaded 2-core machine can take a minute to import
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        try:
            r = httpx.get(
                f"{server.api_base}/containers?limit=1", headers=server.headers, timeout=2
            )
            if r.status_code in (200, 401):  # 401: a custom identity provider is up
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"server did not become ready:\n{server.log()}")
        time.sleep(0.1)
    return server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """One real server for a whole test module (pool_size=2, generous quotas)."""
    srv = _launch(
        tmp_path_factory.mktemp("srv"),
        pool_size=2,
        max_containers_per_user=500,
        max_containers=500,
    )
    yield srv
    srv.stop()


@pytest.fixture
def start_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., RunningServer]]:
    """Factory: ``start_server(data_dir=..., **ExecSessionsApp_traits)``; stopped at teardown."""
    started: list[RunningServer] = []

    def start(**kw: Any) -> RunningServer:
        srv = _launch(tmp_path_factory.mktemp("srv"), **kw)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()
