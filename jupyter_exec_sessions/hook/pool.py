"""A pool of shared MCP clients for gateways (official ``mcp`` SDK, streamable HTTP).

Threading model
---------------
An ``mcp.Client`` is bound to the event loop (and the task) that entered it: its transport is
an anyio task group. A gateway, however, may serve requests from several threads, each with its
own loop (a thread pool of sync workers, several uvicorn workers in threads, ``asyncio.run``
per job). So the pool owns **one private event loop in a daemon thread** and every MCP client
lives there, one per server configuration. ``await pool.call_tool(...)`` from any loop hands the
call to the pool loop (``run_coroutine_threadsafe``) and awaits the answer without blocking its
own loop; progress callbacks are delivered back on the caller's loop, in order, before the
result. ``call_tool_blocking`` does the same for plain threads. Cancelling the awaiting task
cancels the MCP request (the SDK sends ``notifications/cancelled``).

Failure model
-------------
A client whose transport fails (connection refused or reset, stream cut, server restarted and
forgot the session) is retired and the next call builds a fresh one: the rebuild is invisible
to callers. A call that was *in flight* when its connection broke is not resent, because its
code may already have run: it fails with :class:`MCPConnectionError`. The one exception is a
server answering "session not found" / "session terminated" (it never ran the call): that call
is resent once on a new client. When a configuration changes (new token, new headers), new
calls get a new client and calls in flight on the old one finish before it is closed.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import importlib.metadata
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.dispatcher import ProgressFnT
from mcp.shared.exceptions import MCPError
from mcp_types import CONNECTION_CLOSED, INVALID_REQUEST, CallToolResult, Implementation

from ..errors import ServiceUnavailableError

__all__ = ["MCPClientPool", "MCPConnectionError", "MCPServerConfig", "ProgressCallback"]

log = logging.getLogger(__name__)

#: ``on_progress(progress, total, message)``; called on the caller's event loop, in order.
ProgressCallback = Callable[[float, "float | None", "str | None"], Any]

_BROKEN = (
    httpx2.TransportError,
    anyio.ClosedResourceError,
    anyio.BrokenResourceError,
    anyio.EndOfStream,
)


class MCPConnectionError(ServiceUnavailableError):
    """The MCP server could not be reached, or the connection broke during the call."""

    code = "mcp_connection_error"


@dataclass(frozen=True)
class MCPServerConfig:
    """How to reach one MCP server. Equal configurations share one pooled client.

    ``token`` is sent as ``Authorization: Bearer``; ``headers`` are fixed per configuration
    (never per call: per-call data goes in ``_meta``). ``name`` identifies the logical server
    (default: ``url``): a new configuration under the same name replaces the old client.
    ``call_timeout`` bounds each call (seconds) unless the call gives its own.
    """

    url: str
    token: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    name: str | None = None
    call_timeout: float = 600.0
    connect_timeout: float = 30.0

    @property
    def key(self) -> str:
        """The logical server this configuration belongs to."""
        return self.name or self.url

    def http_headers(self) -> dict[str, str]:
        """Headers for every HTTP request of this configuration's client."""
        headers = dict(self.headers)
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers


@dataclass(eq=False)
class _Slot:
    """One live MCP client and the task that holds its context open."""

    config: MCPServerConfig
    number: int
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    closing: asyncio.Event = field(default_factory=asyncio.Event)
    client: Client | None = None
    dead: bool = False
    retired: bool = False
    error: BaseException | None = None
    inflight: int = 0
    task: asyncio.Task[None] | None = None


def _session_gone(exc: MCPError) -> bool:
    """The server does not know our MCP session (it restarted, or expired the session).

    The SDK server answers 404 ``Session not found``; the SDK client reports a bare 404 as
    ``Session terminated``. Either way the request was refused before anything ran.
    """
    message = exc.message.lower()
    return exc.code == INVALID_REQUEST and (
        "session not found" in message or "session terminated" in message
    )


