"""SQLite registry: containers, their files, usage counters and the events log.

One file under the extension's data dir, WAL mode, used from the server's event loop thread
only (every statement is a few microseconds; nothing here awaits). Rows are the durable truth:
a container and its files survive a server restart; its kernel does not.

The bookkeeping of every execution (activity, history, counters, ``execution.*`` events) is
written behind: those statements are queued and written together in one commit shortly after
(``flush_delay_s``), or at once before any other statement runs, so every read sees every
earlier write. A commit costs far more than the statements it holds; an execution's
bookkeeping used to take four. Event ``seq`` numbers are assigned here, in memory, when the
event is appended. A server that crashes loses at most the last ``flush_delay_s`` of
bookkeeping; a clean stop writes everything (:meth:`Store.close`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ContainerRow", "EventRow", "ExecutionRow", "FileRow", "Store", "StoredFileRow"]

log = logging.getLogger("jupyter_exec_sessions")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS containers (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    owner TEXT NOT NULL,
    name TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_active_at REAL NOT NULL,
    expires_minutes INTEGER NOT NULL,
    memory_limit TEXT,
    status TEXT NOT NULL DEFAULT 'running',
    workdir TEXT NOT NULL,
    kernel_id TEXT,
    executions INTEGER NOT NULL DEFAULT 0,
    state_resets INTEGER NOT NULL DEFAULT 0,
    state_lost INTEGER NOT NULL DEFAULT 0,
    network_policy TEXT
);
CREATE INDEX IF NOT EXISTS containers_owner ON containers(owner, n);
CREATE TABLE IF NOT EXISTS tags (
    container_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (container_id, kind, value)
);
CREATE TABLE IF NOT EXISTS conversations (
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    container_id TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (owner, key)
);
CREATE TABLE IF NOT EXISTS files (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    container_id TEXT NOT NULL,
    path TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    source TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (container_id, path)
);
CREATE TABLE IF NOT EXISTS stored_files (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    owner TEXT NOT NULL,
    filename TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    purpose TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS kernels (
    kernel_id TEXT PRIMARY KEY,
    started_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS executions (
    n INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    container_id TEXT NOT NULL,
    type TEXT NOT NULL,
    status TEXT NOT NULL,
    source TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    completed_at REAL,
    session_id TEXT,
    turn_id TEXT,
    result TEXT
);
CREATE INDEX IF NOT EXISTS executions_container ON executions(container_id, n);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    type TEXT NOT NULL,
    created_at REAL NOT NULL,
    container_id TEXT,
    owner TEXT NOT NULL,
    data TEXT NOT NULL
);
"""


@dataclass
class ContainerRow:
    """One container as stored."""

    n: int
    id: str
    owner: str
    name: str
    created_at: int
    last_active_at: float
    expires_minutes: int
    memory_limit: str | None
    status: str
    workdir: str
    kernel_id: str | None
    executions: int
    state_resets: int
    state_lost: bool
    network: dict[str, Any] | None = None  # the validated network_policy, if any
    implicit: bool = False


@dataclass
class FileRow:
    """One container file as stored (``path`` is relative to the container's workdir)."""

    n: int
    id: str
    container_id: str
    path: str
    bytes: int
    source: str
    created_at: int


@dataclass
class StoredFileRow:
    """One file of the Files API (``POST /files``), owned by one user."""

    n: int
    id: str
    owner: str
    filename: str
    bytes: int
    purpose: str
    created_at: int


@dataclass
class ExecutionRow:
    """One execution of a container's history as stored.

    ``source`` is the code (python) or the list of commands (shell); ``result`` is the
    finished execution object as JSON (None while queued or running).
    """

    n: int
    id: str
    container_id: str
    type: str
    status: str
    source: str | list[str]
    created_at: float
    started_at: float | None
    completed_at: float | None
    session_id: str | None
    turn_id: str | None
    result: dict[str, Any] | None


@dataclass
class EventRow:
    """One stored event."""

    seq: int
    id: str
    type: str
    created_at: float
    container_id: str | None
    owner: str
    data: dict[str, Any]


