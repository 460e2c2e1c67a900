"""Session resolution for gateways: which container a Responses tool call runs in.

:class:`SessionResolver` applies the hook's rules to one tool declaration and the
conversation's history; :class:`RequestToolContext` does it lazily, once per request, for
every tool call of that request, whichever task or event loop asks.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import threading
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .._contract import (
    META_CONTAINER_ID,
    META_INCLUDE_EXECUTION,
    META_SESSION_ID,
    META_TURN_ID,
)
from ..errors import ContainerExpiredError, ContainerNotFoundError, InvalidRequestError
from .backend import (
    ContainerRef,
    Origin,
    ResolutionObserver,
    SessionBackend,
    SessionSpec,
)

__all__ = [
    "META_CONTAINER_ID",
    "META_SESSION_ID",
    "META_TURN_ID",
    "RequestToolContext",
    "Resolution",
    "SessionResolver",
    "ToolTarget",
    "history_container_ids",
    "parse_tool",
]


def _get(obj: Any, name: str) -> Any:
    """Field ``name`` of a dict or of an SDK object (pydantic model, dataclass)."""
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, Mapping):
        return dict(obj)
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        result = dump(exclude_none=True)
        if isinstance(result, dict):
            return result
    return {k: v for k, v in vars(obj).items() if not k.startswith("_")}


@dataclass(frozen=True)
class ToolTarget:
    """A parsed tool declaration: the tool type and either an explicit id or an ``auto`` spec."""

    tool: str
    container_id: str | None = None
    auto: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def key(self) -> tuple[str, str]:
        """Single-flight key: two declarations with the same key share one resolution."""
        if self.container_id is not None:
            return ("explicit", self.container_id)
        return ("auto", json.dumps(dict(self.auto), sort_keys=True, default=str))


def parse_tool(tool: Any) -> ToolTarget:
    """Parse a Responses tool declaration (dict or openai SDK object).

    ``code_interpreter``: ``container`` is an id, ``"auto"`` or ``{"type": "auto", …}``.
    ``shell``: ``environment`` is ``{"type": "container_reference", "container_id"}`` or
    ``{"type": "container_auto", …}`` (absent means auto). Anything else is an
    ``InvalidRequestError``.
    """
    if isinstance(tool, ToolTarget):
        return tool
    kind = _get(tool, "type")
    if kind == "code_interpreter":
        container = _get(tool, "container")
        if container is None or container == "auto":
            return ToolTarget(kind)
        if isinstance(container, str):
            return ToolTarget(kind, container_id=container)
        spec = _as_dict(container)
        if spec.get("type", "auto") != "auto":
            raise InvalidRequestError(
                f"Unsupported code_interpreter container type {spec.get('type')!r}.",
                param="tools.container",
            )
        spec.pop("type", None)
        return ToolTarget(kind, auto=spec)
    if kind == "shell":
        env = _get(tool, "environment")
        if env is None:
            return ToolTarget(kind)
        spec = _as_dict(env)
        env_type = spec.pop("type", None)
        if env_type == "container_reference":
            container_id = spec.get("container_id")
            if not isinstance(container_id, str) or not container_id:
                raise InvalidRequestError(
                    "container_reference needs a container_id.", param="tools.environment"
                )
            return ToolTarget(kind, container_id=container_id)
        if env_type == "container_auto":
            return ToolTarget(kind, auto=spec)
        raise InvalidRequestError(
            f"Shell environment {env_type!r} is not a container; nothing to resolve.",
            param="tools.environment",
        )
    raise InvalidRequestError(
        f"Tool type {kind!r} has no execution session (expected code_interpreter or shell).",
        param="tools.type",
    )


def _item_container_id(item: Any) -> str | None:
    kind = _get(item, "type")
    if kind == "code_interpreter_call":
        cid = _get(item, "container_id")
        return cid if isinstance(cid, str) and cid else None
    if kind in ("shell_call", "shell_call_output"):
        env = _get(item, "environment")
        if env is not None and _get(env, "type") in (None, "container_reference"):
            cid = _get(env, "container_id")
            if isinstance(cid, str) and cid:
                return cid
        cid = _get(item, "container_id")
        return cid if isinstance(cid, str) and cid else None
    return None


def _flatten(history: Iterable[Any]) -> list[Any]:
    items: list[Any] = []
    for entry in history:
        if _get(entry, "object") == "response":  # a whole Response: its output items
            items.extend(_get(entry, "output") or [])
        else:
            items.append(entry)
    return items


def history_container_ids(history: Iterable[Any]) -> list[str]:
    """Container ids named by history items, newest first, without duplicates.

    ``history`` is in conversation order (oldest first): items as dicts or openai SDK objects,
    or whole ``Response`` objects (their ``output`` is used). Sources:
    ``code_interpreter_call.container_id`` and ``shell_call`` / ``shell_call_output``
    ``environment.container_id``.
    """
    seen: list[str] = []
    for item in reversed(_flatten(history)):
        cid = _item_container_id(item)
        if cid is not None and cid not in seen:
            seen.append(cid)
    return seen


@dataclass(frozen=True)
class Resolution:
    """The resolver's answer for one tool.

    ``origin``: ``explicit`` (the declared id, usable), ``history`` (reused from the
    conversation), ``created`` (nothing to reuse), ``replaced`` (the declared or remembered
    container is gone or expired; a new one was made). ``previous_id`` is the container the
    declaration or history pointed at (``None`` when none). ``state_lost`` is true when that
    container's interpreter state is not available to this request (``replaced``);
    ``reason`` says why (``expired`` | ``not_found``).
    """

    id: str
    origin: Origin
    previous_id: str | None
    state_lost: bool
    tool: str
    container: ContainerRef
    reason: Literal["expired", "not_found"] | None = None


class SessionResolver:
    """Decides which container a tool's calls run in.

    Rules: an explicit id is found and validated, then used; if it is missing or expired,
    ``on_expired="recreate"`` makes a replacement (``replaced``, ``state_lost``) and
    ``on_expired="error"`` raises ``ContainerNotFoundError`` / ``ContainerExpiredError``.
    ``auto`` reuses the newest container named in the history if it is still valid
    (``history``), else creates one (``replaced`` when history named one, ``created`` when not).
    The resolver is stateless and safe to share across requests, tasks and threads.
    """

    def __init__(
        self,
        backend: SessionBackend,
        on_expired: Literal["recreate", "error"] = "recreate",
        *,
        name_prefix: str = "exec-session",
        expires_after_minutes: int | None = None,
    ) -> None:
        if on_expired not in ("recreate", "error"):
            raise ValueError(f"on_expired must be 'recreate' or 'error', not {on_expired!r}")
        self.backend = backend
        self.on_expired = on_expired
        self.name_prefix = name_prefix
        self.expires_after_minutes = expires_after_minutes

    def spec_for(self, target: ToolTarget, session_id: str | None = None) -> SessionSpec:
        """The :class:`SessionSpec` used when ``target`` needs a new container."""
        auto = dict(target.auto)
        file_ids = auto.pop("file_ids", None) or ()
        memory_limit = auto.pop("memory_limit", None)
        suffix = session_id or uuid.uuid4().hex[:12]
        return SessionSpec(
            name=f"{self.name_prefix}-{suffix}"[:256],
            tool=target.tool,
            memory_limit=memory_limit,
            file_ids=tuple(file_ids),
            expires_after_minutes=self.expires_after_minutes,
            extra=auto,
        )

    async def resolve(
        self, tool: Any, history: Iterable[Any] = (), *, session_id: str | None = None
    ) -> Resolution:
        """Resolve ``tool`` (a declaration or :class:`ToolTarget`) against ``history``."""
        target = parse_tool(tool)
        backend = self.backend
        if target.container_id is not None:
            pointed: str | None = target.container_id
        else:
            ids = history_container_ids(history)
            pointed = ids[0] if ids else None
        if pointed is None:
            created = await backend.create(self.spec_for(target, session_id))
            resolution = Resolution(created.id, "created", None, False, target.tool, created)
        else:
            found = await backend.find(pointed)
            if found is not None and await backend.validate(found):
                origin: Origin = "explicit" if target.container_id is not None else "history"
                resolution = Resolution(found.id, origin, pointed, False, target.tool, found)
            else:
                reason: Literal["expired", "not_found"] = "expired" if found else "not_found"
                if target.container_id is not None and self.on_expired == "error":
                    if found is None:
                        raise ContainerNotFoundError(pointed)
                    raise ContainerExpiredError(pointed)
                created = await backend.create(self.spec_for(target, session_id))
                resolution = Resolution(
                    created.id, "replaced", pointed, True, target.tool, created, reason
                )
        if isinstance(backend, ResolutionObserver):
            await backend.report_resolution(
                resolution.container,
                origin=resolution.origin,
                previous_id=resolution.previous_id,
                session_id=session_id,
            )
        return resolution


class _RetryError(Exception):
    """The leader of a single flight was cancelled; a waiter should lead instead."""


def _consume(future: asyncio.Future[Any]) -> None:
    """Mark a shielded waiter's outcome as retrieved (its awaiter may have been cancelled)."""
    if not future.cancelled():
        future.exception()


