"""The execution engine: Python, shell and file operations in one kernel, over its channels.

Knows one kernel at a time (a jupyter_client kernel manager's client, local or through a
gateway) and nothing about containers, HTTP or MCP. ``engine.kernel`` is the code that runs
*inside* the kernel (standard library only).
"""

from __future__ import annotations

from .session import KernelSession, RunResult

__all__ = ["KernelSession", "RunResult"]
