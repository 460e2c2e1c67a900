"""Implicit containers: the container of a conversation or of an MCP session.

An MCP call that names no container runs in the container bound to its *conversation key*:
``conversation:<id>`` when the call carries a conversation id (turn metadata), else
``mcp-session:<id>`` for its MCP session. The binding lives in the registry, so a second
process of the same conversation (``codex exec resume``, a reconnect, another replica of a
client) finds the same container and its state. A key whose container expired, was evicted
or was deleted gets a new container, and the answer says which one it replaced and why.
"""

from __future__ import annotations

import asyncio
import time

from .._contract import ConversationContainer
from ..errors import ContainerNotFoundError
from ..models import CreateContainerRequest, ExpiresAfter
from .config import ServiceConfig
from .containers import Containers
from .store import Store

__all__ = ["Conversations"]


class Conversations:
    """Owner + conversation key → implicit container; single-flight per key."""

    def __init__(self, config: ServiceConfig, store: Store, containers: Containers) -> None:
        self.config = config
        self.store = store
        self.containers = containers
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def container_for(self, owner: str, key: str, name: str) -> ConversationContainer:
        """The running container of ``key``, made (or remade) on first use."""
        lock = self._locks.setdefault((owner, key), asyncio.Lock())
        try:
            async with lock:
                return await self._container_for(owner, key, name)
        finally:
            if not lock.locked() and self._locks.get((owner, key)) is lock:
                del self._locks[(owner, key)]

    async def _container_for(self, owner: str, key: str, name: str) -> ConversationContainer:
        previous = self.store.conversation_container(owner, key)
        reason: str | None = None
        if previous is not None:
            try:
                row = self.containers.owned(owner, previous)  # expires it if its time is up
            except ContainerNotFoundError:
                reason = "deleted"
            else:
                if row.status == "running":
                    return ConversationContainer(container_id=previous)
                reason = "evicted" if row.status == "evicted" else "expired"
        minutes = self.config.implicit_expires_minutes
        request = CreateContainerRequest(name=name, expires_after=ExpiresAfter(minutes=minutes))
        created = await self.containers.create(owner, request, implicit=True)
        self.store.bind_conversation(owner, key, created.id, time.time())
        return ConversationContainer(
            container_id=created.id,
            replaced=previous,
            reason=reason,  # type: ignore[arg-type]
        )

    def end(self, owner: str, key: str) -> bool:
        """Forget ``key`` and expire its implicit container now (its MCP session ended)."""
        container_id = self.store.conversation_container(owner, key)
        if container_id is None:
            return False
        self.store.unbind_conversation(owner, key)
        row = self.store.get_container(container_id)
        if row is None or not row.implicit:
            return False
        return self.containers.expire_now(owner, container_id, "session_closed")
