"""Reference Responses gateway: proves and demos the session hook. It is not a model server.

``jupyter-exec-sessions gateway --url URL --token TOKEN`` serves ``POST /v1/responses`` with a
scripted "model" (``gateway.model``) that runs the last user message as a tool call through
:mod:`jupyter_exec_sessions.hook`.
"""

from __future__ import annotations

from .app import create_app, main

__all__ = ["create_app", "main"]
