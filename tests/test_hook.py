"""The session hook against a real Jupyter server with the extension (no fakes).

Backend, resolver rules, request contexts and the pooled MCP client, driven over the real
containers API and the real MCP endpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sse import read_events

from jupyter_exec_sessions.errors import ContainerExpiredError, ContainerNotFoundError
from jupyter_exec_sessions.hook import (
    META_CONTAINER_ID,
    ContainersAPIBackend,
    MCPClientPool,
    MCPConnectionError,
    MCPServerConfig,
    RequestToolContext,
    SessionResolver,
    SessionSpec,
)
from jupyter_exec_sessions.models import Execution

CI_AUTO = {"type": "code_interpreter", "container": {"type": "auto"}}


def ci_tool(container_id: str) -> dict[str, Any]:
    return {"type": "code_interpreter", "container": container_id}


def ci_call(container_id: str) -> dict[str, Any]:
    return {"type": "code_interpreter_call", "id": "ci_1", "container_id": container_id}


def make_container(server: Any, **body: Any) -> str:
    with server.http() as http:
        r = http.post("containers", json={"name": f"hook-{uuid.uuid4().hex[:6]}", **body})
        assert r.status_code in (200, 201), r.text
        return str(r.json()["id"])


def delete_container(server: Any, container_id: str) -> None:
    with server.http() as http:
        assert http.delete(f"containers/{container_id}").status_code == 200


def list_ids(server: Any) -> set[str]:
    with server.http() as http:
        return {c["id"] for c in http.get("containers", params={"limit": 100}).json()["data"]}


def execution(result: Any) -> Execution:
    assert not result.is_error, result.content
    return Execution.model_validate(result.structured_content)


def stdout(result: Any) -> str:
    return "".join(o.text for o in execution(result).outputs if o.type == "logs")


@pytest.fixture
async def pool() -> Any:
    p = MCPClientPool()
    yield p
    await asyncio.wait_for(p.aclose(), 30)


def mcp(server: Any) -> MCPServerConfig:
    return MCPServerConfig(url=server.mcp_url, token=server.token, call_timeout=60)


# --------------------------------------------------------------------------- backend
async def test_the_containers_api_backend_finds_validates_and_creates_on_a_real_server(server):
    backend = ContainersAPIBackend(server.api_base, server.token)
    try:
        made = await backend.create(SessionSpec(name="hook-backend"))
        assert made.id.startswith("cntr_") and made.ours and made.status == "running"
        found = await backend.find(made.id)
        assert found is not None and await backend.validate(found)
        assert await backend.find("cntr_" + "0" * 32) is None
        delete_container(server, made.id)
        assert await backend.find(made.id) is None
    finally:
        await backend.aclose()


async def test_an_explicit_id_is_honoured_and_shows_as_container_resolved_on_the_events_feed(
    server,
):
    cid = make_container(server)
    backend = ContainersAPIBackend(server.api_base, server.token)
    try:
        res = await SessionResolver(backend).resolve(ci_tool(cid), session_id="sess-explicit")
    finally:
        await backend.aclose()
    assert (res.id, res.origin, res.state_lost) == (cid, "explicit", False)

    def resolved(events: list[dict[str, Any]]) -> bool:
        return any(e["type"] == "container.resolved" and e["container_id"] == cid for e in events)

    events = read_events(server.api_base, server.headers, until=resolved)
    event = next(e for e in events if e["type"] == "container.resolved")
    fields = {**event, **event.get("data", {})}
    assert (fields["origin"], fields["previous_id"], fields["session_id"]) == (
        "explicit",
        cid,
        "sess-explicit",
    )


async def test_auto_reuses_the_history_container_and_its_state(server, pool):
    backend = ContainersAPIBackend(server.api_base, server.token)
    resolver = SessionResolver(backend)
    try:
        first = RequestToolContext(resolver, [], tools=[CI_AUTO], session_id="s-h", turn_id="1")
        res1 = await first.resolve("code_interpreter")
        assert res1.origin == "created"
        await pool.call_tool(
            mcp(server), "execute_python_code", {"code": "x = 41"}, meta=await first.meta(CI_AUTO)
        )
        second = RequestToolContext(resolver, [ci_call(res1.id)], tools=[CI_AUTO], turn_id="2")
        res2 = await second.resolve("code_interpreter")
        assert (res2.id, res2.origin, res2.state_lost) == (res1.id, "history", False)
        out = await pool.call_tool(
            mcp(server),
            "execute_python_code",
            {"code": "print(x + 1)"},
            meta=await second.meta(CI_AUTO),
        )
        assert stdout(out).strip() == "42"
    finally:
        await backend.aclose()


async def test_a_deleted_container_is_replaced_and_its_state_is_gone(server, pool):
    backend = ContainersAPIBackend(server.api_base, server.token)
    try:
        cid = make_container(server)
        meta = {META_CONTAINER_ID: cid}
        await pool.call_tool(mcp(server), "execute_python_code", {"code": "x = 1"}, meta=meta)
        delete_container(server, cid)
        ctx = RequestToolContext(SessionResolver(backend), [ci_call(cid)], tools=[CI_AUTO])
        res = await ctx.resolve("code_interpreter")
        assert (res.origin, res.previous_id, res.state_lost, res.reason) == (
            "replaced",
            cid,
            True,
            "not_found",
        )
        out = await pool.call_tool(
            mcp(server), "execute_python_code", {"code": "x"}, meta=await ctx.meta(CI_AUTO)
        )
        run = execution(out)
        assert run.status == "failed" and run.container_id == res.id
        assert any(o.type == "error" and o.name == "NameError" for o in run.outputs)
        with pytest.raises(ContainerNotFoundError):
            await SessionResolver(backend, "error").resolve(ci_tool(cid))
    finally:
        await backend.aclose()


async def test_an_expired_container_is_replaced_or_refused_as_on_expired_says(start_server):
    srv = start_server(minute_seconds=1, reaper_interval=0.2)
    cid = make_container(srv, expires_after={"anchor": "last_active_at", "minutes": 1})
    read_events(
        srv.api_base,
        srv.headers,
        until=lambda evs: any(
            e["type"] == "container.expired" and e["container_id"] == cid for e in evs
        ),
    )
    backend = ContainersAPIBackend(srv.api_base, srv.token)
    try:
        with pytest.raises(ContainerExpiredError):
            await SessionResolver(backend, "error").resolve(ci_tool(cid))
        res = await SessionResolver(backend, "recreate").resolve(ci_tool(cid))
        assert (res.origin, res.previous_id, res.state_lost, res.reason) == (
            "replaced",
            cid,
            True,
            "expired",
        )
        assert res.id != cid and res.container.status == "running"
    finally:
        await backend.aclose()


# --------------------------------------------------------------------------- concurrency
async def test_fifty_concurrent_tool_calls_in_one_request_resolve_once_on_a_real_server(
    server, pool
):
    backend = ContainersAPIBackend(server.api_base, server.token)
    before = list_ids(server)
    ctx = RequestToolContext(
        SessionResolver(backend), [], tools=[CI_AUTO], session_id="s-50", turn_id="t-50"
    )

    queue_room = asyncio.Semaphore(16)  # the server queues at most 32 runs per container

    async def call(i: int) -> Any:
        meta = await ctx.meta("code_interpreter")  # all 50 race here
        async with queue_room:
            return await pool.call_tool(
                mcp(server), "execute_python_code", {"code": f"print({i})"}, meta=meta
            )

    try:
        results = await asyncio.wait_for(asyncio.gather(*(call(i) for i in range(50))), 90)
    finally:
        await backend.aclose()
    created = list_ids(server) - before
    assert len(created) == 1
    assert {execution(r).container_id for r in results} == created
    assert [stdout(r).strip() for r in results] == [str(i) for i in range(50)]


def test_fifty_concurrent_requests_share_one_pooled_mcp_connection_without_mixing_results(server):
    containers = [make_container(server) for _ in range(5)]
    pool = MCPClientPool()
    config = mcp(server)
    backend = ContainersAPIBackend(server.api_base, server.token)
    resolver = SessionResolver(backend)
    results: dict[int, Execution] = {}

    async def request(i: int) -> None:
        ctx = RequestToolContext(
            resolver,
            [],
            tools=[ci_tool(containers[i % 5])],
            session_id=f"sess-{i}",
            turn_id=f"turn-{i}",
        )
        out = await pool.call_tool(
            config,
            "execute_python_code",
            {"code": f"print('tok-{i}')"},
            meta=await ctx.meta("code_interpreter"),
        )
        results[i] = execution(out)

    def worker(ids: range) -> None:  # each thread has its own event loop
        async def run() -> None:
            await asyncio.wait_for(asyncio.gather(*(request(i) for i in ids)), 90)

        asyncio.run(run())

    threads = [threading.Thread(target=worker, args=(range(k, 50, 2),)) for k in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    try:
        assert sorted(results) == list(range(50))
        for i, run in results.items():
            text = "".join(o.text for o in run.outputs if o.type == "logs")
            assert text.strip() == f"tok-{i}"
            assert run.container_id == containers[i % 5]
            assert run.metadata is not None
            assert (run.metadata.session_id, run.metadata.turn_id) == (f"sess-{i}", f"turn-{i}")
        assert pool.connections_opened == 1
        blocking = pool.call_tool_blocking(
            config,
            "execute_python_code",
            {"code": "print('sync')"},
            meta={META_CONTAINER_ID: containers[0]},
        )
        assert stdout(blocking).strip() == "sync" and pool.connections_opened == 1
    finally:
        pool.close()


# --------------------------------------------------------------------------- broken connections
class TcpProxy:
    """A loopback TCP forwarder whose connections can all be cut at once."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def sever(self) -> None:
        """Cut every open connection (both directions)."""
        with self._lock:
            sockets, self._sockets = self._sockets, set()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def close(self) -> None:
        self.listener.close()
        self.sever()


