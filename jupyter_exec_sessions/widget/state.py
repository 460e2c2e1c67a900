"""What the session monitor shows: a pure reducer from container objects and events to rows.

No I/O and no threads here: :class:`MonitorState` is fed by the follower (``widget.feed``)
and its snapshots become the widget's synced traits. Every value it produces is plain JSON
(dicts of str/int/float/bool/None) so a saved notebook keeps the last state.

Row fields (``containers`` trait), one per container::

    id name status(running|expired|deleted) created_at last_active_at expires_minutes
    kernel_id executions sessions turns state_resets busy
    reuses last_origin last_reused_at last_session_id from_pool create_latency_ms
    restarts ended_at

Log entries (``events`` trait), newest first, bounded::

    seq id type kind created_at container_id name summary execution_id session_id
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any

from ..models import (
    Container,
    ContainerCreatedEvent,
    ContainerDeletedEvent,
    ContainerExpiredEvent,
    ContainerResolvedEvent,
    Event,
    EventData,
    ExecutionCompletedEvent,
    ExecutionStartedEvent,
    KernelRestartedEvent,
)

__all__ = ["REUSE_ORIGINS", "MonitorState"]

#: ``container.resolved`` origins meaning "a conversation was given an existing container".
REUSE_ORIGINS = frozenset({"history", "explicit"})

_RECENT_IDS = 10_000
_MAX_DELETED_ROWS = 50


def _short(value: Any, n: int = 12) -> str:
    text = str(value)
    return text if len(text) <= n else text[:n] + "…"


def _ms(value: Any) -> str:
    try:
        ms = float(value)
    except (TypeError, ValueError):
        return "?"
    return f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


def _conversation(data: EventData) -> str:
    parts = []
    session_id = getattr(data, "session_id", None)
    turn_id = getattr(data, "turn_id", None)
    if session_id:
        parts.append(f"session {_short(session_id, 24)}")
    if turn_id:
        parts.append(f"turn {_short(turn_id, 16)}")
    return ", ".join(parts)


def describe(event: Event) -> tuple[str, str]:
    """Return the log ``(kind, summary)`` of an event; ``kind`` selects its style in the browser."""
    conv = _conversation(event.data)
    suffix = f" ({conv})" if conv else ""
    if isinstance(event, ContainerCreatedEvent):
        how = "from warm pool" if event.data.from_pool else "cold start"
        return "created", f"created, {how} in {_ms(event.data.latency_ms)}"
    if isinstance(event, ContainerResolvedEvent):
        origin = event.data.origin
        who = f" for {conv}" if conv else ""
        if origin in REUSE_ORIGINS:
            via = "conversation history" if origin == "history" else "explicit id"
            return "reused", f"REUSED{who} via {via}"
        if origin == "replaced":
            previous = event.data.previous_id
            prev = f" {_short(previous, 17)}" if previous else ""
            return "replaced", f"replaced expired{prev}{who}: state lost"
        return "resolved", f"new container{who} (origin {origin})"
    if isinstance(event, ExecutionStartedEvent):
        return "running", f"executing {_short(event.data.execution_id, 17)}{suffix}"
    if isinstance(event, ExecutionCompletedEvent):
        status = event.data.status
        dur = f" in {_ms(event.data.duration_ms)}"
        kind = "exec" if status == "completed" else "exec-failed"
        return kind, f"execution {status}{dur}{suffix}"
    if isinstance(event, ContainerExpiredEvent):
        return "expired", "expired: kernel shut down, files kept"
    if isinstance(event, ContainerDeletedEvent):
        return "deleted", "deleted"
    return "restarted", f"kernel restarted ({event.data.reason}): state reset"


class MonitorState:
    """Containers and the event log, built from listings, container objects and events."""

    def __init__(self, max_events: int = 200) -> None:
        self.max_events = max_events
        self.rows: dict[str, dict[str, Any]] = {}
        self.log: list[dict[str, Any]] = []  # newest first
        self.last_seq: int | None = None
        self.received = 0
        self.duplicates = 0
        self.gaps = 0
        self.listed = False
        self._recent_ids: OrderedDict[str, None] = OrderedDict()

    # ------------------------------------------------------------------ containers
    def _row(self, container_id: str) -> dict[str, Any]:
        row = self.rows.get(container_id)
        if row is None:
            row = {
                "id": container_id,
                "name": "",
                "status": "running",
                "created_at": None,
                "last_active_at": None,
                "expires_minutes": None,
                "kernel_id": None,
                "executions": 0,
                "sessions": 0,
                "turns": 0,
                "state_resets": 0,
                "busy": False,
                "reuses": 0,
                "last_origin": None,
                "last_reused_at": None,
                "last_session_id": None,
                "from_pool": None,
                "create_latency_ms": None,
                "restarts": 0,
                "ended_at": None,
            }
            self.rows[container_id] = row
        return row

    def apply_container(self, container: Container) -> None:
        """Take the server's view of one container (exact counters); deletions are final."""
        row = self._row(container.id)
        if row["status"] == "deleted":
            return  # a late answer from before the deletion; ids are never reused
        info = container.exec_sessions
        row.update(
            name=container.name,
            status=container.status,
            created_at=float(container.created_at),
            last_active_at=float(container.last_active_at),
            expires_minutes=container.expires_after.minutes,
            kernel_id=info.kernel_id,
            executions=info.executions,
            sessions=info.sessions,
            turns=info.turns,
            state_resets=info.state_resets,
            busy=bool(info.busy) and container.status == "running",
        )
        if container.status == "expired" and row["ended_at"] is None:
            row["ended_at"] = time.time()  # until the container.expired event says exactly

    def apply_listing(self, containers: list[Container], now: float) -> None:
        """Take a complete listing: containers no longer listed were deleted meanwhile."""
        listed = {c.id for c in containers}
        self.listed = True
        for c in containers:
            self.apply_container(c)
        for cid, row in self.rows.items():
            if cid not in listed and row["status"] != "deleted":
                row.update(status="deleted", busy=False, ended_at=row["ended_at"] or now)
        self._prune_deleted()

    def mark_deleted(self, container_id: str, when: float) -> None:
        """Mark the container gone (a ``container.deleted`` event or a 404)."""
        row = self._row(container_id)
        row.update(status="deleted", busy=False, ended_at=row["ended_at"] or when)
        self._prune_deleted()

    def _prune_deleted(self) -> None:
        deleted = [r for r in self.rows.values() if r["status"] == "deleted"]
        if len(deleted) > _MAX_DELETED_ROWS:
            deleted.sort(key=lambda r: r["ended_at"] or 0.0)
            for row in deleted[: len(deleted) - _MAX_DELETED_ROWS]:
                del self.rows[row["id"]]

    # ------------------------------------------------------------------ events
    def apply_event(self, event: Event) -> bool:
        """Fold one event in; ``False`` when it was already seen (a replay after resuming)."""
        if event.id in self._recent_ids:
            self.duplicates += 1
            return False
        if self.last_seq is not None and event.seq <= self.last_seq:
            # Same seq, different id: the server's sequence started over (new data dir).
            self.last_seq = None
        if self.last_seq is not None and event.seq > self.last_seq + 1:
            self.gaps += 1  # events of other users, or events the server no longer has
        self.last_seq = event.seq
        self.received += 1
        self._recent_ids[event.id] = None
        if len(self._recent_ids) > _RECENT_IDS:
            self._recent_ids.popitem(last=False)
        self._fold(event)
        self._log(event)
        return True

    def _fold(self, event: Event) -> None:
        cid = event.container_id
        if not cid:
            return
        if cid not in self.rows and event.type != "container.created" and self.listed:
            return  # neither listed nor created since: deleted long ago (a replayed event)
        row = self._row(cid)
        if isinstance(event, ContainerCreatedEvent):
            if not row["name"]:
                row["name"] = event.data.name
            if row["created_at"] is None:
                row["created_at"] = event.created_at
                row["last_active_at"] = event.created_at
            row["from_pool"] = event.data.from_pool
            row["create_latency_ms"] = event.data.latency_ms
        elif isinstance(event, ContainerResolvedEvent):
            row["last_origin"] = event.data.origin
            row["last_session_id"] = event.data.session_id
            if event.data.origin in REUSE_ORIGINS:
                row["reuses"] += 1
                row["last_reused_at"] = event.created_at
        elif isinstance(event, ExecutionStartedEvent):
            if row["status"] == "running":
                row["busy"] = True
        elif isinstance(event, ExecutionCompletedEvent):
            row["last_active_at"] = max(row["last_active_at"] or 0.0, event.created_at)
        elif isinstance(event, ContainerExpiredEvent):
            if row["status"] != "deleted":
                row.update(status="expired", busy=False, ended_at=event.created_at)
        elif isinstance(event, ContainerDeletedEvent):
            self.mark_deleted(cid, event.created_at)
        elif isinstance(event, KernelRestartedEvent):
            row["restarts"] += 1

    def _log(self, event: Event) -> None:
        kind, summary = describe(event)
        execution_id = getattr(event.data, "execution_id", None)
        name = ""
        if event.container_id and event.container_id in self.rows:
            name = self.rows[event.container_id]["name"]
        entry = {
            "seq": event.seq,
            "id": event.id,
            "type": event.type,
            "kind": kind,
            "created_at": event.created_at,
            "container_id": event.container_id,
            "name": name or getattr(event.data, "name", ""),
            "summary": summary,
            "execution_id": execution_id,
            "session_id": getattr(event.data, "session_id", None),
        }
        if isinstance(event, ExecutionCompletedEvent):
            # One line per execution: its "running" line is replaced by the outcome.
            self.log = [
                e
                for e in self.log
                if not (e["type"] == "execution.started" and e["execution_id"] == execution_id)
            ]
        self.log.insert(0, entry)
        if len(self.log) > self.max_events:
            del self.log[self.max_events :]

    # ------------------------------------------------------------------ snapshots
    def containers_snapshot(self) -> list[dict[str, Any]]:
        """Return the rows, live first, then most recently active first (copies)."""

        def key(row: dict[str, Any]) -> tuple[int, float]:
            rank = {"running": 0, "expired": 1}.get(row["status"], 2)
            return rank, -(row["last_active_at"] or row["created_at"] or 0.0)

        return [dict(r) for r in sorted(self.rows.values(), key=key)]

    def events_snapshot(self) -> list[dict[str, Any]]:
        """Return the log, newest first (copies)."""
        return [dict(e) for e in self.log]
