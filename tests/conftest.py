"""Shared fixtures: real Jupyter servers (subprocesses) with the extension enabled.

``server`` is one module-scoped server; ``start_server`` starts extra ones with their own
configuration (``start_server(pool_size=0, max_containers_per_user=2)``) or on an existing
data directory (restart tests). Every server is a real ``jupyter server`` process on loopback
with a random token, real kernels and the extension loaded from this checkout.

Remote kernels: a test marked ``@pytest.mark.kernels("local", "gateway")`` runs once with local
kernels and once against a real Jupyter Enterprise Gateway (``enterprise_gateway``: its own
virtual environment from ``scripts/install-eg.sh``, local process proxy, loopback, random
port); ``server`` and ``start_server`` then start servers whose kernels live on that gateway
(``--GatewayClient.url``). Unmarked tests run with local kernels only.
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
class EnterpriseGateway:
    """A live Jupyter Enterprise Gateway subprocess (local process proxy, loopback)."""

    url: str  # no trailing "/"
    token: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}

    def kernel_ids(self) -> set[str]:
        """Ids of the kernels running on the gateway (its own ``/api/kernels``)."""
        r = httpx.get(f"{self.url}/api/kernels", headers=self.headers, timeout=10)
        r.raise_for_status()
        return {k["id"] for k in r.json()}

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


def eg_python() -> Path:
    """The Enterprise Gateway venv's python, installed by ``scripts/install-eg.sh`` if missing."""
    venv = Path(os.environ.get("EG_VENV", ROOT / ".venv-eg"))
    if not (venv / "bin" / "jupyter-enterprisegateway").exists():
        subprocess.run(["bash", str(ROOT / "scripts" / "install-eg.sh")], check=True)
    return venv / "bin" / "python"


def launch_enterprise_gateway(tmp: Path) -> EnterpriseGateway:
    """Start Enterprise Gateway on a random loopback port; ready when ``/api`` answers."""
    python = eg_python()
    port = free_port()
    token = secrets.token_hex(16)
    for d in ("runtime", "data", "config"):
        (tmp / d).mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        # its kernelspec says "python": the gateway venv's, which has ipykernel
        "PATH": f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "JUPYTER_DATA_DIR": str(tmp / "data"),
        "JUPYTER_CONFIG_DIR": str(tmp / "config"),
        "JUPYTER_PLATFORM_DIRS": "1",
        # it refuses to start kernels for root unless the deny list is set explicitly
        "EG_UNAUTHORIZED_USERS": "nobody-unauthorized",
    }
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    args = [
        str(python.parent / "jupyter-enterprisegateway"),
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--EnterpriseGatewayApp.auth_token={token}",
        "--EnterpriseGatewayApp.list_kernels=True",
        # how soon the gateway notices a dead kernel (and restarts it): default 3 s
        "--KernelRestarter.time_to_dead=0.5",
    ]
    log_path = tmp / f"eg-{port}.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    eg = EnterpriseGateway(f"http://127.0.0.1:{port}", token, proc, log_path)
    deadline = time.monotonic() + 120  # generous: CI machines can be very loaded
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"enterprise gateway exited early:\n{eg.log()}")
            try:
                if httpx.get(f"{eg.url}/api", headers=eg.headers, timeout=2).status_code == 200:
                    return eg
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"enterprise gateway did not become ready:\n{eg.log()}")
            time.sleep(0.1)
    except BaseException:  # also a test timeout while waiting: never leave it running
        eg.stop()
        raise


def gateway_args(eg: EnterpriseGateway) -> list[str]:
    """Server options that put its kernels on ``eg``."""
    return [
        f"--GatewayClient.url={eg.url}",
        f"--GatewayClient.auth_token={eg.token}",
        # a kernel start on a loaded CI machine can take longer than the default 42 s
        "--GatewayClient.request_timeout=120",
    ]


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
    #: the Enterprise Gateway its kernels run on (None: local kernels)
    gateway: EnterpriseGateway | None = None

    @property
    def containers_root(self) -> Path:
        """Where container directories are, as the kernels see them (same machine here)."""
        if self.gateway is not None:
            server_id = (self.data_dir / "server_id").read_text().strip()
            return Path(self.config["remote_workdir_root"]) / server_id
        return self.data_dir / "containers"

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
    gateway: EnterpriseGateway | None = None,
    **kw: Any,
) -> RunningServer:
    """Start a server; other server extensions (JupyterLab, LSP, ...) only with ``lab=True``.

    With ``gateway`` its kernels run on that Enterprise Gateway, and container directories go
    under ``<tmp>/remote`` (their place on the kernels' side), away from the server's data dir.
    """
    lab_off = (
        [] if lab else ["jupyterlab", "jupyter_lsp", "notebook_shim", "jupyter_server_terminals"]
    )
    if gateway is not None:
        kw["extra_args"] = [*gateway_args(gateway), *kw.get("extra_args", [])]
        kw.setdefault("remote_workdir_root", str(tmp / "remote"))
    srv = _launch_with(tmp, lab_off=lab_off, **kw)
    srv.gateway = gateway
    return srv


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
    deadline = time.monotonic() + 120  # generous: CI machines can be very loaded
    try:
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
                raise RuntimeError(f"server did not become ready:\n{server.log()}")
            time.sleep(0.1)
    except BaseException:  # also a test timeout while waiting: never leave the server running
        server.stop()
        raise
    return server


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "kernels(*where): run the test once per kernel location: 'local', 'gateway' (a real"
        " Jupyter Enterprise Gateway on loopback)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``kernels`` from the ``kernels`` mark (default: local kernels only)."""
    if "kernels" not in metafunc.fixturenames:
        return
    mark = metafunc.definition.get_closest_marker("kernels")
    where = list(mark.args) if mark is not None else ["local"]
    metafunc.parametrize("kernels", where, indirect=True, scope="module")


@pytest.fixture(scope="session")
def enterprise_gateway(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[EnterpriseGateway]:
    """One real Enterprise Gateway for the whole run (started on first use)."""
    eg = launch_enterprise_gateway(tmp_path_factory.mktemp("eg"))
    yield eg
    eg.stop()


@pytest.fixture(scope="module")
def kernels(request: pytest.FixtureRequest) -> EnterpriseGateway | None:
    """Where the servers of this test put their kernels: None (local) or the gateway."""
    where = getattr(request, "param", "local")
    if where == "gateway":
        eg: EnterpriseGateway = request.getfixturevalue("enterprise_gateway")
        return eg
    assert where == "local", where
    return None


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, kernels: EnterpriseGateway | None
) -> Iterator[RunningServer]:
    """One real server for a whole test module (pool_size=2, generous quotas)."""
    srv = _launch(
        tmp_path_factory.mktemp("srv"),
        pool_size=2,
        max_containers_per_user=500,
        max_containers=500,
        gateway=kernels,
    )
    yield srv
    srv.stop()


@pytest.fixture
def start_server(
    tmp_path_factory: pytest.TempPathFactory, kernels: EnterpriseGateway | None
) -> Iterator[Callable[..., RunningServer]]:
    """Factory: ``start_server(data_dir=..., **ExecSessionsApp_traits)``; stopped at teardown.

    Its servers use the test's kernel location (``kernels``) unless ``gateway=`` is given.
    """
    started: list[RunningServer] = []

    def start(**kw: Any) -> RunningServer:
        kw.setdefault("gateway", kernels)
        srv = _launch(tmp_path_factory.mktemp("srv"), **kw)
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()
