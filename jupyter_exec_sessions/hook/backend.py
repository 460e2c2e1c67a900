"""Session backends for the gateway hook: the protocol and the containers-API implementation.

A backend answers three questions for :class:`~jupyter_exec_sessions.hook.SessionResolver`:
does this container exist (``find``), may new work run in it (``validate``), and make me a new
one (``create``). Authentication, headers and the rules of what counts as usable stay inside
the backend, so the resolver is generic.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable
from urllib.parse import quote

import httpx2

from ..client._core import Call
from ..client._transport import AsyncTransport
from ..errors import ExecSessionsError, NotFoundError

__all__ = [
    "ContainerRef",
    "ContainersAPIBackend",
    "ResolutionObserver",
    "SessionBackend",
    "SessionSpec",
]

Origin = Literal["explicit", "history", "created", "replaced"]


@dataclass(frozen=True)
class ContainerRef:
    """A container as a backend sees it.

    ``status`` is the backend's own word (``running`` / ``expired`` for the containers API);
    ``ours`` is true when the server is a jupyter-exec-sessions server (its container objects
    carry ``exec_sessions``); ``raw`` is the backend's full object.
    """

    id: str
    status: str
    name: str | None = None
    ours: bool = False
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True)
class SessionSpec:
    """What to create when the resolver needs a new container.

    Built from the tool declaration's ``auto`` object (``file_ids``, ``memory_limit``); ``tool``
    is ``"code_interpreter"`` or ``"shell"``; ``extra`` keeps the declaration's other fields
    (``network_policy``, ``skills``…) for backends that understand them.
    """

    name: str
    tool: str = "code_interpreter"
    memory_limit: str | None = None
    file_ids: tuple[str, ...] = ()
    expires_after_minutes: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict, compare=False)


@runtime_checkable
class SessionBackend(Protocol):
    """Where containers live. All methods are coroutines; raise ``ExecSessionsError`` on faults."""

    async def find(self, container_id: str) -> ContainerRef | None:
        """The container, or ``None`` when it does not exist (or is not visible to us)."""
        ...

    async def validate(self, container: ContainerRef) -> bool:
        """Whether new executions may run in ``container`` (false when expired)."""
        ...

    async def create(self, spec: SessionSpec) -> ContainerRef:
        """Create a new, usable container."""
        ...


@runtime_checkable
class ResolutionObserver(Protocol):
    """Optional backend capability: be told the resolver's decision (best-effort)."""

    async def report_resolution(
        self,
        container: ContainerRef,
        *,
        origin: Origin,
        previous_id: str | None,
        session_id: str | None,
    ) -> None:
        """Record the decision; must never raise for a reporting failure."""
        ...


def _ref(body: Mapping[str, Any]) -> ContainerRef:
    return ContainerRef(
        id=str(body["id"]),
        status=str(body.get("status", "running")),
        name=body.get("name"),
        ours=isinstance(body.get("exec_sessions"), dict),
        raw=dict(body),
    )


class ContainersAPIBackend:
    """A :class:`SessionBackend` over any OpenAI-compatible containers API.

    ``base_url`` is the API root: ``http://host:8888/exec-sessions/v1`` for a Jupyter server
    running this extension, ``https://api.openai.com/v1`` for OpenAI. ``api_key`` is sent as
    ``Authorization: Bearer``. A container is usable when its ``status`` is ``running``.

    Safe to share across requests, tasks, threads and event loops: one HTTP connection pool is
    kept per event loop. Against a jupyter-exec-sessions server (container objects carry
    ``exec_sessions``) it also reports each decision to ``POST /containers/{id}/resolutions`` so
    the events feed shows ``container.resolved``; failures of that report are ignored.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float = 60.0,
        default_expires_after_minutes: int | None = None,
        report_timeout: float = 5.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = dict(headers or {})
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._timeout = timeout
        self._report_timeout = report_timeout
        self.default_expires_after_minutes = default_expires_after_minutes
        self._lock = threading.Lock()
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncTransport] = (
            weakref.WeakKeyDictionary()
        )

    def _client(self) -> AsyncTransport:
        loop = asyncio.get_running_loop()
        with self._lock:
            client = self._clients.get(loop)
            if client is None or client.http.is_closed:
                http = httpx2.AsyncClient(timeout=self._timeout)
                client = AsyncTransport(self.base_url, http, self._headers)
                self._clients[loop] = client
            return client

    async def find(self, container_id: str) -> ContainerRef | None:
        """``GET /containers/{id}``; ``None`` when it does not exist (404)."""
        call = Call("GET", f"containers/{quote(container_id, safe='')}")
        try:
            return _ref(json.loads(await self._client().send(call)))
        except NotFoundError:
            return None

    async def validate(self, container: ContainerRef) -> bool:
        """Usable when ``status == "running"`` (OpenAI and ours both say ``expired`` otherwise)."""
        return container.status == "running"

    async def create(self, spec: SessionSpec) -> ContainerRef:
        """``POST /containers`` with the spec's name, memory limit, file ids and expiry."""
        body: dict[str, Any] = {"name": spec.name}
        minutes = spec.expires_after_minutes or self.default_expires_after_minutes
        if minutes:
            body["expires_after"] = {"anchor": "last_active_at", "minutes": minutes}
        if spec.memory_limit:
            body["memory_limit"] = spec.memory_limit
        if spec.file_ids:
            body["file_ids"] = list(spec.file_ids)
        return _ref(json.loads(await self._client().send(Call("POST", "containers", json=body))))

    async def report_resolution(
        self,
        container: ContainerRef,
        *,
        origin: Origin,
        previous_id: str | None,
        session_id: str | None,
    ) -> None:
        """Best-effort ``POST /containers/{id}/resolutions`` on our own servers only."""
        if not container.ours:
            return
        call = Call(
            "POST",
            f"containers/{quote(container.id, safe='')}/resolutions",
            json={"origin": origin, "previous_id": previous_id, "session_id": session_id},
        )
        with contextlib.suppress(ExecSessionsError):
            await self._client().send(call, timeout=self._report_timeout)

    async def aclose(self) -> None:
        """Close the connection pool of the current event loop and forget the others."""
        with self._lock:
            clients = list(self._clients.items())
            self._clients = weakref.WeakKeyDictionary()
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - always called from a loop in practice
            current = None
        for loop, client in clients:
            if loop is current:
                await client.http.aclose()