@pytest.fixture
def proxy_to() -> Iterator[Callable[[int], TcpProxy]]:
    made: list[TcpProxy] = []

    def make(port: int) -> TcpProxy:
        made.append(TcpProxy(port))
        return made[-1]

    yield make
    for p in made:
        p.close()


async def test_a_connection_killed_mid_call_fails_that_call_and_the_next_call_rebuilds_it(
    server, pool, proxy_to
):
    proxy = proxy_to(server.port)
    config = MCPServerConfig(
        url=f"http://127.0.0.1:{proxy.port}/exec-sessions/mcp", token=server.token, call_timeout=60
    )
    cid = make_container(server)
    meta = {META_CONTAINER_ID: cid}
    await pool.call_tool(config, "execute_python_code", {"code": "y = 7"}, meta=meta)
    assert pool.connections_opened == 1
    started = asyncio.Event()
    loop = asyncio.get_running_loop()
    slow = asyncio.ensure_future(
        pool.call_tool(
            config,
            "execute_python_code",
            {"code": "print('running', flush=True)\nimport time\ntime.sleep(30)"},
            meta=meta,
            on_progress=lambda *_: loop.call_soon(started.set),
        )
    )
    await asyncio.wait_for(started.wait(), 30)
    proxy.sever()
    with pytest.raises(MCPConnectionError):
        await asyncio.wait_for(slow, 30)
    with server.http() as http:  # the kernel outlives the MCP connection
        http.post(f"containers/{cid}/interrupt")
    out = await asyncio.wait_for(
        pool.call_tool(config, "execute_python_code", {"code": "print(y)"}, meta=meta), 60
    )
    assert stdout(out).strip() == "7"
    assert pool.connections_opened == 2