class Store:
    """The SQLite registry. All methods are synchronous and cheap."""

    def __init__(
        self, path: Path, *, max_events: int = 10_000, flush_delay_s: float = 0.02
    ) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.max_events = max_events
        self.flush_delay_s = flush_delay_s
        self._pending: list[tuple[str, Sequence[Any]]] = []
        self._flush_timer: asyncio.TimerHandle | None = None
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        columns = {r["name"] for r in self._db.execute("PRAGMA table_info(containers)")}
        if "network_policy" not in columns:  # a registry written before network policies
            self._db.execute("ALTER TABLE containers ADD COLUMN network_policy TEXT")
        if "implicit" not in columns:  # registries written before implicit containers
            self._db.execute(
                "ALTER TABLE containers ADD COLUMN implicit INTEGER NOT NULL DEFAULT 0"
            )
        # A server holds its registry exclusively: nothing is running when it opens it.
        self._db.execute(
            "UPDATE executions SET status = 'cancelled', completed_at = COALESCE(completed_at, ?)"
            " WHERE status = 'in_progress'",
            (time.time(),),
        )
        self._events_since_prune = 0
        last = self._db.execute("SELECT MAX(seq) FROM events").fetchone()[0] or 0
        used = self._db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
        self._seq = max(int(last), int(used[0]) if used else 0)

    # ------------------------------------------------------------------ statements
    def _sql(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        """Run one statement now, after the deferred ones (so it sees their writes)."""
        if self._pending:
            self.flush()
        return self._db.execute(sql, args)

    def _defer(self, sql: str, args: Sequence[Any]) -> None:
        """Queue a write for the next commit (within ``flush_delay_s``, or before any read)."""
        self._pending.append((sql, args))
        if self._flush_timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (start-up, tools): write now
            self.flush()
            return
        self._flush_timer = loop.call_later(self.flush_delay_s, self._flush_later)

    def flush_within(self, delay_s: float) -> None:
        """Write the deferred statements within ``delay_s`` instead of ``flush_delay_s``.

        An execution that completes asks for its bookkeeping soon after its answer has left
        (not on the next request's path, and still in one commit with its start).
        """
        if not self._pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        timer = self._flush_timer
        if timer is not None:
            if timer.when() <= loop.time() + delay_s:
                return
            timer.cancel()
        self._flush_timer = loop.call_later(delay_s, self._flush_later)

    def _flush_later(self) -> None:
        self._flush_timer = None
        try:
            self.flush()
        except Exception:  # nobody waits for these writes: say that they were lost
            log.exception("exec-sessions: writing execution bookkeeping to the registry failed")

    def flush(self) -> None:
        """Write the deferred statements now, in one commit."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        pending, self._pending = self._pending, []
        if not pending:
            return
        if self._db.in_transaction:  # part of the caller's transaction
            for sql, args in pending:
                self._db.execute(sql, args)
            return
        self._db.execute("BEGIN")
        try:
            for sql, args in pending:
                self._db.execute(sql, args)
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """Group statements into one atomic commit (nested uses join the outer one)."""
        if self._db.in_transaction:
            yield
            return
        self._db.execute("BEGIN")
        try:
            self.flush()
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _page(
        self,
        table: str,
        where: list[str],
        args: list[Any],
        *,
        after: str | None,
        limit: int,
        order: str,
    ) -> tuple[list[sqlite3.Row], bool]:
        """One cursor page of ``table`` rows matching ``where``, in insertion order (``n``).

        ``after`` is the id of a row of the same owner (the first clause of ``where``, which
        takes the first of ``args``): an unknown one is an empty page. Returns the rows and
        whether more follow.
        """
        desc = order == "desc"
        clauses, values = list(where), list(args)
        if after is not None:
            r = self._sql(
                f"SELECT n FROM {table} WHERE id = ? AND {where[0]}", (after, args[0])
            ).fetchone()
            if r is None:
                return [], False
            clauses.append("n < ?" if desc else "n > ?")
            values.append(r[0])
        sql = (
            f"SELECT * FROM {table} WHERE {' AND '.join(clauses)}"
            f" ORDER BY n {'DESC' if desc else 'ASC'} LIMIT ?"
        )
        rows = self._sql(sql, [*values, limit + 1]).fetchall()
        return rows[:limit], len(rows) > limit

    def close(self) -> None:
        """Write what is deferred and close the database."""
        self.flush()
        self._db.close()

    # ------------------------------------------------------------------ kernels
    def add_kernel(self, kernel_id: str) -> None:
        """Remember a kernel this server started (until :meth:`remove_kernel`)."""
        self._sql(
            "INSERT OR REPLACE INTO kernels (kernel_id, started_at) VALUES (?, ?)",
            (kernel_id, time.time()),
        )

    def remove_kernel(self, kernel_id: str) -> None:
        """Forget a kernel: it was shut down."""
        self._sql("DELETE FROM kernels WHERE kernel_id = ?", (kernel_id,))

    def kernel_ids(self) -> list[str]:
        """Kernels started and not known to be shut down (after a crash: possibly alive)."""
        return [r[0] for r in self._sql("SELECT kernel_id FROM kernels")]

    # ------------------------------------------------------------------ containers
    def insert_container(
        self,
        *,
        id: str,
        owner: str,
        name: str,
        expires_minutes: int,
        memory_limit: str | None,
        workdir: str,
        kernel_id: str | None,
        now: float,
        network: dict[str, Any] | None = None,
        implicit: bool = False,
    ) -> ContainerRow:
        """Insert a new running container (``implicit``: made by MCP routing, evictable)."""
        self._sql(
            "INSERT INTO containers (id, owner, name, created_at, last_active_at,"
            " expires_minutes, memory_limit, workdir, kernel_id, network_policy, implicit)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                id,
                owner,
                name,
                int(now),
                now,
                expires_minutes,
                memory_limit,
                workdir,
                kernel_id,
                json.dumps(network) if network is not None else None,
                int(implicit),
            ),
        )
        row = self.get_container(id)
        assert row is not None
        return row

    def idle_implicit_containers(self, owner: str) -> list[ContainerRow]:
        """The owner's running implicit containers, least recently used first."""
        rows = self._sql(
            "SELECT * FROM containers WHERE owner = ? AND status = 'running' AND implicit = 1"
            " ORDER BY last_active_at",
            (owner,),
        ).fetchall()
        return [_container(r) for r in rows]

    # ------------------------------------------------------------------ conversations
    def conversation_container(self, owner: str, key: str) -> str | None:
        """The container id last bound to the owner's conversation ``key``, if any."""
        r = self._sql(
            "SELECT container_id FROM conversations WHERE owner = ? AND key = ?", (owner, key)
        ).fetchone()
        return str(r["container_id"]) if r else None

    def bind_conversation(self, owner: str, key: str, container_id: str, now: float) -> None:
        """Bind the owner's conversation ``key`` to a container (replacing an older binding)."""
        self._sql(
            "INSERT INTO conversations (owner, key, container_id, updated_at) VALUES (?,?,?,?)"
            " ON CONFLICT (owner, key) DO UPDATE SET container_id = excluded.container_id,"
            " updated_at = excluded.updated_at",
            (owner, key, container_id, now),
        )

    def unbind_conversation(self, owner: str, key: str) -> None:
        """Forget the owner's conversation ``key``."""
        self._sql("DELETE FROM conversations WHERE owner = ? AND key = ?", (owner, key))

    def get_container(self, id: str) -> ContainerRow | None:
        """Return the container row or ``None``."""
        r = self._sql("SELECT * FROM containers WHERE id = ?", (id,)).fetchone()
        return _container(r) if r else None

    def count_containers(self, owner: str | None = None) -> int:
        """Count running containers, of one owner or all."""
        if owner is None:
            q = self._sql("SELECT COUNT(*) FROM containers WHERE status = 'running'")
        else:
            q = self._sql(
                "SELECT COUNT(*) FROM containers WHERE status = 'running' AND owner = ?",
                (owner,),
            )
        return int(q.fetchone()[0])

    def list_containers(
        self, owner: str, *, after: str | None, limit: int, order: str, name: str | None
    ) -> tuple[list[ContainerRow], bool]:
        """A cursor page of the owner's containers and whether more follow."""
        where = ["owner = ?"]
        args: list[Any] = [owner]
        if name is not None:
            where.append("name = ?")
            args.append(name)
        rows, more = self._page("containers", where, args, after=after, limit=limit, order=order)
        return [_container(r) for r in rows], more

    def running_containers(self) -> list[ContainerRow]:
        """Every container whose status is running."""
        rows = self._sql("SELECT * FROM containers WHERE status = 'running'").fetchall()
        return [_container(r) for r in rows]

    def touch(self, id: str, now: float) -> None:
        """Refresh ``last_active_at`` of a running container (written behind)."""
        self._defer(
            "UPDATE containers SET last_active_at = ? WHERE id = ? AND status = 'running'",
            (now, id),
        )

    def set_status(self, id: str, status: str) -> None:
        """Set the container's status."""
        self._sql("UPDATE containers SET status = ? WHERE id = ?", (status, id))

    def set_kernel(self, id: str, kernel_id: str | None) -> None:
        """Record the container's current kernel."""
        self._sql("UPDATE containers SET kernel_id = ? WHERE id = ?", (kernel_id, id))

    def mark_state_lost(self, id: str) -> None:
        """Record that the container's interpreter state is gone (reported on next use)."""
        self._sql(
            "UPDATE containers SET state_lost = 1, state_resets = state_resets + 1 WHERE id = ?",
            (id,),
        )

    def take_state_lost(self, id: str) -> bool:
        """Return and clear the pending state-lost flag."""
        r = self._sql("SELECT state_lost FROM containers WHERE id = ?", (id,)).fetchone()
        if r is None or not r[0]:
            return False
        self._sql("UPDATE containers SET state_lost = 0 WHERE id = ?", (id,))
        return True

    def record_execution(
        self, id: str, *, session_id: str | None, turn_id: str | None, now: float
    ) -> None:
        """Count one execution and its conversation tags; refresh activity (written behind)."""
        self._defer(
            "UPDATE containers SET executions = executions + 1, last_active_at = ?"
            " WHERE id = ? AND status = 'running'",
            (now, id),
        )
        for kind, value in (("session", session_id), ("turn", turn_id)):
            if value:
                self._defer(
                    "INSERT OR IGNORE INTO tags (container_id, kind, value) VALUES (?,?,?)",
                    (id, kind, value),
                )

    def tag_counts(self, id: str) -> tuple[int, int]:
        """Distinct (sessions, turns) seen on the container."""
        rows = self._sql(
            "SELECT kind, COUNT(*) FROM tags WHERE container_id = ? GROUP BY kind", (id,)
        ).fetchall()
        counts = {r[0]: int(r[1]) for r in rows}
        return counts.get("session", 0), counts.get("turn", 0)

    def delete_container(self, id: str) -> None:
        """Remove the container, its files and tags."""
        with self.transaction():
            self._sql("DELETE FROM containers WHERE id = ?", (id,))
            self._sql("DELETE FROM files WHERE container_id = ?", (id,))
            self._sql("DELETE FROM tags WHERE container_id = ?", (id,))
            self._sql("DELETE FROM executions WHERE container_id = ?", (id,))

    # ------------------------------------------------------------------ executions
    def begin_execution(
        self,
        id: str,
        container_id: str,
        *,
        type: str,
        source: str | list[str],
        created_at: float,
        started_at: float,
        session_id: str | None,
        turn_id: str | None,
        keep: int,
    ) -> None:
        """Record a started execution; keep the container's ``keep`` newest (written behind)."""
        self._defer(
            "INSERT INTO executions (id, container_id, type, status, source, created_at,"
            " started_at, session_id, turn_id) VALUES (?,?,?,'in_progress',?,?,?,?,?)",
            (
                id,
                container_id,
                type,
                json.dumps(source),
                created_at,
                started_at,
                session_id,
                turn_id,
            ),
        )
        # everything older than the keep-th newest (an index range, no temporary table)
        self._defer(
            "DELETE FROM executions WHERE container_id = ?1 AND n < (SELECT n FROM executions"
            " WHERE container_id = ?1 ORDER BY n DESC LIMIT 1 OFFSET ?2)",
            (container_id, max(keep, 1) - 1),
        )

    def finish_execution(self, id: str, *, status: str, completed_at: float, result: str) -> None:
        """Record how a started execution ended: its execution object as JSON (written behind)."""
        self._defer(
            "UPDATE executions SET status = ?, completed_at = ?, result = ? WHERE id = ?",
            (status, completed_at, result, id),
        )

    def list_executions(
        self, container_id: str, *, after: str | None, limit: int, order: str
    ) -> tuple[list[ExecutionRow], bool]:
        """A cursor page of the container's recorded executions and whether more follow."""
        where = ["container_id = ?"]
        rows, more = self._page(
            "executions", where, [container_id], after=after, limit=limit, order=order
        )
        return [_execution(r) for r in rows], more

    def newest_execution_ids(self, container_id: str, count: int) -> set[str]:
        """Ids of the container's ``count`` most recent executions."""
        rows = self._sql(
            "SELECT id FROM executions WHERE container_id = ? ORDER BY n DESC LIMIT ?",
            (container_id, count),
        ).fetchall()
        return {str(r[0]) for r in rows}

    def get_execution(self, container_id: str, id: str) -> ExecutionRow | None:
        """One recorded execution of the container."""
        r = self._sql(
            "SELECT * FROM executions WHERE id = ? AND container_id = ?", (id, container_id)
        ).fetchone()
        return _execution(r) if r is not None else None

    # ------------------------------------------------------------------ files
    def upsert_file(
        self, *, id: str, container_id: str, path: str, size: int, source: str, now: float
    ) -> FileRow:
        """Insert a file, or update its size/source if the path is already known."""
        self._sql(
            "INSERT INTO files (id, container_id, path, bytes, source, created_at)"
            " VALUES (?,?,?,?,?,?) ON CONFLICT (container_id, path) DO UPDATE SET"
            " bytes = excluded.bytes, source = excluded.source",
            (id, container_id, path, size, source, int(now)),
        )
        r = self._sql(
            "SELECT * FROM files WHERE container_id = ? AND path = ?", (container_id, path)
        ).fetchone()
        return _file(r)

    def files_of(self, container_id: str) -> list[FileRow]:
        """Every known file of the container, oldest first."""
        rows = self._sql(
            "SELECT * FROM files WHERE container_id = ? ORDER BY n", (container_id,)
        ).fetchall()
        return [_file(r) for r in rows]

    def get_file(self, container_id: str, file_id: str) -> FileRow | None:
        """Return the file row or ``None``."""
        r = self._sql(
            "SELECT * FROM files WHERE container_id = ? AND id = ?", (container_id, file_id)
        ).fetchone()
        return _file(r) if r else None

    def sync_files(
        self,
        container_id: str,
        present: dict[str, int],
        new_id: Any,
        now: float,
        *,
        complete: bool = True,
    ) -> None:
        """Make the file rows match ``present`` (relpath -> size): new paths are ``assistant``.

        With ``complete`` false (the directory walk stopped at its cap) rows whose paths were
        not seen are kept: a capped walk proves nothing about the files it did not reach.
        """
        known = {f.path: f for f in self.files_of(container_id)}
        with self.transaction():
            for path, f in known.items():
                if path not in present and not complete:
                    continue
                if path not in present:
                    self._sql("DELETE FROM files WHERE n = ?", (f.n,))
                elif present[path] != f.bytes:
                    self._sql("UPDATE files SET bytes = ? WHERE n = ?", (present[path], f.n))
            for path, size in present.items():
                if path not in known:
                    self._sql(
                        "INSERT INTO files (id, container_id, path, bytes, source, created_at)"
                        " VALUES (?,?,?,?,?,?)",
                        (new_id(), container_id, path, size, "assistant", int(now)),
                    )

    def delete_file(self, container_id: str, file_id: str) -> None:
        """Forget one file."""
        self._sql("DELETE FROM files WHERE container_id = ? AND id = ?", (container_id, file_id))

    def update_file_size(self, container_id: str, file_id: str, size: int) -> None:
        """Record a file's current size."""
        self._sql(
            "UPDATE files SET bytes = ? WHERE container_id = ? AND id = ?",
            (size, container_id, file_id),
        )

    # ------------------------------------------------------------------ stored files
    def insert_stored_file(
        self, *, id: str, owner: str, filename: str, size: int, purpose: str, now: float
    ) -> StoredFileRow:
        """Record a file of the Files API."""
        self._sql(
            "INSERT INTO stored_files (id, owner, filename, bytes, purpose, created_at)"
            " VALUES (?,?,?,?,?,?)",
            (id, owner, filename, size, purpose, int(now)),
        )
        row = self.get_stored_file(owner, id)
        assert row is not None
        return row

    def get_stored_file(self, owner: str, id: str) -> StoredFileRow | None:
        """The owner's stored file, or ``None`` (also for another owner's id)."""
        r = self._sql(
            "SELECT * FROM stored_files WHERE id = ? AND owner = ?", (id, owner)
        ).fetchone()
        return StoredFileRow(**dict(r)) if r else None

    def list_stored_files(
        self, owner: str, *, after: str | None, limit: int, order: str, purpose: str | None
    ) -> tuple[list[StoredFileRow], bool]:
        """A cursor page of the owner's stored files and whether more follow."""
        where: list[str] = ["owner = ?"]
        args: list[Any] = [owner]
        if purpose is not None:
            where.append("purpose = ?")
            args.append(purpose)
        rows, more = self._page("stored_files", where, args, after=after, limit=limit, order=order)
        return [StoredFileRow(**dict(r)) for r in rows], more

    def delete_stored_file(self, owner: str, id: str) -> None:
        """Forget a stored file."""
        self._sql("DELETE FROM stored_files WHERE id = ? AND owner = ?", (id, owner))

    # ------------------------------------------------------------------ events
    def append_event(
        self,
        *,
        id: str,
        type: str,
        container_id: str | None,
        owner: str,
        data: dict[str, Any],
        now: float | None = None,
    ) -> EventRow:
        """Append an event (written behind); its ``seq`` is assigned here and only grows."""
        created = time.time() if now is None else now
        self._seq += 1
        seq = self._seq
        self._defer(
            "INSERT INTO events (seq, id, type, created_at, container_id, owner, data)"
            " VALUES (?,?,?,?,?,?,?)",
            (seq, id, type, created, container_id, owner, json.dumps(data)),
        )
        self._events_since_prune += 1
        if self._events_since_prune >= 500:
            self._events_since_prune = 0
            self._defer("DELETE FROM events WHERE seq <= ?", (seq - self.max_events,))
        return EventRow(seq, id, type, created, container_id, owner, data)

    def events_after(self, owner: str, seq: int, limit: int = 1000) -> list[EventRow]:
        """The owner's stored events with ``seq`` greater than the given one."""
        rows = self._sql(
            "SELECT * FROM events WHERE owner = ? AND seq > ? ORDER BY seq LIMIT ?",
            (owner, seq, limit),
        ).fetchall()
        return [
            EventRow(
                r["seq"],
                r["id"],
                r["type"],
                r["created_at"],
                r["container_id"],
                r["owner"],
                json.loads(r["data"]),
            )
            for r in rows
        ]


def _container(r: sqlite3.Row) -> ContainerRow:
    return ContainerRow(
        n=r["n"],
        id=r["id"],
        owner=r["owner"],
        name=r["name"],
        created_at=r["created_at"],
        last_active_at=r["last_active_at"],
        expires_minutes=r["expires_minutes"],
        memory_limit=r["memory_limit"],
        status=r["status"],
        workdir=r["workdir"],
        kernel_id=r["kernel_id"],
        executions=r["executions"],
        state_resets=r["state_resets"],
        state_lost=bool(r["state_lost"]),
        network=json.loads(r["network_policy"]) if r["network_policy"] else None,
        implicit=bool(r["implicit"]),
    )


def _file(r: sqlite3.Row) -> FileRow:
    return FileRow(
        n=r["n"],
        id=r["id"],
        container_id=r["container_id"],
        path=r["path"],
        bytes=r["bytes"],
        source=r["source"],
        created_at=r["created_at"],
    )


def _execution(r: sqlite3.Row) -> ExecutionRow:
    return ExecutionRow(
        n=r["n"],
        id=r["id"],
        container_id=r["container_id"],
        type=r["type"],
        status=r["status"],
        source=json.loads(r["source"]),
        created_at=r["created_at"],
        started_at=r["started_at"],
        completed_at=r["completed_at"],
        session_id=r["session_id"],
        turn_id=r["turn_id"],
        result=json.loads(r["result"]) if r["result"] else None,
    )
