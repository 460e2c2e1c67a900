"""Session hook for gateways: resolve the execution session once per request.

A Responses-style runtime that offers ``code_interpreter`` and ``shell`` wires four pieces::

    backend  = ContainersAPIBackend(f"{server}exec-sessions/v1", api_key=token)
    resolver = SessionResolver(backend, on_expired="recreate")   # shared, stateless
    pool     = MCPClientPool()                                   # shared, one client per server
    mcp      = MCPServerConfig(url=f"{server}exec-sessions/mcp", token=token)

    # per request
    ctx = RequestToolContext(resolver, history, tools=tools, session_id=conv_id, turn_id=resp_id)
    # per tool call, from any task or thread
    result = await pool.call_tool(mcp, "execute_python_code", {"code": code},
                                  meta=await ctx.meta("code_interpreter"))

- :class:`SessionBackend` — where containers live (``find``, ``validate``, ``create``);
  :class:`ContainersAPIBackend` implements it over any OpenAI-compatible containers API.
- :class:`SessionResolver` — the rules: explicit id, reuse from history, create, replace.
- :class:`RequestToolContext` — lazy, single-flight resolution per request; the ``_meta`` of
  each MCP ``tools/call``.
- :class:`MCPClientPool` — shared MCP clients across requests, tasks and threads, rebuilt
  when they break (see :mod:`jupyter_exec_sessions.hook.pool` for the threading model).

The hook depends only on the wire contracts (HTTP containers API and MCP); it never imports
the server.
"""

from __future__ import annotations

from .backend import (
    ContainerRef,
    ContainersAPIBackend,
    ResolutionObserver,
    SessionBackend,
    SessionSpec,
)
from .pool import MCPClientPool, MCPConnectionError, MCPServerConfig, ProgressCallback
from .resolver import (
    META_CONTAINER_ID,
    META_SESSION_ID,
    META_TURN_ID,
    RequestToolContext,
    Resolution,
    SessionResolver,
    ToolTarget,
    history_container_ids,
    parse_tool,
)

__all__ = [
    "META_CONTAINER_ID",
    "META_SESSION_ID",
    "META_TURN_ID",
    "ContainerRef",
    "ContainersAPIBackend",
    "MCPClientPool",
    "MCPConnectionError",
    "MCPServerConfig",
    "ProgressCallback",
    "RequestToolContext",
    "Resolution",
    "ResolutionObserver",
    "SessionBackend",
    "SessionResolver",
    "SessionSpec",
    "ToolTarget",
    "history_container_ids",
    "parse_tool",
]
