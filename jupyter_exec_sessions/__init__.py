"""jupyter-exec-sessions: a Jupyter server extension that is a code-interpreter session backend.

Public API only; heavy parts (the MCP SDK, anywidget, the server extension) load lazily.
Errors live in ``jupyter_exec_sessions.errors``, wire models in ``jupyter_exec_sessions.models``,
the gateway session hook in ``jupyter_exec_sessions.hook``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["AsyncClient", "Client", "SessionMonitor", "__version__"]

_LAZY = {"AsyncClient": "client", "Client": "client", "SessionMonitor": "widget"}

if TYPE_CHECKING:
    from jupyter_exec_sessions.client import AsyncClient, Client
    from jupyter_exec_sessions.widget import SessionMonitor


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from jupyter_exec_sessions.extension.app import ExecSessionsApp

    return [{"module": "jupyter_exec_sessions.extension.app", "app": ExecSessionsApp}]
