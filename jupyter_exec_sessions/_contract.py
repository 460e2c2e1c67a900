"""The small protocol the MCP tools (and other consumers) are written against.

Both the in-process per-user view of ``ContainerService`` (``_service.UserContainers``) and the
typed HTTP client (``client.AsyncClient``) satisfy :class:`ContainerBackend`, so the in-server
MCP endpoint pays no HTTP hop and the stdio MCP server reaches a remote server unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, Union

from jupyter_exec_sessions.models import (
    Container,
    CreateContainerRequest,
    Execution,
    Output,
    PythonExecutionRequest,
    ShellExecutionRequest,
)

__all__ = ["ContainerBackend", "OutputSink"]

#: Called synchronously, in order, with each output delta of a running execution and the
#: index of the shell command that produced it (``None`` for Python). Must not block.
OutputSink = Callable[[Output, Union[int, None]], None]


class ContainerBackend(Protocol):
    """Create, look up and execute in containers on behalf of one authenticated user."""

    async def create_container(self, request: CreateContainerRequest) -> Container:
        """Create a container (from the warm pool when one is ready)."""
        ...

    async def retrieve_container(self, container_id: str) -> Container:
        """Return the container; raises ``ContainerNotFoundError`` for unknown/foreign ids."""
        ...

    async def execute(
        self,
        container_id: str,
        request: PythonExecutionRequest | ShellExecutionRequest,
        on_output: OutputSink | None = None,
    ) -> Execution:
        """Run one execution to completion; ``on_output`` receives deltas as they happen.

        Raises ``ContainerExpiredError``, ``ContainerNotFoundError``, ``QueueFullError`` and
        other ``ExecSessionsError`` for infrastructure problems; user-code errors are data.
        """
        ...
