"""Event bus: durable, per-user, resumable lifecycle events.

Every event is appended to the SQLite log (so ``seq`` keeps growing across restarts and a
consumer can resume with ``Last-Event-ID``) and pushed to live subscribers of the same owner.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from .._contract import new_id
from ..models import EVENT_ADAPTER, EVENT_TYPE_OF_DATA, Event, EventData
from .store import EventRow, Store

__all__ = ["EventBus"]


class _Subscriber:
    def __init__(self, owner: str, maxsize: int) -> None:
        self.owner = owner
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize=maxsize)
        self.overflowed = False


def _to_event(row: EventRow) -> Event:
    return EVENT_ADAPTER.validate_python(
        {
            "id": row.id,
            "seq": row.seq,
            "type": row.type,
            "created_at": row.created_at,
            "container_id": row.container_id,
            "data": row.data,
        }
    )


class EventBus:
    """Appends events to the store and fans them out to live followers."""

    def __init__(self, store: Store, *, queue_size: int = 1000) -> None:
        self._store = store
        self._subs: set[_Subscriber] = set()
        self._queue_size = queue_size
        self._closed = False

    def emit(self, data: EventData, /, *, owner: str, container_id: str | None = None) -> None:
        """Record one event (its type is the type of ``data``) and deliver it to the owner.

        The wire model of the event is built only when one of the owner's followers is live.
        """
        row = self._store.append_event(
            id=new_id("evt_"),
            type=EVENT_TYPE_OF_DATA[type(data)],
            container_id=container_id,
            owner=owner,
            data=data.model_dump(mode="json"),
        )
        event: Event | None = None
        for sub in self._subs:
            if sub.owner != owner or sub.overflowed:
                continue
            if event is None:
                event = _to_event(row)
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                # A follower that cannot keep up is ended; it resumes with Last-Event-ID.
                sub.overflowed = True

    def close(self) -> None:
        """End every follower (server shutdown)."""
        self._closed = True
        for sub in list(self._subs):
            sub.overflowed = True
            with contextlib.suppress(asyncio.QueueFull):
                sub.queue.put_nowait(None)

    async def follow(
        self, owner: str, after_seq: int = 0, *, heartbeat: float | None = None
    ) -> AsyncIterator[Event | None]:
        """Yield the owner's events with ``seq > after_seq``: stored backlog first, then live.

        Yields ``None`` after ``heartbeat`` idle seconds (so a writer can send keep-alives and
        notice a gone client). Ends when the bus closes or the follower overflowed its queue.
        """
        sub = _Subscriber(owner, self._queue_size)
        self._subs.add(sub)
        try:
            last = after_seq
            while True:
                backlog = self._store.events_after(owner, last)
                if not backlog:
                    break
                for row in backlog:
                    last = row.seq
                    yield _to_event(row)
            while not self._closed:
                if sub.overflowed and sub.queue.empty():
                    return
                try:
                    event = await asyncio.wait_for(sub.queue.get(), heartbeat)
                except asyncio.TimeoutError:
                    yield None
                    continue
                if event is None:
                    return
                if event.seq <= last:
                    continue
                last = event.seq
                yield event
        finally:
            self._subs.discard(sub)
