"""``jupyter-exec-sessions mcp`` over real stdio, executing on a real server via the HTTP client.

Each test spawns the console script with the official ``mcp`` client (``StdioServerParameters``)
and checks the same tool behaviour as the streamable-HTTP endpoint.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import anyio
import pytest
from helpers import RunningServer, container_meta, mcp_meta, tool_container_id, tool_text
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from jupyter_exec_sessions.client import AsyncClient
from jupyter_exec_sessions.mcp_server import (
    META_CONTAINER_ID,
    META_SESSION_ID,
    META_TURN_ID,
)
from jupyter_exec_sessions.models import PythonExecutionRequest

PY = "execute_python_code"
SH = "execute_shell_commands"


def script() -> str:
    found = shutil.which("jupyter-exec-sessions", path=str(Path(sys.executable).parent))
    assert found, "the jupyter-exec-sessions console script is not installed"
    return found


@asynccontextmanager
async def stdio(
    args: list[str], env: dict[str, str] | None = None, mode: str = "auto"
) -> AsyncIterator[Client]:
    params = StdioServerParameters(
        command=script(), args=["mcp", *args], env={"PATH": os.environ["PATH"], **(env or {})}
    )
    with anyio.fail_after(60):
        async with Client(params, read_timeout_seconds=60, mode=mode) as client:
            yield client


def connect(server: RunningServer, mode: str = "auto") -> AbstractAsyncContextManager[Client]:
    return stdio(["--url", server.url, "--token", server.token], mode=mode)


async def test_stdio_server_lists_the_two_tools_and_keeps_state_for_its_session(
    server: RunningServer,
) -> None:
    async with connect(server) as client:
        names = sorted(t.name for t in (await client.list_tools()).tools)
        first = await client.call_tool(PY, {"code": "total = 40"})
        second = await client.call_tool(PY, {"code": "total + 2"})
        shell = await client.call_tool(SH, {"commands": ["echo from-shell"]})
    assert names == [PY, SH]
    assert "42" in tool_text(second) and not second.is_error
    assert tool_container_id(first) == tool_container_id(second) == tool_container_id(shell)
    assert "from-shell" in tool_text(shell) and "[exit code 0]" in tool_text(shell)


async def test_two_stdio_processes_are_two_sessions_with_separate_state(
    server: RunningServer,
) -> None:
    async with connect(server) as one, connect(server, mode="legacy") as two:
        await one.call_tool(PY, {"code": "only_one = True"})
        seen = await two.call_tool(PY, {"code": "only_one"})
        assert "NameError" in tool_text(seen)


async def test_stdio_routes_by_meta_records_turns_and_reports_progress(
    server: RunningServer,
) -> None:
    async with AsyncClient(server.url, server.token) as rest:
        box = await rest.create_container(name="stdio-meta")
        await rest.execute(box.id, PythonExecutionRequest(code="mark = 'made-by-rest'"))
    messages: list[str] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message or "")

    meta = mcp_meta({META_CONTAINER_ID: box.id, META_SESSION_ID: "conv-9", META_TURN_ID: "turn-9"})
    async with connect(server, mode="legacy") as client:
        result = await client.call_tool(
            PY,
            {"code": "print('streamed', flush=True)\nmark"},
            meta=meta,
            progress_callback=on_progress,
        )
        missing = await client.call_tool(PY, {"code": "1"}, meta=container_meta("cntr_" + "f" * 32))
    assert tool_container_id(result) == box.id and "'made-by-rest'" in tool_text(result)
    assert any("streamed" in m for m in messages), messages
    assert missing.is_error and "not found" in tool_text(missing)
    async with AsyncClient(server.url, server.token) as rest:
        info = (await rest.retrieve_container(box.id)).exec_sessions
    assert (info.sessions, info.turns) == (1, 1)


async def test_a_second_stdio_process_of_a_conversation_finds_its_state_again(
    server: RunningServer,
) -> None:
    # `codex exec resume` starts a new stdio server for the same conversation
    meta = mcp_meta({META_SESSION_ID: "stdio-conversation-7"})
    async with connect(server) as first:
        made = await first.call_tool(PY, {"code": "remembered = 'across processes'"}, meta=meta)
    async with connect(server, mode="legacy") as second:
        again = await second.call_tool(PY, {"code": "remembered"}, meta=meta)
        own = await second.call_tool(PY, {"code": "'remembered' in globals()"})
    assert not again.is_error, tool_text(again)
    assert tool_container_id(again) == tool_container_id(made)
    assert "'across processes'" in tool_text(again)
    assert tool_container_id(own) != tool_container_id(made) and "False" in tool_text(own)


async def test_a_stdio_servers_own_container_ends_with_its_process(server: RunningServer) -> None:
    meta = mcp_meta({META_SESSION_ID: "stdio-conversation-8"})
    async with connect(server) as client:
        own = tool_container_id(await client.call_tool(PY, {"code": "1"}))
        kept = tool_container_id(await client.call_tool(PY, {"code": "2"}, meta=meta))
    async with AsyncClient(server.url, server.token) as rest:
        assert (await rest.retrieve_container(own)).status == "expired"
        assert (await rest.retrieve_container(kept)).status == "running"


async def test_stdio_takes_url_and_token_from_the_environment(server: RunningServer) -> None:
    env = {"JUPYTER_EXEC_SESSIONS_URL": server.url, "JUPYTER_EXEC_SESSIONS_TOKEN": server.token}
    async with stdio([], env=env) as client:
        result = await client.call_tool(PY, {"code": "6 * 7"})
    assert "42" in tool_text(result)


async def test_stdio_with_a_wrong_token_answers_a_tool_error_not_a_crash(
    server: RunningServer,
) -> None:
    async with stdio(["--url", server.url, "--token", "wrong"]) as client:
        result = await client.call_tool(PY, {"code": "1"})
    assert result.is_error is True
    assert "credentials" in tool_text(result)


def test_mcp_without_a_url_exits_with_a_usage_error() -> None:
    import subprocess

    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER_EXEC_SESSIONS_")}
    proc = subprocess.run(
        [script(), "mcp"], env=env, capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 2
    assert "--url" in proc.stderr


@pytest.mark.parametrize("argv", [["--help"], ["mcp", "--help"]])
def test_the_command_line_documents_its_subcommands(argv: list[str]) -> None:
    import subprocess

    proc = subprocess.run(
        [script(), *argv], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0
    assert "mcp" in proc.stdout
