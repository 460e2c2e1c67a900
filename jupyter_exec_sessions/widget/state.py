"""What the session monitor shows: a pure reducer from container objects and events to rows.

No I/O and no threads here: :class:`MonitorState` is fed by the follower (``_monitor_feed``)
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

from ..models import Container, Event

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


def _conversation(data: dict[str, Any]) -> str:
    parts = []
    if data.get("session_id"):
        parts.append(f"session {_short(data['session_id'], 24)}")
    if data.get("turn_id"):
        parts.append(f"turn {_short(data['turn_id'], 16)}")
    return ", ".join(parts)


def describe(event: Event) -> tuple[str, str]:
    """Return the log ``(kind, summary)`` of an event; ``kind`` selects its style in the browser."""
    d = event.data
    t = event.type
    conv = _conversation(d)
    suffix = f" ({conv})" if conv else ""
    if t == "container.created":
        how = "from warm pool" if d.get("from_pool") else "cold start"
        lat = f" in {_ms(d['latency_ms'])}" if d.get("latency_ms") is not None else ""
        return "created", f"created, {how}{lat}"
    if t == "container.resolved":
        origin = str(d.get("origin") or "?")
        who = f" for {conv}" if conv else ""
        if origin in REUSE_ORIGINS:
            via = "conversation history" if origin == "history" else "explicit id"
            return "reused", f"REUSED{who} via {via}"
        if origin == "replaced":
            prev = f" {_short(d['previous_id'], 17)}" if d.get("previous_id") else ""
            return "replaced", f"replaced expired{prev}{who}: state lost"
        return "resolved", f"new container{who} (origin {origin})"
    if t == "execution.started":
        return "running", f"executing {_short(d.get('execution_id', ''), 17)}{suffix}"
    if t == "execution.completed":
        status = str(d.get("status") or "completed")
        dur = f" in {_ms(d['duration_ms'])}" if d.get("duration_ms") is not None else ""
        kind = "exec" if status == "completed" else "exec-failed"
        return kind, f"execution {status}{dur}{suffix}"
    if t == "container.expired":
        return "expired", "expired: kernel shut down, files kept"
    if t == "container.deleted":
        return "deleted", "deleted"
    if t == "kernel.restarted":
        reason = d.get("reason") or "unknown reason"
        return "restarted", f"kernel restarted ({reason}): state reset"
    return "other", t


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
        d = event.data
        t = event.type
        if t == "container.created":
            if d.get("name") and not row["name"]:
                row["name"] = d["name"]
            if row["created_at"] is None:
                row["created_at"] = event.created_at
                row["last_active_at"] = event.created_at
            row["from_pool"] = d.get("from_pool")
            row["create_latency_ms"] = d.get("latency_ms")
        elif t == "container.resolved":
            row["last_origin"] = d.get("origin")
            row["last_session_id"] = d.get("session_id")
            if d.get("origin") in REUSE_ORIGINS:
                row["reuses"] += 1
                row["last_reused_at"] = event.created_at
        elif t == "execution.started":
            if row["status"] == "running":
                row["busy"] = True
        elif t == "execution.completed":
            row["last_active_at"] = max(row["last_active_at"] or 0.0, event.created_at)
        elif t == "container.expired":
            if row["status"] != "deleted":
                row.update(status="expired", busy=False, ended_at=event.created_at)
        elif t == "container.deleted":
            self.mark_deleted(cid, event.created_at)
        elif t == "kernel.restarted":
            row["restarts"] += 1

    def _log(self, event: Event) -> None:
        kind, summary = describe(event)
        d = event.data
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
            "name": name or d.get("name") or "",
            "summary": summary,
            "execution_id": d.get("execution_id"),
            "session_id": d.get("session_id"),
        }
        if event.type == "execution.completed" and d.get("execution_id"):
            # One line per execution: its "running" line is replaced by the outcome.
            self.log = [
                e
                for e in self.log
                if not (e["type"] == "execution.started" and e["execution_id"] == d["execution_id"])
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
