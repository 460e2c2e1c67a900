"""MCP for real clients: conversation containers, implicit containers, quota, cancellation.

Each test drives the official ``mcp`` client (or raw HTTP where the client hides what is
tested) against a real ``jupyter server`` subprocess with the extension, and checks the
result through the REST API, the events feed and jupyter_server's own kernels API.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import httpx2 as httpx
import pytest
from helpers import RunningServer, launch, read_events, tool_container_id, tool_text
from test_mcp_http import PY, api, mcp

from jupyter_exec_sessions.mcp_server import CODEX_TURN_META_KEY, META_SESSION_ID


def kernel_count(server: RunningServer) -> int:
    r = httpx.get(f"{server.url}api/kernels", headers=server.headers, timeout=10)
    assert r.status_code == 200, r.text
    return len(r.json())


def wait_for_kernels(server: RunningServer, expected: int, timeout: float = 60) -> None:
    """Bounded wait until jupyter_server runs exactly ``expected`` kernels."""
    deadline = time.monotonic() + timeout
    while (count := kernel_count(server)) != expected:
        assert time.monotonic() < deadline, f"{count} kernels, expected {expected}"
        time.sleep(0.2)


def events_of(
    server: RunningServer,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 30,
) -> list[dict[str, Any]]:
    return read_events(server.api_base, server.headers, until=until, timeout=timeout)


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server whose users may have three running containers."""
    srv = launch(tmp_path_factory.mktemp("small"), pool_size=1, max_containers_per_user=3)
    yield srv
    srv.stop()


# --------------------------------------------------------------------------- rule 3
async def test_a_conversation_id_finds_its_container_again_from_another_mcp_session(
    small: RunningServer,
) -> None:
    conversation = {META_SESSION_ID: "conv-resume-1"}
    async with mcp(small) as first:
        made = await first.call_tool(PY, {"code": "answer = 42"}, meta=conversation)
    codex_turn = json.dumps({"session_id": "conv-resume-1", "turn_id": "t2"})
    async with mcp(small) as second:
        again = await second.call_tool(
            PY, {"code": "answer"}, meta={CODEX_TURN_META_KEY: codex_turn}
        )
    async with mcp(small, {"X-Session-Id": "conv-resume-1"}) as third:
        header = await third.call_tool(PY, {"code": "answer + 1"})
        own = await third.call_tool(PY, {"code": "1"}, meta={META_SESSION_ID: "conv-other"})
    assert tool_container_id(made) == tool_container_id(again) == tool_container_id(header)
    assert "42" in tool_text(again) and "43" in tool_text(header)
    assert "State reset" not in tool_text(again) + tool_text(header)
    assert tool_container_id(own) != tool_container_id(made)


async def test_an_mcp_sessions_own_container_ends_with_the_session(small: RunningServer) -> None:
    async with mcp(small) as client:
        result = await client.call_tool(PY, {"code": "x = 1"})
    box = tool_container_id(result)
    events = events_of(
        small,
        lambda evs: any(e["type"] == "container.expired" and e["container_id"] == box for e in evs),
    )
    expired = [e for e in events if e["type"] == "container.expired" and e["container_id"] == box]
    assert expired[0]["data"]["reason"] == "session_closed"
    async with api(small) as rest:
        assert (await rest.retrieve_container(box)).status == "expired"


async def test_at_the_quota_the_least_recently_used_idle_implicit_container_is_evicted(
    small: RunningServer,
) -> None:
    async with api(small) as rest:
        explicit = await rest.create_container(name="never-evicted")
    async with mcp(small) as client:
        a = await client.call_tool(PY, {"code": "a = 'A'"}, meta={META_SESSION_ID: "evict-a"})
        b = await client.call_tool(PY, {"code": "b = 'B'"}, meta={META_SESSION_ID: "evict-b"})
        # the quota (3) is reached: conversation c evicts a, the least recently used
        c = await client.call_tool(PY, {"code": "'C'"}, meta={META_SESSION_ID: "evict-c"})
        back = await client.call_tool(PY, {"code": "a"}, meta={META_SESSION_ID: "evict-a"})
    failed = [r for r in (a, b, c, back) if r.is_error]
    assert not failed, [tool_text(r) for r in failed]
    assert tool_container_id(back) != tool_container_id(a)
    assert (
        "State reset" in tool_text(back)
        and "evicted" in tool_text(back)
        and "NameError" in tool_text(back)
    )

    def evicted_ids(evs: list[dict[str, Any]]) -> list[str]:
        return [
            e["container_id"]
            for e in evs
            if e["type"] == "container.expired" and e["data"]["reason"] == "evicted"
        ]

    evicted = evicted_ids(events_of(small, lambda evs: tool_container_id(a) in evicted_ids(evs)))
    assert tool_container_id(a) in evicted
    assert explicit.id not in evicted
    async with api(small) as rest:
        assert (await rest.retrieve_container(explicit.id)).status == "running"
        await rest.delete_container(explicit.id)


