"""The MCP endpoint over real streamable HTTP inside a real Jupyter server.

Every test drives the official ``mcp`` client against ``{base_url}exec-sessions/mcp`` of a
``jupyter server`` subprocess; containers are checked through the REST API (our typed client).
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2 as httpx
import pytest
from helpers import (
    RunningServer,
    ServerLauncher,
    container_meta,
    mcp_meta,
    tool_container_id,
    tool_text,
)
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import CallToolResult, ImageContent

from jupyter_exec_sessions.client import AsyncClient
from jupyter_exec_sessions.mcp_server import (
    CODEX_TURN_META_KEY,
    META_CONTAINER_ID,
    META_INCLUDE_EXECUTION,
    META_SESSION_ID,
    META_TURN_ID,
    RESULT_META_EXECUTION,
    RESULT_META_STATUS,
)
from jupyter_exec_sessions.models import PythonExecutionRequest

PY = "execute_python_code"
SH = "execute_shell_commands"


@asynccontextmanager
async def connect(
    url: str, token: str | None, headers: dict[str, str] | None = None
) -> AsyncIterator[Client]:
    """An MCP client session over streamable HTTP with a bearer token and extra headers."""
    hdrs = dict(headers or {})
    if token:
        hdrs["Authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient(headers=hdrs, timeout=httpx.Timeout(30, read=90)) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, read_timeout_seconds=90) as client:
            yield client


def mcp(server: RunningServer, headers: dict[str, str] | None = None) -> Any:
    return connect(server.mcp_url, server.token, headers)


def api(server: RunningServer, token: str | None = None) -> AsyncClient:
    return AsyncClient(server.url, token or server.token)


def execution_of(result: CallToolResult) -> dict[str, Any]:
    """The execution object a call asked for with ``META_INCLUDE_EXECUTION``."""
    assert result.meta is not None, tool_text(result)
    return dict(result.meta[RESULT_META_EXECUTION])


def status_of(result: CallToolResult) -> str:
    assert result.meta is not None, tool_text(result)
    return str(result.meta[RESULT_META_STATUS])


def tiny_png() -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00\xff\x00\x00"))
        + chunk(b"IEND", b"")
    )


# --------------------------------------------------------------------------- tools
async def test_the_endpoint_lists_exactly_the_two_execution_tools_with_input_schemas(
    server: RunningServer,
) -> None:
    async with mcp(server) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
    assert set(tools) == {PY, SH}
    py, sh = tools[PY].input_schema, tools[SH].input_schema
    assert py["required"] == ["code"]
    assert set(py["properties"]) == {"code", "timeout_seconds"}
    assert py["properties"]["code"]["type"] == "string"
    assert sh["required"] == ["commands"]
    assert set(sh["properties"]) == {"commands", "timeout_ms", "max_output_length"}
    assert sh["properties"]["commands"]["items"] == {"type": "string"}
    for tool in tools.values():
        assert tool.description and "persist" in tool.description
        assert "working directory" in tool.description
        assert "truncated" in tool.description
        assert "reset" in tool.description


async def test_state_persists_within_an_mcp_session_and_a_second_session_does_not_see_it(
    server: RunningServer,
) -> None:
    async with mcp(server) as first, mcp(server) as second:
        r1 = await first.call_tool(PY, {"code": "secret = 'first-only'\nsecret.upper()"})
        r2 = await first.call_tool(PY, {"code": "secret"})
        other = await second.call_tool(PY, {"code": "secret"})
        again = await second.call_tool(PY, {"code": "1 + 1"})
    assert not r1.is_error and "FIRST-ONLY" in tool_text(r1)
    assert "'first-only'" in tool_text(r2)
    assert tool_container_id(r1) == tool_container_id(r2)
    assert "NameError" in tool_text(other) and not other.is_error
    assert tool_container_id(other) == tool_container_id(again) != tool_container_id(r1)


async def test_meta_container_id_routes_the_call_to_that_container(server: RunningServer) -> None:
    async with api(server) as rest:
        box = await rest.create_container(name="mcp-meta")
        await rest.execute(box.id, PythonExecutionRequest(code="where = 'rest-made'"))
    async with mcp(server) as client:
        routed = await client.call_tool(PY, {"code": "where"}, meta=container_meta(box.id))
        unrouted = await client.call_tool(PY, {"code": "where"})
    assert tool_container_id(routed) == box.id and "'rest-made'" in tool_text(routed)
    assert tool_container_id(unrouted) != box.id and "NameError" in tool_text(unrouted)


async def test_x_container_id_header_routes_calls_and_meta_wins_over_it(
    server: RunningServer,
) -> None:
    async with api(server) as rest:
        by_header = await rest.create_container(name="mcp-header")
        by_meta = await rest.create_container(name="mcp-meta-wins")
    async with mcp(server, {"X-Container-Id": by_header.id}) as client:
        first = await client.call_tool(PY, {"code": "import os\nmark = 'h'"})
        second = await client.call_tool(PY, {"code": "mark"})
        meta = await client.call_tool(PY, {"code": "mark"}, meta=container_meta(by_meta.id))
    assert tool_container_id(first) == tool_container_id(second) == by_header.id
    assert "'h'" in tool_text(second)
    assert tool_container_id(meta) == by_meta.id and "NameError" in tool_text(meta)


async def test_sixteen_parallel_calls_on_one_connection_each_run_in_their_own_container(
    server: RunningServer,
) -> None:
    async with api(server) as rest:
        a = await rest.create_container(name="par-a")
        b = await rest.create_container(name="par-b")
        await rest.execute(a.id, PythonExecutionRequest(code="who = 'A'"))
        await rest.execute(b.id, PythonExecutionRequest(code="who = 'B'"))
    results: dict[int, CallToolResult] = {}
    async with mcp(server) as client:

        async def call(i: int) -> None:
            cid = a.id if i % 2 == 0 else b.id
            code = f"import time\ntime.sleep(0.02)\nf'{{who}}-{i}'"
            results[i] = await client.call_tool(PY, {"code": code}, meta=container_meta(cid))

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for i in range(16):
                    tg.start_soon(call, i)
    assert len(results) == 16
    for i, result in results.items():
        who, cid = ("A", a.id) if i % 2 == 0 else ("B", b.id)
        assert not result.is_error, tool_text(result)
        assert tool_container_id(result) == cid
        assert f"'{who}-{i}'" in tool_text(result)


async def test_progress_notifications_carry_output_while_the_code_runs(
    server: RunningServer, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")
        if "first" in (message or ""):
            go.write_text("go")  # the code only prints 'second' once we saw 'first'

    code = (
        "import os, time\n"
        "print('first', flush=True)\n"
        "deadline = time.time() + 30\n"
        f"while not os.path.exists({str(go)!r}) and time.time() < deadline:\n"
        "    time.sleep(0.01)\n"
        f"print('second' if os.path.exists({str(go)!r}) else 'no-progress-seen')"
    )
    async with mcp(server) as client:
        result = await client.call_tool(PY, {"code": code}, progress_callback=on_progress)
    joined = "".join(messages)
    assert "first" in joined and "second" in joined, messages
    assert joined.index("first") < joined.index("second")
    assert "second" in tool_text(result)


async def test_turn_metadata_from_meta_codex_and_headers_is_counted_on_the_container(
    server: RunningServer,
) -> None:
    async with api(server) as rest:
        box = await rest.create_container(name="mcp-turns")
    target = {META_CONTAINER_ID: box.id, META_INCLUDE_EXECUTION: True}
    async with mcp(server) as client:
        r1 = await client.call_tool(
            PY, {"code": "1"}, meta={**target, META_SESSION_ID: "conv-1", META_TURN_ID: "turn-1"}
        )
        await client.call_tool(
            PY, {"code": "2"}, meta={**target, META_SESSION_ID: "conv-1", META_TURN_ID: "turn-2"}
        )
        codex = json.dumps({"session_id": "conv-2", "turn_id": "turn-3"})
        r3 = await client.call_tool(PY, {"code": "3"}, meta={**target, CODEX_TURN_META_KEY: codex})
        await client.call_tool(
            SH,
            {"commands": ["true"]},
            meta={**target, CODEX_TURN_META_KEY: {"session_id": "conv-2", "turn_id": "turn-3"}},
        )
    headers = {"X-Container-Id": box.id, "X-Session-Id": "conv-3", "X-Turn-Id": "turn-4"}
    async with mcp(server, headers) as client:
        r5 = await client.call_tool(PY, {"code": "5"}, meta={META_INCLUDE_EXECUTION: True})
    assert execution_of(r1)["metadata"] == {"session_id": "conv-1", "turn_id": "turn-1"}
    assert execution_of(r3)["metadata"]["turn_id"] == "turn-3"
    assert execution_of(r5)["metadata"]["session_id"] == "conv-3"
    async with api(server) as rest:
        info = (await rest.retrieve_container(box.id)).exec_sessions
    assert info.executions == 5
    assert info.sessions == 3
    assert info.turns == 4


async def test_parallel_first_calls_of_a_new_session_share_one_container(
    server: RunningServer,
) -> None:
    results: list[CallToolResult] = []
    async with mcp(server) as client:

        async def call(i: int) -> None:
            results.append(await client.call_tool(PY, {"code": f"{i}"}))

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for i in range(8):
                    tg.start_soon(call, i)
    assert len({tool_container_id(r) for r in results}) == 1


async def test_a_stateless_2026_client_runs_in_named_containers_and_is_told_why_not_otherwise(
    server: RunningServer,
) -> None:
    async with api(server) as rest:
        box = await rest.create_container(name="stateless")
    async with httpx.AsyncClient(headers=server.headers) as http:
        transport = streamable_http_client(server.mcp_url, http_client=http)
        async with Client(transport, mode="2026-07-28", read_timeout_seconds=90) as client:
            named = await client.call_tool(PY, {"code": "6 * 7"}, meta=container_meta(box.id))
            unnamed = await client.call_tool(PY, {"code": "6 * 7"})
            conversation = mcp_meta({META_SESSION_ID: "stateless-conversation"})
            first = await client.call_tool(PY, {"code": "n = 6 * 7"}, meta=conversation)
            second = await client.call_tool(PY, {"code": "n"}, meta=conversation)
    assert tool_container_id(named) == box.id and "42" in tool_text(named)
    assert unnamed.is_error and "no MCP session" in tool_text(unnamed)
    assert tool_container_id(first) == tool_container_id(second) and "42" in tool_text(second)


# --------------------------------------------------------------------------- results
async def test_user_code_errors_are_normal_results_with_a_readable_traceback(
    server: RunningServer,
) -> None:
    code = "def divide(a, b):\n    return a / b\n\ndivide(1, 0)"
    async with mcp(server) as client:
        result = await client.call_tool(PY, {"code": code})
    body = tool_text(result)
    assert result.is_error is False
    assert "ZeroDivisionError" in body and "divide" in body and "return a / b" in body
    assert "\x1b[" not in body
    assert status_of(result) == "failed"


async def test_images_are_returned_as_image_content(server: RunningServer) -> None:
    png = tiny_png()
    code = f"from IPython.display import Image, display\ndisplay(Image(data={png!r}))\n'shown'"
    async with mcp(server) as client:
        result = await client.call_tool(PY, {"code": code})
    images = [c for c in result.content if isinstance(c, ImageContent)]
    assert len(images) == 1, result.content
    assert images[0].mime_type == "image/png"
    assert base64.b64decode(images[0].data) == png
    assert "'shown'" in tool_text(result)


async def test_shell_commands_report_each_exit_code_and_keep_the_directory(
    server: RunningServer,
) -> None:
    async with mcp(server) as client:
        first = await client.call_tool(
            SH, {"commands": ["mkdir -p work/inner", "cd work/inner", "echo hi > f.txt", "false"]}
        )
        second = await client.call_tool(SH, {"commands": ["pwd", "cat f.txt"]})
        python = await client.call_tool(PY, {"code": "import os\nsorted(os.listdir('.'))"})
    assert not first.is_error
    assert "[exit code 1]" in tool_text(first) and "$ false" in tool_text(first)
    assert "work/inner" in tool_text(second) and "hi" in tool_text(second)
    assert tool_container_id(first) == tool_container_id(second) == tool_container_id(python)
    assert "'work'" in tool_text(python)


async def test_long_output_is_truncated_with_a_note_and_timeouts_are_results(
    server: RunningServer,
) -> None:
    async with mcp(server) as client:
        long = await client.call_tool(
            SH,
            {"commands": ["seq 1 20000"], "max_output_length": 2000},
            meta={META_INCLUDE_EXECUTION: True},
        )
        slow = await client.call_tool(
            PY, {"code": "import time\ntime.sleep(30)", "timeout_seconds": 0.5}
        )
        alive = await client.call_tool(PY, {"code": "'still usable'"})
    assert not long.is_error and execution_of(long)["truncated"] is True
    assert "output truncated" in tool_text(long)
    assert "20000" in tool_text(long) and len(tool_text(long)) < 6000
    full = execution_of(long)["full_output_file"]
    assert full and full in tool_text(long)
    assert slow.is_error is False
    assert status_of(slow) == "timed_out"
    assert "timed out" in tool_text(slow)
    assert "'still usable'" in tool_text(alive)


async def test_a_deleted_session_container_is_replaced_and_the_result_says_state_was_reset(
    server: RunningServer,
) -> None:
    async with mcp(server) as client:
        before = await client.call_tool(PY, {"code": "kept = 1"})
        async with api(server) as rest:
            await rest.delete_container(tool_container_id(before))
        after = await client.call_tool(PY, {"code": "kept"})
        later = await client.call_tool(PY, {"code": "'still here'"})
    assert tool_container_id(after) != tool_container_id(before)
    assert "State reset" in tool_text(after) and "NameError" in tool_text(after)
    assert tool_container_id(later) == tool_container_id(after) and "State reset" not in tool_text(
        later
    )


def test_lone_answers_come_as_json_and_progress_calls_stream_as_sse(
    server: RunningServer,
) -> None:
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
    with httpx.Client(headers=headers, timeout=60) as http:
        opened = http.post(server.mcp_url, json=init)
        assert opened.status_code == 200
        headers["Mcp-Session-Id"] = opened.headers["mcp-session-id"]
        headers["Mcp-Protocol-Version"] = "2025-11-25"
        http.post(
            server.mcp_url,
            json={"jsonrpc": "2.0", "method": "notifications/initialized"},
            headers=headers,
        )
        call = {"name": PY, "arguments": {"code": "print('out')\n40 + 2"}}
        plain = http.post(
            server.mcp_url,
            json={"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call},
            headers=headers,
        )
        with_progress = {**call, "_meta": {"progressToken": "p1"}}
        streamed = http.post(
            server.mcp_url,
            json={"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": with_progress},
            headers=headers,
        )
    assert plain.headers["content-type"].startswith("application/json")
    answer = plain.json()["result"]
    assert "structuredContent" not in answer
    assert answer["content"] == [{"type": "text", "text": "out\nOut: 42"}]
    assert answer["_meta"][RESULT_META_STATUS] == "completed"
    assert streamed.headers["content-type"].startswith("text/event-stream")
    events = [
        json.loads(line[5:]) for line in streamed.text.splitlines() if line.startswith("data:")
    ]
    assert events[0]["method"] == "notifications/progress"
    assert events[0]["params"]["progressToken"] == "p1"
    assert "out" in events[0]["params"]["message"]
    assert events[-1]["id"] == 3 and "result" in events[-1]


# --------------------------------------------------------------------------- refusals
async def test_an_unknown_container_is_a_tool_error_naming_it(server: RunningServer) -> None:
    missing = "cntr_" + "0" * 32
    async with mcp(server) as client:
        by_meta = await client.call_tool(PY, {"code": "1"}, meta=container_meta(missing))
    async with mcp(server, {"X-Container-Id": missing}) as client:
        by_header = await client.call_tool(SH, {"commands": ["true"]})
    for result in (by_meta, by_header):
        assert result.is_error is True
        assert missing in tool_text(result) and "not found" in tool_text(result)


@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_requests_without_the_right_token_are_refused(
    server: RunningServer, token: str | None
) -> None:
    headers = {"Accept": "application/json, text/event-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"},
        },
    }
    post = httpx.post(server.mcp_url, json=init, headers=headers, timeout=10)
    get = httpx.get(server.mcp_url, headers=headers, timeout=10)
    delete = httpx.delete(server.mcp_url, headers=headers, timeout=10)
    assert {post.status_code, get.status_code, delete.status_code} == {401}
    assert "result" not in post.json() and post.json()["error"]["message"].startswith(
        "Unauthorized"
    )


async def test_an_mcp_client_with_a_wrong_token_cannot_connect(server: RunningServer) -> None:
    with anyio.fail_after(30), pytest.raises(Exception):  # noqa: B017 - any refusal will do
        async with connect(server.mcp_url, "wrong-token") as client:
            await client.list_tools()


# --------------------------------------------------------------------------- several users
@pytest.fixture(scope="module")
def users_server(launch_server: ServerLauncher) -> Iterator[RunningServer]:
    """A server with two users (alice, bob) whose containers expire after 0.5 s per 'minute'."""
    srv = launch_server(
        token="alice-secret",
        extra_args=["--ServerApp.identity_provider_class=idp.MultiUserIdentityProvider"],
        pool_size=0,
        minute_seconds=0.5,
        reaper_interval=0.1,
    )
    yield srv
    srv.stop()


async def test_another_users_container_and_mcp_session_are_out_of_reach(
    users_server: RunningServer,
) -> None:
    async with api(users_server, "alice-secret") as alice_api:
        mine = await alice_api.create_container(name="alice-box", expires_after=60)
    async with (
        connect(users_server.mcp_url, "alice-secret") as alice,
        connect(users_server.mcp_url, "bob-secret") as bob,
    ):
        ok = await alice.call_tool(PY, {"code": "1"}, meta=container_meta(mine.id))
        foreign = await bob.call_tool(PY, {"code": "1"}, meta=container_meta(mine.id))
        alice_session = await alice.call_tool(PY, {"code": "2"})
        bob_session = await bob.call_tool(PY, {"code": "2"})
    assert not ok.is_error
    assert foreign.is_error and mine.id in tool_text(foreign) and "not found" in tool_text(foreign)
    assert tool_container_id(alice_session) != tool_container_id(bob_session)

    # an MCP session belongs to the user who opened it
    accept = {"Accept": "application/json, text/event-stream"}
    init = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "0"},
        },
    }
    opened = httpx.post(
        users_server.mcp_url,
        json=init,
        headers={**accept, "Authorization": "Bearer alice-secret"},
        timeout=30,
    )
    session_id = opened.headers["mcp-session-id"]
    hijack = httpx.post(
        users_server.mcp_url,
        json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        headers={
            **accept,
            "Authorization": "Bearer bob-secret",
            "Mcp-Session-Id": session_id,
            "Mcp-Protocol-Version": "2025-11-25",
        },
        timeout=30,
    )
    assert hijack.status_code == 404


async def test_an_expired_explicit_container_is_a_tool_error(users_server: RunningServer) -> None:
    async with api(users_server, "alice-secret") as rest:
        box = await rest.create_container(name="short", expires_after=1)
        with anyio.fail_after(30):
            async for event in rest.events():
                if event.type == "container.expired" and event.container_id == box.id:
                    break
    async with connect(users_server.mcp_url, "alice-secret") as client:
        result = await client.call_tool(PY, {"code": "1"}, meta=container_meta(box.id))
    assert result.is_error is True
    assert box.id in tool_text(result) and "expired" in tool_text(result)
