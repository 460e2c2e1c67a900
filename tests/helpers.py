"""What the tests (and the benchmarks) share: real servers, bounded waits, small API calls.

Tests get servers from the fixtures of ``conftest.py`` (``server``, ``start_server``,
``launch_server``); they import the types and helpers below from here, never from conftest.
``benchmarks/_server.py`` starts its servers with :func:`launch` too.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar, cast

import httpx2 as httpx
import uvicorn
from mcp_types import CallToolResult, RequestParamsMeta, TextContent

from jupyter_exec_sessions.client._transport import ServerSentEvent, SSEDecoder
from jupyter_exec_sessions.mcp_server import META_CONTAINER_ID, RESULT_META_CONTAINER_ID

__all__ = [
    "ARTIFACTS",
    "EnterpriseGateway",
    "launch_enterprise_gateway",
    "list_kernel_ids",
    "SANDBOX",
    "ROOT",
    "RunningServer",
    "ServerLauncher",
    "asse_events",
    "await_until",
    "container_meta",
    "create_container",
    "free_port",
    "launch",
    "mcp_meta",
    "read_events",
    "serve_asgi",
    "sse_events",
    "tool_container_id",
    "tool_text",
    "wait_until",
]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
#: Sandbox mode of the suite's servers (``EXEC_SESSIONS_TEST_SANDBOX=bwrap`` runs the container
#: tests with confined kernels); tests that need one mode pass ``sandbox=`` themselves.
SANDBOX = os.environ.get("EXEC_SESSIONS_TEST_SANDBOX", "none")
#: Server extensions of the environment that stay off unless a test asks for JupyterLab.
LAB_EXTENSIONS = ("jupyterlab", "jupyter_lsp", "notebook_shim", "jupyter_server_terminals")

T = TypeVar("T")


# --------------------------------------------------------------------------- bounded waits
def wait_until(
    predicate: Callable[[], T | None], timeout: float = 10.0, what: str = "condition"
) -> T:
    """Poll ``predicate`` until it returns something truthy, and return that.

    The one polling loop of the tests: it fails with ``what`` after ``timeout`` seconds. Use
    it for state only observable by asking again (a kernel list, a container's counters).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)  # the poll interval of a bounded wait


async def await_until(
    predicate: Callable[[], T | None], timeout: float = 10.0, what: str = "condition"
) -> T:
    """The asynchronous :func:`wait_until` (the event loop keeps running between polls)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)  # the poll interval of a bounded wait


# --------------------------------------------------------------------------- servers
def free_port() -> int:
    """A TCP port on loopback that was free a moment ago."""
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
        """The gateway's own authentication header."""
        return {"Authorization": f"token {self.token}"}

    def kernel_ids(self) -> set[str]:
        """Ids of the kernels running on the gateway (its own ``/api/kernels``)."""
        return list_kernel_ids(f"{self.url}/api/kernels", self.headers)

    def log(self) -> str:
        """The gateway's log so far."""
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 20 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def list_kernels(url: str, headers: dict[str, str], attempts: int = 10) -> list[dict[str, Any]]:
    """The kernel models of a ``/api/kernels`` listing.

    jupyter_server and Enterprise Gateway answer a listing that races a kernel's shutdown
    with a 500 now and then: such an answer is asked again, a bounded number of times.
    """
    for attempt in range(attempts):
        r = httpx.get(url, headers=headers, timeout=10)
        if r.status_code < 500 or attempt == attempts - 1:
            break
        time.sleep(0.2)  # the pause between two tries of a bounded retry
    r.raise_for_status()
    return list(r.json())


def list_kernel_ids(url: str, headers: dict[str, str], attempts: int = 10) -> set[str]:
    """The ids a ``/api/kernels`` listing names (see :func:`list_kernels`)."""
    return {k["id"] for k in list_kernels(url, headers, attempts)}


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
    with log_path.open("wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    eg = EnterpriseGateway(f"http://127.0.0.1:{port}", token, proc, log_path)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"enterprise gateway exited early:\n{eg.log()}")
        with contextlib.suppress(httpx.TransportError):
            return httpx.get(f"{eg.url}/api", headers=eg.headers, timeout=2).status_code == 200
        return False

    try:
        wait_until(ready, 120, "Enterprise Gateway to answer")  # CI machines can be loaded
    except BaseException:  # also a test timeout while waiting: never leave it running
        eg.stop()
        raise
    return eg


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
    """A live ``jupyter server`` subprocess with the extension."""

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
        """The containers API root (no trailing slash)."""
        return f"{self.url}exec-sessions/v1"

    @property
    def mcp_url(self) -> str:
        """The MCP endpoint."""
        return f"{self.url}exec-sessions/mcp"

    @property
    def ws_url(self) -> str:
        """The server's websocket base URL."""
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def headers(self) -> dict[str, str]:
        """The authentication header of the server's own token."""
        return {"Authorization": f"Bearer {self.token}"}

    def http(self, **kw: Any) -> httpx.Client:
        """A sync httpx2 client on the containers API, authenticated."""
        return httpx.Client(base_url=self.api_base + "/", headers=self.headers, timeout=60, **kw)

    def client(self, **kw: Any) -> httpx.Client:
        """A keep-alive httpx2 client on the server root, authenticated."""
        kw.setdefault("timeout", 120)
        return httpx.Client(base_url=self.url, headers=self.headers, **kw)

    def async_client(self, **kw: Any) -> httpx.AsyncClient:
        """An async httpx2 client on the server root with a large connection pool."""
        kw.setdefault("timeout", 120)
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        return httpx.AsyncClient(base_url=self.url, headers=self.headers, limits=limits, **kw)

    def log(self) -> str:
        """The server's whole log."""
        return self.log_path.read_text(errors="replace")

    def log_tail(self, n: int = 60) -> str:
        """The last ``n`` lines of the server's log."""
        return "\n".join(self.log().splitlines()[-n:])

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server (and its kernels), bounded; idempotent."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


#: Every server :func:`launch` started in this run (a failing test's report shows their logs).
LAUNCHED: list[RunningServer] = []


class ServerLauncher(Protocol):
    """The ``launch_server`` / ``start_server`` fixtures: ``launch(**options) -> server``."""

    def __call__(self, *, tmp: Path | None = None, **kw: Any) -> RunningServer:
        """Start a server in ``tmp`` (default: a fresh directory); keywords as :func:`launch`."""
        ...


def launch(
    tmp: Path,
    *,
    lab: bool = False,
    extensions: tuple[str, ...] = (),
    data_dir: Path | Literal["default"] | None = None,
    token: str | None = None,
    extra_args: list[str] | None = None,
    env: dict[str, str] | None = None,
    unset_env: tuple[str, ...] = (),
    ready_timeout: float = 120.0,
    gateway: EnterpriseGateway | None = None,
    **config: Any,
) -> RunningServer:
    """Start ``python -m jupyter_server`` with the extension in ``tmp`` and wait until it answers.

    Every other keyword is an ``ExecSessionsApp`` trait (``pool_size`` defaults to 1). The
    server gets private Jupyter directories, a random token (or ``token``), loopback only and
    ``tests/`` on its ``PYTHONPATH`` (for ``idp.MultiUserIdentityProvider``). JupyterLab and
    the other server extensions of the environment stay off unless ``lab=True``;
    ``extensions`` enables more server extension modules. With ``gateway`` its kernels run on
    that Enterprise Gateway, and container directories go under ``<tmp>/remote`` (their place
    on the kernels' side), away from the server's data dir.
    """
    if gateway is not None:
        extra_args = [*gateway_args(gateway), *(extra_args or [])]
        config.setdefault("remote_workdir_root", str(tmp / "remote"))
    # data_dir="default": no data_dir setting, the server picks its own under JUPYTER_DATA_DIR
    jdata = Path((env or {}).get("JUPYTER_DATA_DIR", tmp / "jdata"))
    explicit = data_dir != "default"
    data_dir = (data_dir or (tmp / "data")) if data_dir != "default" else jdata / "exec_sessions"
    root_dir = tmp / "root"
    for d in (*([data_dir] if explicit else []), root_dir, tmp / "runtime", tmp / "config"):
        d.mkdir(parents=True, exist_ok=True)
    port = free_port()
    token = token or secrets.token_hex(16)
    enabled = {
        "jupyter_exec_sessions": True,
        **({} if lab else dict.fromkeys(LAB_EXTENSIONS, False)),
        **dict.fromkeys(extensions, True),
    }
    config.setdefault("pool_size", 1)
    # remote kernels are never confined by the local sandbox (a server refuses sandbox=bwrap there)
    config.setdefault("sandbox", "none" if gateway is not None else SANDBOX)
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
        f"--ServerApp.jpserver_extensions={enabled!r}",
        *([f"--ExecSessionsApp.data_dir={data_dir}"] if explicit else []),
        *(f"--ExecSessionsApp.{key}={value}" for key, value in config.items()),
        *(extra_args or []),
    ]
    full_env = {
        **os.environ,
        "JUPYTER_DATA_DIR": str(jdata),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "JUPYTER_CONFIG_DIR": str(tmp / "config"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), os.environ.get("PYTHONPATH", "")]),
        **(env or {}),
    }
    for name in unset_env:
        full_env.pop(name, None)
    log_path = tmp / f"server-{port}.log"
    with log_path.open("wb") as log:
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
        gateway=gateway,
    )

    LAUNCHED.append(server)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early:\n{server.log()}")
        with contextlib.suppress(httpx.TransportError):
            r = httpx.get(
                f"{server.api_base}/containers?limit=1", headers=server.headers, timeout=2
            )
            return r.status_code in (200, 401)  # 401: a custom identity provider is up
        return False

    try:
        wait_until(ready, ready_timeout, "the server to answer")
    except AssertionError:
        server.stop()
        raise RuntimeError(f"server did not become ready:\n{server.log()}") from None
    return server


