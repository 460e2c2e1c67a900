"""MCP tools over the containers: ``execute_python_code`` and ``execute_shell_commands``.

The tools are written once against ``ContainerBackend`` (:mod:`jupyter_exec_sessions._contract`);
the in-server endpoint gives them the service's per-user view, the stdio server
(:func:`run_stdio`) the typed HTTP client of a running server.
"""

from __future__ import annotations

from .server import (
    CODEX_TURN_META_KEY,
    CONTAINER_HEADER,
    META_CONTAINER_ID,
    META_SESSION_ID,
    META_TURN_ID,
    OWNER_SCOPE_KEY,
    BackendResolver,
    create_mcp_server,
    render_execution,
    run_stdio,
)

__all__ = [
    "CODEX_TURN_META_KEY",
    "CONTAINER_HEADER",
    "META_CONTAINER_ID",
    "OWNER_SCOPE_KEY",
    "META_SESSION_ID",
    "META_TURN_ID",
    "BackendResolver",
    "create_mcp_server",
    "render_execution",
    "run_stdio",
]