def _relay_to_loop(loop: asyncio.AbstractEventLoop, callback: ProgressCallback) -> ProgressFnT:
    """A progress handler (pool loop) that calls ``callback`` on ``loop``, in order."""

    async def relay(progress: float, total: float | None, message: str | None) -> None:
        with contextlib.suppress(RuntimeError):  # the caller's loop is gone: nobody listens
            loop.call_soon_threadsafe(callback, progress, total, message)

    return relay


def _relay_direct(callback: ProgressCallback) -> ProgressFnT:
    """A progress handler that calls ``callback`` on the pool's thread."""

    async def relay(progress: float, total: float | None, message: str | None) -> None:
        callback(progress, total, message)

    return relay


class MCPClientPool:
    """Shared MCP clients, one per server configuration, for all requests and threads.

    See the module documentation for the threading and failure model. Counters
    ``connections_opened`` (clients ever built) and ``live_connections()`` let operators and
    tests see reuse. ``close()`` / ``aclose()`` shut everything down; the pool restarts lazily
    if used again.
    """

    def __init__(self, *, client_name: str = "jupyter-exec-sessions-hook") -> None:
        try:
            version = importlib.metadata.version("jupyter-exec-sessions")
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source checkout
            version = "0"
        self._client_info = Implementation(name=client_name, version=version)
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._slots: dict[str, _Slot] = {}  # touched only on the pool loop
        self._retiring: set[_Slot] = set()
        self.connections_opened = 0
        self._live = 0  # updated on the pool loop only; read from anywhere

    # ------------------------------------------------------------------ pool loop
    def _pool_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is not None and self._thread is not None and self._thread.is_alive():
                return self._loop
            loop = asyncio.new_event_loop()
            started = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(started.set)
                loop.run_forever()

            thread = threading.Thread(target=run, name="mcp-client-pool", daemon=True)
            thread.start()
            started.wait(10)
            self._loop, self._thread = loop, thread
            return loop

    def live_connections(self) -> int:
        """How many clients are currently connected (current plus retiring ones)."""
        return self._live

    # ------------------------------------------------------------------ public calls
    async def call_tool(
        self,
        config: MCPServerConfig,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        meta: Mapping[str, Any] | None = None,
        on_progress: ProgressCallback | None = None,
        timeout: float | None = None,
    ) -> CallToolResult:
        """Call tool ``name`` on the pooled client for ``config``; safe from any event loop.

        ``meta`` becomes the request's ``_meta`` (container, session and turn ids);
        ``on_progress(progress, total, message)`` receives ``notifications/progress`` on the
        caller's loop. Tool errors come back as a result with ``is_error``; transport failures
        raise :class:`MCPConnectionError`; protocol errors raise ``mcp.MCPError``.
        """
        caller = asyncio.get_running_loop()
        relay = None if on_progress is None else _relay_to_loop(caller, on_progress)
        future = asyncio.run_coroutine_threadsafe(
            self._call(config, name, dict(arguments or {}), meta, relay, timeout),
            self._pool_loop(),
        )
        return await asyncio.wrap_future(future)

    def call_tool_blocking(
        self,
        config: MCPServerConfig,
        name: str,
        arguments: Mapping[str, Any] | None = None,
        *,
        meta: Mapping[str, Any] | None = None,
        on_progress: ProgressCallback | None = None,
        timeout: float | None = None,
    ) -> CallToolResult:
        """:meth:`call_tool` for threads without an event loop.

        ``on_progress`` runs on the pool's thread and must not block.
        """
        relay = None if on_progress is None else _relay_direct(on_progress)
        future = asyncio.run_coroutine_threadsafe(
            self._call(config, name, dict(arguments or {}), meta, relay, timeout),
            self._pool_loop(),
        )
        limit = (timeout or config.call_timeout) + config.connect_timeout + 5
        try:
            return future.result(limit)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise

    async def aclose(self) -> None:
        """Close every client and stop the pool's thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None or not thread.is_alive():
            return
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._shutdown(), loop))
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.get_running_loop().run_in_executor(None, thread.join, 10)
        loop.close()

    def close(self) -> None:
        """Blocking :meth:`aclose` for code without a running event loop."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None or not thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()

    # ------------------------------------------------------------------ on the pool loop
    async def _shutdown(self) -> None:
        slots = [*self._slots.values(), *self._retiring]
        self._slots.clear()
        self._retiring.clear()
        for slot in slots:
            slot.closing.set()
        tasks = [s.task for s in slots if s.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=10)

    async def _hold(self, slot: _Slot) -> None:
        """Enter the client's context, publish it, and keep it open until told to close."""
        config = slot.config
        timeout = httpx2.Timeout(config.connect_timeout, read=config.call_timeout)
        try:
            async with httpx2.AsyncClient(headers=config.http_headers(), timeout=timeout) as http:
                transport = streamable_http_client(config.url, http_client=http)
                async with Client(transport, cache=None, client_info=self._client_info) as client:
                    slot.client = client
                    slot.ready.set()
                    self._live += 1
                    try:
                        await slot.closing.wait()
                    finally:
                        self._live -= 1
        except Exception as exc:  # the transport failed: this client is finished
            slot.error = exc
            log.info("MCP client #%d for %s ended: %r", slot.number, config.url, exc)
        finally:
            slot.dead = True
            slot.ready.set()
            self._retire(slot)
            self._retiring.discard(slot)

    async def _acquire(self, config: MCPServerConfig) -> _Slot:
        slot = self._slots.get(config.key)
        if slot is not None and (slot.dead or slot.config != config):
            self._retire(slot)
            slot = None
        if slot is None:
            self.connections_opened += 1
            slot = _Slot(config, self.connections_opened)
            self._slots[config.key] = slot
            slot.task = asyncio.get_running_loop().create_task(self._hold(slot))
        try:
            await asyncio.wait_for(slot.ready.wait(), config.connect_timeout)
        except asyncio.TimeoutError:
            self._retire(slot)
            raise MCPConnectionError(
                f"Timed out connecting to the MCP server at {config.url}."
            ) from None
        if slot.dead or slot.client is None:
            raise MCPConnectionError(
                f"Cannot connect to the MCP server at {config.url}: {slot.error!r}"
            ) from slot.error
        return slot

    def _retire(self, slot: _Slot) -> None:
        """Stop handing ``slot`` out; close it once its in-flight calls are done."""
        if self._slots.get(slot.config.key) is slot:
            del self._slots[slot.config.key]
        if not slot.dead:
            slot.retired = True
            self._retiring.add(slot)
            if slot.inflight == 0:
                slot.closing.set()

    async def _call(
        self,
        config: MCPServerConfig,
        name: str,
        arguments: dict[str, Any],
        meta: Mapping[str, Any] | None,
        progress: ProgressFnT | None,
        timeout: float | None,
    ) -> CallToolResult:
        for attempt in (0, 1):
            slot = await self._acquire(config)
            assert slot.client is not None
            slot.inflight += 1
            try:
                return await slot.client.call_tool(
                    name,
                    arguments,
                    read_timeout_seconds=timeout or config.call_timeout,
                    progress_callback=progress,
                    meta=dict(meta) if meta is not None else None,  # type: ignore[arg-type]
                )
            except MCPError as exc:
                if _session_gone(exc):
                    self._retire(slot)
                    if attempt == 0:
                        continue  # the server never ran it: resend on a new client
                    raise MCPConnectionError(f"MCP session lost: {exc.message}") from exc
                if exc.code == CONNECTION_CLOSED or slot.dead:
                    self._retire(slot)
                    raise MCPConnectionError(
                        f"The MCP connection broke during the call ({exc.message}); "
                        "the call may or may not have run."
                    ) from exc
                raise
            except _BROKEN as exc:
                self._retire(slot)
                raise MCPConnectionError(
                    f"The MCP connection broke during the call ({exc!r}); "
                    "the call may or may not have run."
                ) from exc
            finally:
                slot.inflight -= 1
                if slot.retired and slot.inflight == 0:
                    slot.closing.set()
        raise AssertionError("unreachable")  # pragma: no cover
