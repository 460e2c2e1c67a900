"""The session monitor's background follower: containers list + events feed, never blocking.

:class:`Follower` runs in a daemon thread with its own asyncio loop and an ``httpx2``
client. Per connection it

1. opens ``GET {api}/events`` (SSE, ``Authorization: Bearer``), sending ``Last-Event-ID`` with
   the last ``seq`` it processed once it has one, so the server replays exactly what was missed;
2. lists every container (``GET {api}/containers``, all pages) *after* the stream is open, so a
   container created in between is in the listing or in the stream, never in neither;
3. folds each event into :class:`~.state.MonitorState` (events already seen, by id,
   are dropped) and refreshes the containers the event touched (``GET {api}/containers/{id}``,
   debounced) so counters are the server's exact ones.

When the stream ends or fails it reconnects with exponential backoff (0.1 s → 2 s). The owner
receives snapshots through ``on_update`` (called on the follower thread, throttled to one per
``flush_interval``, and at least once per server keep-alive so ``updated_at`` shows the view is
current); it must not block.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx2 as httpx
from pydantic import ValidationError

from ..models import EVENT_ADAPTER, Container, ContainerList
from .state import MonitorState

__all__ = ["Follower", "Snapshot"]

_log = logging.getLogger(__name__)
_MAX_PAGES = 1000
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


class _FeedError(Exception):
    """The server answered the feed or a listing with an HTTP error."""


async def _iter_sse(response: httpx.Response) -> AsyncIterator[tuple[str, str, str]]:
    """Yield ``(id, event, data)`` per server-sent event; a comment yields ``("", "", "")``."""
    ev_id, ev_type = "", ""
    data: list[str] = []
    async for line in response.aiter_lines():
        if not line:
            if data:
                yield ev_id, ev_type or "message", "\n".join(data)
            ev_id, ev_type, data = "", "", []
            continue
        if line.startswith(":"):
            yield "", "", ""  # a keep-alive comment: the connection is alive
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            data.append(value)
        elif name == "event":
            ev_type = value
        elif name == "id":
            ev_id = value


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
        message = body["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = response.text[:200]
    return f"HTTP {response.status_code}: {message}"


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
        self._headers = {"Authorization": f"Bearer {token}"} if token else {}
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
        timeout = httpx.Timeout(10.0, read=self.read_timeout)
        async with httpx.AsyncClient(
            base_url=self.api_base, headers=self._headers, timeout=timeout
        ) as client:
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

    async def _follow_forever(self, client: httpx.AsyncClient) -> None:
        backoff = _BACKOFF_MIN
        while not self._stopping.is_set():
            try:
                await self._follow_once(client)
                self._set_status("reconnecting", "the events stream ended")
                backoff = _BACKOFF_MIN
            except _FeedError as exc:
                self._set_status("error", str(exc))
            except Exception as exc:  # transport errors, a server going away, bad bodies
                self._set_status("reconnecting", f"{type(exc).__name__}: {exc}".strip(": "))
            await asyncio.sleep(backoff)  # reconnect backoff, not synchronisation
            backoff = min(backoff * 2, _BACKOFF_MAX)

    async def _follow_once(self, client: httpx.AsyncClient) -> None:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        if self.state.last_seq is not None:
            headers["Last-Event-ID"] = str(self.state.last_seq)
        async with client.stream("GET", "events", headers=headers) as response:
            if response.status_code != 200:
                await response.aread()
                raise _FeedError(_error_text(response))
            self.connections += 1
            await self._list_containers(client)
            self._set_status("live", "")
            async for _id, _type, data in _iter_sse(response):
                if not data:
                    self._mark_dirty()  # heartbeat: the view knows the monitor is alive
                    continue
                try:
                    event = EVENT_ADAPTER.validate_json(data)
                except ValidationError:
                    continue  # not an event of ours (forward compatibility)
                if self.state.apply_event(event):
                    if event.container_id and event.type != "container.deleted":
                        self._want_refresh(event.container_id)
                    self._mark_dirty()

    async def _list_containers(self, client: httpx.AsyncClient) -> None:
        found: list[Container] = []
        after: str | None = None
        for _ in range(_MAX_PAGES):
            params: dict[str, str | int] = {"limit": 100, "order": "asc"}
            if after:
                params["after"] = after
            response = await client.get("containers", params=params)
            if response.status_code != 200:
                raise _FeedError(_error_text(response))
            page = ContainerList.model_validate(response.json())
            found.extend(page.data)
            if not page.has_more or not page.last_id:
                break
            after = page.last_id
        self.state.apply_listing(found, time.time())
        self._mark_dirty()

    # ------------------------------------------------------------------ refresh
    def _want_refresh(self, container_id: str) -> None:
        self._pending.add(container_id)
        assert self._wanted is not None
        self._wanted.set()

    async def _refresh_loop(self, client: httpx.AsyncClient) -> None:
        assert self._wanted is not None
        while True:
            await self._wanted.wait()
            await asyncio.sleep(self.refresh_delay)  # debounce a burst of events
            self._wanted.clear()
            ids, self._pending = self._pending, set()
            rows = self.state.rows
            ids = {i for i in ids if i in rows and rows[i]["status"] != "deleted"}
            await asyncio.gather(*(self._refresh_one(client, i) for i in ids))

    async def _refresh_one(self, client: httpx.AsyncClient, container_id: str) -> None:
        try:
            response = await client.get(f"containers/{container_id}")
        except httpx.HTTPError:
            return  # the next event or reconnect listing brings it up to date
        if response.status_code == 404:
            self.state.mark_deleted(container_id, time.time())
        elif response.status_code == 200:
            with contextlib.suppress(ValidationError, json.JSONDecodeError):
                self.state.apply_container(Container.model_validate(response.json()))
        else:
            return
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
