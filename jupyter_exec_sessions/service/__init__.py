"""ContainerService: the one owner of containers, their kernels, files and executions.

REST handlers, the in-server MCP endpoint and the events handler are thin adapters over it;
it knows nothing about HTTP or MCP. The service is composed of parts that each own one
concept and are built from the ones below them::

    store (SQLite registry) ── events (EventBus)
    manager (KernelManagerAdapter) ── kernels (ContainerKernels: pool, slots, live kernels)
    containers (Containers: lifecycle, lookup, expiry, eviction of idle implicit ones)
    conversations (Conversations: conversation key → implicit container, durable)
    files (Files)            executions (Executions)
    stored_files (StoredFiles: the Files API, copied into containers through files)

:meth:`ContainerService.for_user` gives the per-user view that satisfies
``ContainerBackend`` (what the MCP tools are written against).
"""

from __future__ import annotations

from .._contract import ConversationContainer, OutputSink
from ..engine.session import KernelManagerLike
from ..models import Container, CreateContainerRequest, Execution, ExecutionRequest
from .background import BackgroundTasks
from .config import ServiceConfig
from .confinement import Confinement, NoConfinement
from .containers import Containers
from .conversations import Conversations
from .events import EventBus
from .executions import Executions
from .files import Files
from .kernel_manager import KernelManagerAdapter
from .kernels import ContainerKernels
from .store import Store
from .stored_files import StoredFiles

__all__ = ["ContainerService", "ServiceConfig", "UserContainers"]


class ContainerService:
    """Containers (lifecycle, limits, expiry, events), their kernels, files and executions."""

    def __init__(
        self,
        kernel_manager: KernelManagerLike,
        config: ServiceConfig,
        confinement: Confinement | None = None,
    ) -> None:
        self.config = config
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(config.data_dir / "exec_sessions.sqlite")
        self.events = EventBus(self.store)
        self.background = BackgroundTasks()
        self.kernels = ContainerKernels(
            KernelManagerAdapter(kernel_manager),
            config,
            self.store,
            self.events,
            self.background,
            confinement or NoConfinement(),
        )
        self.containers = Containers(config, self.store, self.events, self.kernels, self.background)
        self.files = Files(config, self.store, self.containers, self.kernels)
        self.executions = Executions(config, self.store, self.events, self.containers, self.kernels)
        self.conversations = Conversations(config, self.store, self.containers)
        self.stored_files = StoredFiles(
            config, self.store, self.containers, self.kernels, self.files
        )

    async def create_container(self, owner: str, request: CreateContainerRequest) -> Container:
        """Create a container and copy the stored files of ``file_ids`` into it."""
        file_ids = request.file_ids or []
        self.stored_files.check_ids(owner, file_ids)
        container = await self.containers.create(
            owner, request.model_copy(update={"file_ids": None})
        )
        try:
            for file_id in file_ids:
                await self.stored_files.copy_into(owner, container.id, file_id, param="file_ids")
        except BaseException:
            await self.containers.delete(owner, container.id)
            raise
        return container

    async def start(self) -> None:
        """Sweep leftovers of a crashed run, start the pool and the expiry reaper."""
        await self.kernels.start()
        self.containers.start()

    async def stop(self) -> None:
        """Stop the reaper, end followers, cancel executions, shut down every kernel we own."""
        await self.containers.stop()
        self.events.close()
        await self.kernels.stop()
        await self.background.close()
        self.store.close()

    def for_user(self, owner: str) -> UserContainers:
        """The view of the service that one authenticated user may use."""
        return UserContainers(self, owner)


class UserContainers:
    """One user's view of the service (``ContainerBackend`` and ``ConversationBackend``)."""

    def __init__(self, service: ContainerService, owner: str) -> None:
        self.service = service
        self.owner = owner

    async def create_container(self, request: CreateContainerRequest) -> Container:
        """Create a container for this user."""
        return await self.service.create_container(self.owner, request)

    async def retrieve_container(self, container_id: str) -> Container:
        """Return one of this user's containers."""
        return self.service.containers.retrieve(self.owner, container_id)

    async def execute(
        self,
        container_id: str,
        request: ExecutionRequest,
        on_output: OutputSink | None = None,
    ) -> Execution:
        """Run an execution in one of this user's containers."""
        return await self.service.executions.execute(self.owner, container_id, request, on_output)

    async def conversation_container(self, key: str, name: str) -> ConversationContainer:
        """The running implicit container of this user's conversation ``key``."""
        return await self.service.conversations.container_for(self.owner, key, name)

    async def end_conversation(self, key: str) -> bool:
        """Forget this user's conversation ``key`` and expire its implicit container."""
        return self.service.conversations.end(self.owner, key)
