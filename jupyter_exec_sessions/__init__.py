"""jupyter-exec-sessions: a Jupyter server extension that is a code-interpreter session backend.

Public API only; heavy parts are imported lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["SessionMonitor", "__version__"]

if TYPE_CHECKING:
    from .widget import SessionMonitor


def __getattr__(name: str) -> Any:
    if name == "SessionMonitor":
        from .widget import SessionMonitor

        return SessionMonitor
    raise AttributeError(name)


def _jupyter_server_extension_points() -> list[dict[str, Any]]:
    from .app import ExecSessionsApp

    return [{"module": "jupyter_exec_sessions.app", "app": ExecSessionsApp}]