def test_an_idle_conversation_container_expires_and_coming_back_says_state_was_reset(
    start_server: object,
) -> None:
    srv = start_server(  # type: ignore[operator]
        pool_size=0, minute_seconds=0.5, implicit_expires_minutes=1, reaper_interval=0.1
    )

    async def run() -> tuple[str, str, str]:
        meta = {META_SESSION_ID: "idle-conv"}
        async with mcp(srv) as client:
            first = await client.call_tool(PY, {"code": "v = 1"}, meta=meta)
        read_events(
            srv.api_base,
            srv.headers,
            until=lambda evs: any(
                e["type"] == "container.expired" and e["container_id"] == tool_container_id(first)
                for e in evs
            ),
        )
        async with mcp(srv) as client:
            later = await client.call_tool(PY, {"code": "v"}, meta=meta)
        return tool_container_id(first), tool_container_id(later), tool_text(later)

    first, later, body = anyio.run(run)
    assert first != later
    assert "State reset" in body and "expired" in body and "NameError" in body


# --------------------------------------------------------------------------- quota at defaults
@pytest.mark.timeout(900)  # 32 sessions need ~30 cold kernel starts: minutes on a busy machine
def test_thirty_two_concurrent_one_shot_sessions_at_default_settings_get_no_tool_errors(
    start_server: object,
) -> None:
    # default settings, except that a pool grown by the burst shrinks back within seconds
    srv = start_server(pool_size=2, pool_idle_seconds=2)  # type: ignore[operator]
    errors: list[str] = []

    async def one_session(i: int) -> None:
        async with mcp(srv) as client:
            for step in range(5):
                r = await client.call_tool(PY, {"code": f"print({i} * 100 + {step})"})
                if r.is_error or str(i * 100 + step) not in tool_text(r):
                    errors.append(tool_text(r))

    async def run() -> None:
        with anyio.fail_after(800):
            async with anyio.create_task_group() as tg:
                for i in range(32):
                    tg.start_soon(one_session, i)

    anyio.run(run)
    assert errors == []
    # every session's container ended with its session, and the grown pool shrank back
    wait_for_kernels(srv, 2, timeout=180)


# --------------------------------------------------------------------------- cancellation
def _open_session(http: httpx.Client, server: RunningServer) -> dict[str, str]:
    headers = {**server.headers, "Accept": "application/json, text/event-stream"}
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "0"},
        },
    }
    opened = http.post(server.mcp_url, json=init, headers=headers)
    assert opened.status_code == 200, opened.text
    headers["Mcp-Session-Id"] = opened.headers["mcp-session-id"]
    headers["Mcp-Protocol-Version"] = "2025-11-25"
    http.post(
        server.mcp_url,
        json={"jsonrpc": "2.0", "method": "notifications/initialized"},
        headers=headers,
    )
    return headers


def test_a_dropped_mcp_request_cancels_its_execution_and_the_feed_says_cancelled(
    small: RunningServer,
) -> None:
    code = "import time\nfor i in range(600):\n    time.sleep(0.1)\n'finished'"
    call = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {
            "name": PY,
            "arguments": {"code": code},
            "_meta": {META_SESSION_ID: "dropped-conv"},
        },
    }
    with httpx.Client(timeout=httpx.Timeout(30, read=1.0)) as http:
        headers = _open_session(http, small)
        with pytest.raises(httpx.ReadTimeout):
            http.post(small.mcp_url, json=call, headers=headers)  # gives up after 1 s
    events = events_of(
        small,
        lambda evs: any(
            e["type"] == "execution.completed" and e["data"]["session_id"] == "dropped-conv"
            for e in evs
        ),
    )
    mine = [e for e in events if e["data"].get("session_id") == "dropped-conv"]
    started = [e for e in mine if e["type"] == "execution.started"]
    completed = [e for e in mine if e["type"] == "execution.completed"]
    assert len(started) == len(completed) == 1
    assert completed[0]["data"]["status"] == "cancelled"
    assert completed[0]["data"]["execution_id"] == started[0]["data"]["execution_id"]
    assert completed[0]["data"]["duration_ms"] < 60_000

    async def counted() -> int:
        async with api(small) as rest:
            return (
                await rest.retrieve_container(started[0]["container_id"])
            ).exec_sessions.executions

    assert anyio.run(counted) == 1