_DECISIONS = (ContainerExpiredError, ContainerNotFoundError, InvalidRequestError)


class RequestToolContext:
    """Per-request session state shared by every tool call of one Responses request.

    Build one per request and pass it explicitly to whatever runs the tools (the streaming
    generator, worker tasks, other threads). ``resolve(tool)`` runs the resolver lazily on the
    first call for that tool and exactly once per request even when many calls race (single
    flight, safe across tasks, threads and event loops); later calls get the same
    :class:`Resolution`. Declarations with the same target (e.g. ``code_interpreter`` and
    ``shell`` both ``auto`` with the same options) share one container. A decision error
    (expired/missing with ``on_expired="error"``, a bad declaration) is remembered for the
    request; a transient fault (network) is not, so the next call tries again.
    """

    def __init__(
        self,
        resolver: SessionResolver,
        history: Iterable[Any] = (),
        *,
        tools: Sequence[Any] = (),
        session_id: str | None = None,
        turn_id: str | None = None,
    ) -> None:
        self.resolver = resolver
        self.history = list(history)
        self.tools = list(tools)
        self.session_id = session_id
        self.turn_id = turn_id
        self._lock = threading.Lock()
        self._flights: dict[tuple[str, str], concurrent.futures.Future[Resolution]] = {}
        self._done: dict[str, Resolution] = {}

    def target(self, tool: Any) -> ToolTarget:
        """Parse ``tool``; a bare type name (``"shell"``) means that declared tool."""
        if isinstance(tool, str):
            for declared in self.tools:
                if _get(declared, "type") == tool:
                    return parse_tool(declared)
            raise InvalidRequestError(f"The request declares no {tool!r} tool.", param="tools")
        return parse_tool(tool)

    @property
    def resolutions(self) -> dict[str, Resolution]:
        """Resolutions made so far in this request, by tool type."""
        with self._lock:
            return dict(self._done)

    async def resolve(self, tool: Any) -> Resolution:
        """The tool's :class:`Resolution`, resolving it on first use (single flight)."""
        target = self.target(tool)
        while True:
            with self._lock:
                flight = self._flights.get(target.key)
                leader = flight is None
                if flight is None:
                    flight = concurrent.futures.Future()
                    self._flights[target.key] = flight
            if not leader:
                waiter = asyncio.wrap_future(flight)
                waiter.add_done_callback(_consume)
                try:
                    resolution = await asyncio.shield(waiter)
                except _RetryError:
                    continue
                return self._remember(resolution, target)
            return await self._lead(target, flight)

    async def _lead(
        self, target: ToolTarget, flight: concurrent.futures.Future[Resolution]
    ) -> Resolution:
        try:
            resolution = await self.resolver.resolve(
                target, self.history, session_id=self.session_id
            )
        except asyncio.CancelledError:
            self._forget(target, flight)
            flight.set_exception(_RetryError())
            raise
        except _DECISIONS as exc:
            flight.set_exception(exc)
            raise
        except BaseException as exc:
            self._forget(target, flight)
            flight.set_exception(exc)
            raise
        flight.set_result(resolution)
        return self._remember(resolution, target)

    def _forget(self, target: ToolTarget, flight: concurrent.futures.Future[Resolution]) -> None:
        with self._lock:
            if self._flights.get(target.key) is flight:
                del self._flights[target.key]

    def _remember(self, resolution: Resolution, target: ToolTarget) -> Resolution:
        with self._lock:
            self._done.setdefault(target.tool, resolution)
        return resolution

    async def meta(self, tool: Any) -> dict[str, Any]:
        """The ``_meta`` for an MCP ``tools/call`` of ``tool``: container, session and turn ids.

        It also asks for the whole execution object in the result's ``_meta``
        (``jupyter-exec-sessions/execution``), from which a gateway builds its output items.
        """
        resolution = await self.resolve(tool)
        meta: dict[str, Any] = {META_CONTAINER_ID: resolution.id, META_INCLUDE_EXECUTION: True}
        if self.session_id is not None:
            meta[META_SESSION_ID] = self.session_id
        if self.turn_id is not None:
            meta[META_TURN_ID] = self.turn_id
        return meta