async def test_a_server_restart_is_absorbed_by_rebuilding_the_pooled_client(
    server, start_server, pool, proxy_to
):
    first = start_server(pool_size=0, token=server.token)
    proxy = proxy_to(first.port)
    config = MCPServerConfig(
        url=f"http://127.0.0.1:{proxy.port}/exec-sessions/mcp", token=first.token, call_timeout=60
    )
    before = {META_CONTAINER_ID: make_container(first)}
    await pool.call_tool(config, "execute_python_code", {"code": "z = 1"}, meta=before)
    first.stop()
    # Same address and token, but a server process that never saw this MCP session (as after
    # a restart): it answers "Session not found".
    proxy.upstream_port = server.port
    proxy.sever()
    after = {META_CONTAINER_ID: make_container(server)}
    out = await asyncio.wait_for(
        pool.call_tool(config, "execute_python_code", {"code": "print('back')"}, meta=after), 60
    )
    assert stdout(out).strip() == "back"
    assert pool.connections_opened == 2 and pool.live_connections() == 1


async def test_a_changed_configuration_gets_a_new_client_while_calls_on_the_old_one_finish(
    server, pool, tmp_path
):
    old = MCPServerConfig(url=server.mcp_url, token=server.token, name="jupyter")
    new = MCPServerConfig(
        url=server.mcp_url, token=server.token, name="jupyter", headers=(("X-Config", "2"),)
    )
    marker = tmp_path / "release"
    started = asyncio.Event()
    loop = asyncio.get_running_loop()
    waiting = asyncio.ensure_future(
        pool.call_tool(
            old,
            "execute_python_code",
            {
                "code": "import os, time\nprint('waiting', flush=True)\nt = time.time()\n"
                f"while not os.path.exists({str(marker)!r}) and time.time() - t < 30:\n"
                "    time.sleep(0.01)\nprint('released')"
            },
            meta={META_CONTAINER_ID: make_container(server)},
            on_progress=lambda *_: loop.call_soon(started.set),
        )
    )
    await asyncio.wait_for(started.wait(), 30)
    out = await pool.call_tool(
        new,
        "execute_python_code",
        {"code": "print('new')"},
        meta={META_CONTAINER_ID: make_container(server)},
    )
    assert stdout(out).strip() == "new"
    assert pool.connections_opened == 2 and pool.live_connections() == 2
    marker.touch()
    assert "released" in stdout(await asyncio.wait_for(waiting, 30))
    deadline = loop.time() + 10
    while pool.live_connections() != 1:  # the old client closes once its last call is done
        assert loop.time() < deadline, pool.live_connections()
        await asyncio.sleep(0.01)
