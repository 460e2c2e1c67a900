"""MCP tools over the containers: ``execute_python_code`` and ``execute_shell_commands``.

The tools are written once against ``ContainerBackend`` (:mod:`jupyter_exec_sessions._contract`);
the in-server endpoint gives them the service's per-user view, the stdio server
(:func:`run_stdio`) the typed HTTP client of a running server.

A tool result is text (and images) written for a model, without ``structuredContent``; its
``_meta`` holds the container id, execution id, status and ``state_reset`` under the
``RESULT_META_*`` keys, and the whole execution object when the call's ``_meta`` set
``META_INCLUDE_EXECUTION``.
"""

from __future__ import annotations

from .._contract import (
    META_INCLUDE_EXECUTION,
    RESULT_META_CONTAINER_ID,
    RESULT_META_EXECUTION,
    RESULT_META_EXECUTION_ID,
    RESULT_META_STATE_RESET,
    RESULT_META_STATUS,
)
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
    "META_INCLUDE_EXECUTION",
    "OWNER_SCOPE_KEY",
    "RESULT_META_CONTAINER_ID",
    "RESULT_META_EXECUTION",
    "RESULT_META_EXECUTION_ID",
    "RESULT_META_STATE_RESET",
    "RESULT_META_STATUS",
    "META_SESSION_ID",
    "META_TURN_ID",
    "BackendResolver",
    "create_mcp_server",
    "render_execution",
    "run_stdio",
]
