"""Where a ``tools/call`` runs and for whom: read from its own request, nothing shared.

Private to :mod:`jupyter_exec_sessions.mcp_server` (which re-exports the constants).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import anyio
from mcp.server.mcpserver import Context

from .._contract import (
    CODEX_TURN_META_KEY,
    CONTAINER_HEADER,
    META_CONTAINER_ID,
    META_INCLUDE_EXECUTION,
    META_SESSION_ID,
    META_TURN_ID,
    SESSION_HEADER,
    TURN_HEADER,
    ContainerBackend,
    conversation_container_name,
)
from ..models import CreateContainerRequest, ExecutionMetadata

__all__ = [
    "OWNER_SCOPE_KEY",
    "CONVERSATION_PREFIX",
    "SESSION_PREFIX",
    "CallRouting",
    "SessionContainers",
    "conversation_key",
    "read_call",
]

#: Conversation keys of implicit containers: a conversation id, else an MCP session id.
CONVERSATION_PREFIX = "conversation:"
SESSION_PREFIX = "mcp-session:"
#: ASGI scope key under which the HTTP bridge puts the authenticated owner.
OWNER_SCOPE_KEY = "jupyter_exec_sessions.owner"


@dataclass(frozen=True)
class CallRouting:
    """What one ``tools/call`` says about where and for whom it runs (read-only)."""

    owner: str | None
    container_id: str | None
    container_origin: Literal["_meta", "header"] | None
    session_key: str | None
    metadata: ExecutionMetadata | None
    wants_progress: bool
    include_execution: bool = False


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _codex_turn(meta: Mapping[str, Any]) -> Mapping[str, Any]:
    raw = meta.get(CODEX_TURN_META_KEY)
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    return raw if isinstance(raw, Mapping) else {}


def read_call(ctx: Context[Any, Any], default_session: str | None) -> CallRouting:
    """Read a call's routing from its ``_meta``, its HTTP request headers and scope."""
    rc = ctx.request_context
    meta: Mapping[str, Any] = rc.meta or {}
    request = rc.request
    headers: Mapping[str, str] = getattr(request, "headers", None) or {}
    scope: Mapping[str, Any] = getattr(request, "scope", None) or {}

    container_id = _text(meta.get(META_CONTAINER_ID))
    origin: Literal["_meta", "header"] | None = "_meta" if container_id else None
    if container_id is None and (container_id := _text(headers.get(CONTAINER_HEADER))):
        origin = "header"

    codex = _codex_turn(meta)
    session_id = (
        _text(meta.get(META_SESSION_ID))
        or _text(codex.get("session_id"))
        or _text(headers.get(SESSION_HEADER))
    )
    turn_id = (
        _text(meta.get(META_TURN_ID))
        or _text(codex.get("turn_id"))
        or _text(headers.get(TURN_HEADER))
    )
    metadata = (
        ExecutionMetadata(session_id=session_id, turn_id=turn_id) if session_id or turn_id else None
    )
    owner = scope.get(OWNER_SCOPE_KEY)
    return CallRouting(
        owner=owner if isinstance(owner, str) else None,
        container_id=container_id,
        container_origin=origin,
        session_key=_text(headers.get("mcp-session-id")) or default_session,
        metadata=metadata,
        wants_progress=meta.get("progress_token") is not None,
        include_execution=meta.get(META_INCLUDE_EXECUTION) is True,
    )


def conversation_key(call: CallRouting) -> str | None:
    """The key of the call's implicit container: its conversation, else its MCP session."""
    if call.metadata is not None and call.metadata.session_id:
        return CONVERSATION_PREFIX + call.metadata.session_id
    if call.session_key is not None:
        return SESSION_PREFIX + call.session_key
    return None


class SessionContainers:
    """Conversation key → container id, kept in this process (stdio server).

    Used for backends without ``ConversationBackend``; each key's container is made and
    replaced once even under concurrent calls.
    """

    def __init__(self, max_sessions: int = 10_000) -> None:
        self._ids: OrderedDict[tuple[str | None, str], str] = OrderedDict()
        self._locks: dict[tuple[str | None, str], anyio.Lock] = {}
        self._max = max_sessions

    def _lock(self, key: tuple[str | None, str]) -> anyio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = anyio.Lock()
        return lock

    def _remember(self, key: tuple[str | None, str], container_id: str) -> None:
        self._ids[key] = container_id
        self._ids.move_to_end(key)
        while len(self._ids) > self._max:
            old, _ = self._ids.popitem(last=False)
            self._locks.pop(old, None)

    async def _create(self, key: tuple[str | None, str], backend: ContainerBackend) -> str:
        name = conversation_container_name(key[1])
        container = await backend.create_container(CreateContainerRequest(name=name))
        self._remember(key, container.id)
        return container.id

    async def get(self, key: tuple[str | None, str], backend: ContainerBackend) -> str:
        """The session's container id, creating the container on the session's first call."""
        if (known := self._ids.get(key)) is not None:
            return known
        async with self._lock(key):
            if (known := self._ids.get(key)) is not None:
                return known
            return await self._create(key, backend)

    async def replace(
        self, key: tuple[str | None, str], stale: str, backend: ContainerBackend
    ) -> str:
        """A fresh container for the session whose container ``stale`` is gone."""
        async with self._lock(key):
            known = self._ids.get(key)
            if known is not None and known != stale:
                return known  # a concurrent call already replaced it
            return await self._create(key, backend)