@contextlib.contextmanager
def serve_asgi(app: Any) -> Iterator[str]:
    """Run an ASGI ``app`` under uvicorn in a thread; yield its base URL (no trailing slash)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), 20, "uvicorn to start")
        assert thread.is_alive(), "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


# --------------------------------------------------------------------------- API calls
def create_container(server: RunningServer, name: str = "test", **body: Any) -> str:
    """Create a container over REST with the server's token; return its id."""
    r = httpx.post(
        f"{server.api_base}/containers",
        headers=server.headers,
        json={"name": name, **body},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


def tool_text(result: CallToolResult) -> str:
    """The text blocks of an MCP tool result, joined by newlines."""
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


def mcp_meta(values: dict[str, str]) -> RequestParamsMeta:
    """An MCP request ``_meta`` holding ``values`` (an open TypedDict: ours are extra items)."""
    return cast(RequestParamsMeta, dict(values))


def container_meta(container_id: str) -> RequestParamsMeta:
    """The MCP request ``_meta`` that names the container a tool call runs in."""
    return mcp_meta({META_CONTAINER_ID: container_id})


def tool_container_id(result: CallToolResult) -> str:
    """The container an MCP tool call ran in (the result's ``_meta``)."""
    assert result.meta is not None, tool_text(result)
    return str(result.meta[RESULT_META_CONTAINER_ID])


# --------------------------------------------------------------------------- server-sent events
def sse_events(lines: Iterator[str]) -> Iterator[ServerSentEvent]:
    """The events of a ``text/event-stream`` body, read by the package's own SSE decoder."""
    decoder = SSEDecoder()
    for line in lines:
        frame = decoder.feed(line)
        if isinstance(frame, ServerSentEvent):
            yield frame


async def asse_events(lines: AsyncIterator[str]) -> AsyncIterator[ServerSentEvent]:
    """The asynchronous :func:`sse_events`."""
    decoder = SSEDecoder()
    async for line in lines:
        frame = decoder.feed(line)
        if isinstance(frame, ServerSentEvent):
            yield frame


def read_events(
    api_base: str,
    headers: dict[str, str],
    *,
    until: Callable[[list[dict[str, Any]]], bool],
    last_event_id: int | None = None,
    timeout: float = 20.0,
) -> list[dict[str, Any]]:
    """Collect raw events from ``GET {api_base}/events`` until ``until(events)`` holds.

    Reconnects (resuming with ``Last-Event-ID``) when the feed is silent for a second; raises
    ``AssertionError`` with what was seen if the deadline passes first.
    """
    events: list[dict[str, Any]] = []
    hdrs = dict(headers)
    if last_event_id is not None:
        hdrs["Last-Event-ID"] = str(last_event_id)
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=httpx.Timeout(timeout, read=1.0)) as client:
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(httpx.ReadTimeout),
                client.stream("GET", f"{api_base}/events", headers=hdrs) as r,
            ):
                assert r.status_code == 200, r.read()
                assert r.headers["content-type"].startswith("text/event-stream")
                for sse in sse_events(r.iter_lines()):
                    events.append(json.loads(sse.data))
                    hdrs["Last-Event-ID"] = str(events[-1]["seq"])
                    if until(events):
                        return events
                    if time.monotonic() > deadline:
                        break
            if until(events):
                return events
    raise AssertionError(f"condition not met within {timeout}s; events seen: {events}")
