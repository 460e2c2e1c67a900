"""The MCP tools in-process (``mcp.Client(server)``), backed by a real server via the HTTP client.

The same ``create_mcp_server`` the stdio entry point uses, without a subprocess: both protocol
eras of the in-process transport, the default session, and a refused discovery probe.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import RunningServer, tool_text
from mcp import Client

from jupyter_exec_sessions.client import AsyncClient
from jupyter_exec_sessions.mcp_server import RESULT_META_CONTAINER_ID, create_mcp_server


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_in_process_tools_keep_state_in_the_default_session(
    server: RunningServer, mode: str
) -> None:
    async with AsyncClient(server.url, server.token) as backend:
        mcp_server = create_mcp_server(lambda _owner: backend, default_session=f"mem-{mode}")
        async with Client(mcp_server, mode=mode) as client:
            await client.call_tool("execute_python_code", {"code": "import math\nr = 2"})
            area = await client.call_tool(
                "execute_python_code", {"code": "round(math.pi * r**2, 2)"}
            )
            shell = await client.call_tool(
                "execute_shell_commands", {"commands": ["echo $((6*7))"]}
            )
    assert "12.57" in tool_text(area)
    assert "42" in tool_text(shell)
    assert area.meta and shell.meta
    key = RESULT_META_CONTAINER_ID
    assert area.meta[key] == shell.meta[key] and str(area.meta[key]).startswith("cntr_")
    assert area.structured_content is None and shell.structured_content is None


async def test_a_server_that_requires_sessions_makes_auto_clients_use_the_handshake(
    server: RunningServer,
) -> None:
    async with AsyncClient(server.url, server.token) as backend:
        mcp_server = create_mcp_server(lambda _owner: backend, sessions_required=True)
        async with Client(mcp_server, mode="legacy") as client:
            tools = await client.list_tools()
            no_session = await client.call_tool("execute_python_code", {"code": "1"})
    assert {t.name for t in tools.tools} == {"execute_python_code", "execute_shell_commands"}
    assert no_session.is_error and "no MCP session" in tool_text(no_session)


_TRACED = """
import asyncio, sys
from opentelemetry import trace
from mcp import Client
from jupyter_exec_sessions.mcp_server import create_mcp_server

names = []

class Tracer(trace.NoOpTracer):
    def start_span(self, name, *args, **kwargs):
        names.append(name)
        return super().start_span(name, *args, **kwargs)

class Provider(trace.NoOpTracerProvider):
    def get_tracer(self, *args, **kwargs):
        return Tracer()

if sys.argv[1] == "traced":
    trace.set_tracer_provider(Provider())

server = create_mcp_server(lambda _owner: None)

async def main():
    async with Client(server, mode="legacy") as client:
        await client.list_tools()

asyncio.run(main())
print(sorted(type(m).__name__ for m in server.middleware))
print(sorted(set(names)))
"""


@pytest.mark.parametrize("tracing", ["traced", "untraced"])
def test_mcp_messages_are_traced_only_when_a_tracer_provider_is_set_up(tracing: str) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _TRACED, tracing], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    middleware, spans = out.stdout.strip().splitlines()[-2:]
    if tracing == "traced":
        assert "'tools/list'" in spans and "'initialize'" in spans, spans
    else:  # the SDK's span middleware is gone, the others stay
        assert "OpenTelemetryMiddleware" not in middleware, middleware
        assert "RequestStateBoundary" in middleware, middleware
