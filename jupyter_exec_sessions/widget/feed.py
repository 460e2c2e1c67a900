"""The session monitor's background follower: containers list + events feed, never blocking.

:class:`Follower` runs in a daemon thread with its own asyncio loop and a typed
:class:`~jupyter_exec_sessions.client.AsyncClient` (the package's one transport, error mapping
and SSE reader). Per connection it

1. opens the events feed (``client.events(keepalives=True)``), resuming after the last ``seq``
   it processed once it has one, so the server replays exactly what was missed;
2. lists every container (``client.iter_containers``) *after* the stream is open, so a
   container created in between is in the listing or in the stream, never in neither;
3. folds each event into :class:`~.state.MonitorState` (events already seen, by id,
   are dropped) and refreshes the containers the event touched (``retrieve_container``,
   debounced) so counters are the server's exact ones.

When the stream ends or fails it reconnects with exponential backoff (0.1 s → 2 s). The owner
receives snapshots through ``on_update`` (called on the follower thread, throttled to one per
``flush_interval``, and at least once per server keep-alive so ``updated_at`` shows the view is
current); it must not block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from ..client import AsyncClient
from ..client._transport import is_unreachable
from ..errors import ExecSessionsError, NotFoundError
from ..models import Event
from .state import MonitorState

__all__ = ["Follower", "Snapshot"]

_log = logging.getLogger(__name__)
_BACKOFF_MIN = 0.1
_BACKOFF_MAX = 2.0


@dataclass
class Snapshot:
    """Everything the widget shows, as plain JSON-able values."""

    status: str
    error: str
    containers: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    last_seq: int = -1
    received: int = 0
    duplicates: int = 0
    gaps: int = 0
    connections: int = 0
    updated_at: float = 0.0


def _error_text(exc: ExecSessionsError) -> str:
    return f"HTTP {exc.status}: {exc.message}"


class Follower:
    """Follows one server's containers and events in a daemon thread (see module docs)."""

    def __init__(
        self,
        api_base: str,
        token: str,
        on_update: Callable[[Snapshot], None],
        *,
        max_events: int = 200,
        refresh_delay: float = 0.1,
        flush_interval: float = 0.2,
        read_timeout: float = 60.0,
    ) -> None:
        self.api_base = api_base.rstrip("/") + "/"
        self._token = token
        # A weak reference: a widget that is garbage-collected stops its follower.
        self._on_update: Callable[[], Callable[[Snapshot], None] | None]
        if hasattr(on_update, "__self__"):
            self._on_update = weakref.WeakMethod(on_update)
        else:
            self._on_update = lambda: on_update
        self.state = MonitorState(max_events)
        self.refresh_delay = refresh_delay
        self.flush_interval = flush_interval
        self.read_timeout = read_timeout
        self.status = "connecting"
        self.error = ""
        self.connections = 0
        self._pending: set[str] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = threading.Event()
        self._dirty: asyncio.Event | None = None
        self._wanted: asyncio.Event | None = None
        self._thread = threading.Thread(
            target=self._thread_main, name="jupyter-exec-sessions-monitor", daemon=True
        )

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        """Start following in the background; returns at once."""
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Whether the follower thread is running."""
        return self._thread.is_alive()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop following and wait (bounded) for the thread to end. Idempotent."""
        self._stopping.set()
        loop, task = self._loop, self._task
        if loop is not None and task is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(task.cancel)
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    def _thread_main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            self._task = loop.create_task(self._main())
            if self._stopping.is_set():
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(self._task)
        finally:
            self.status = "closed"
            self._publish()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    # ------------------------------------------------------------------ main loop
    async def _main(self) -> None:
        self._dirty = asyncio.Event()
        self._wanted = asyncio.Event()
        async with AsyncClient(self.api_base, self._token, timeout=10.0) as client:
            helpers = [
                asyncio.create_task(self._flush_loop()),
                asyncio.create_task(self._refresh_loop(client)),
            ]
            try:
                await self._follow_forever(client)
            finally:
                for task in helpers:
                    task.cancel()
                await asyncio.gather(*helpers, return_exceptions=True)

    async def _follow_forever(self, client: AsyncClient) -> None:
        backoff = _BACKOFF_MIN
        while not self._stopping.is_set():
            try:
                await self._follow_once(client)
                self._set_status("reconnecting", "the events stream ended")
                backoff = _BACKOFF_MIN
            except ExecSessionsError as exc:
                if is_unreachable(exc):
                    self._set_status("reconnecting", str(exc))
                else:  # the server answered with an error (a bad token…)
                    self._set_status("error", _error_text(exc))
            except Exception as exc:  # a server going away mid-body, bad bodies
                self._set_status("reconnecting", f"{type(exc).__name__}: {exc}".strip(": "))
            await asyncio.sleep(backoff)  # reconnect backoff, not synchronisation
            backoff = min(backoff * 2, _BACKOFF_MAX)

    async def _follow_once(self, client: AsyncClient) -> None:
        feed = client.events(self.state.last_seq, keepalives=True, read_timeout=self.read_timeout)
        async with contextlib.aclosing(feed):  # a failure below closes the connection now
            await self._consume(client, feed)

    async def _consume(self, client: AsyncClient, feed: AsyncIterator[Event | None]) -> None:
        opened = False
        async for event in feed:
            if event is None:
                if not opened:  # the feed records for us from now on: list what exists
                    opened = True
                    self.connections += 1
                    await self._list_containers(client)
                    self._set_status("live", "")
                self._mark_dirty()  # heartbeat: the view knows the monitor is alive
                continue
            if self.state.apply_event(event):
                if event.container_id and event.type != "container.deleted":
                    self._want_refresh(event.container_id)
                self._mark_dirty()

    async def _list_containers(self, client: AsyncClient) -> None:
        found = [c async for c in client.iter_containers(order="asc")]
        self.state.apply_listing(found, time.time())
        self._mark_dirty()

    # ------------------------------------------------------------------ refresh
    def _want_refresh(self, container_id: str) -> None:
        self._pending.add(container_id)
        assert self._wanted is not None
        self._wanted.set()

    async def _refresh_loop(self, client: AsyncClient) -> None:
        assert self._wanted is not None
        while True:
            await self._wanted.wait()
            await asyncio.sleep(self.refresh_delay)  # debounce a burst of events
            self._wanted.clear()
            ids, self._pending = self._pending, set()
            rows = self.state.rows
            ids = {i for i in ids if i in rows and rows[i]["status"] != "deleted"}
            await asyncio.gather(*(self._refresh_one(client, i) for i in ids))

    async def _refresh_one(self, client: AsyncClient, container_id: str) -> None:
        try:
            container = await client.retrieve_container(container_id)
        except NotFoundError:
            self.state.mark_deleted(container_id, time.time())
        except (ExecSessionsError, ValidationError):
            return  # the next event or reconnect listing brings it up to date
        else:
            self.state.apply_container(container)
        self._mark_dirty()

    # ------------------------------------------------------------------ publishing
    def _set_status(self, status: str, error: str) -> None:
        if (status, error) != (self.status, self.error):
            self.status, self.error = status, error
            self._mark_dirty()

    def _mark_dirty(self) -> None:
        if self._dirty is not None:
            self._dirty.set()

    async def _flush_loop(self) -> None:
        assert self._dirty is not None
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if not self._publish():
                self._stopping.set()
                assert self._task is not None
                self._task.cancel()
                return
            await asyncio.sleep(self.flush_interval)  # throttle comm traffic

    def snapshot(self) -> Snapshot:
        """Return the current state as plain values."""
        st = self.state
        return Snapshot(
            status=self.status,
            error=self.error,
            containers=st.containers_snapshot(),
            events=st.events_snapshot(),
            last_seq=-1 if st.last_seq is None else st.last_seq,
            received=st.received,
            duplicates=st.duplicates,
            gaps=st.gaps,
            connections=self.connections,
            updated_at=time.time(),
        )

    def _publish(self) -> bool:
        callback = self._on_update()
        if callback is None:
            return False
        try:
            callback(self.snapshot())
        except Exception:
            _log.exception("session monitor: publishing an update failed")
        return True
