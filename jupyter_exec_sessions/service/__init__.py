"""ContainerService: the one owner of containers, files and executions.

REST handlers, the in-server MCP endpoint and the events handler are thin adapters over it;
it knows nothing about HTTP or MCP. :meth:`ContainerService.for_user` gives the per-user view
that satisfies ``_protocol.ContainerBackend``.
"""

from __future__ import annotations

from .._contract import OutputSink
from ..models import (
    Container,
    CreateContainerRequest,
    Execution,
    PythonExecutionRequest,
    ShellExecutionRequest,
)
from .containers import ContainersMixin
from .executions import ExecutionsMixin
from .files import FilesMixin
from .kernels import ServiceConfig

__all__ = ["ContainerService", "ServiceConfig", "UserContainers"]


class ContainerService(ContainersMixin, FilesMixin, ExecutionsMixin):
    """Containers (lifecycle, limits, expiry, events), their files and executions."""

    def for_user(self, owner: str) -> UserContainers:
        """The view of the service that one authenticated user may use."""
        return UserContainers(self, owner)


class UserContainers:
    """One user's view of the service; satisfies ``ContainerBackend``."""

    def __init__(self, service: ContainerService, owner: str) -> None:
        self.service = service
        self.owner = owner

    async def create_container(self, request: CreateContainerRequest) -> Container:
        """Create a container for this user."""
        return await self.service.create(self.owner, request)

    async def retrieve_container(self, container_id: str) -> Container:
        """Return one of this user's containers."""
        return self.service.retrieve(self.owner, container_id)

    async def execute(
        self,
        container_id: str,
        request: PythonExecutionRequest | ShellExecutionRequest,
        on_output: OutputSink | None = None,
    ) -> Execution:
        """Run an execution in one of this user's containers."""
        return await self.service.execute(self.owner, container_id, request, on_output)
