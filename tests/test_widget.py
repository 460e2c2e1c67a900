"""SessionMonitor against real servers: containers, counters, reuse, deletion, expiry, resume.

The widget runs in this (kernel-less) test process; its follower thread talks HTTP/SSE to a real
``jupyter server`` subprocess. Every wait polls the widget's synced state with a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import nbformat
import pytest
from helpers import ROOT, RunningServer, create_container, sse_events, wait_until
from nbclient import NotebookClient

from jupyter_exec_sessions import SessionMonitor
from jupyter_exec_sessions._contract import ENV_TOKEN, ENV_URL
from jupyter_exec_sessions.widget import discover_server


def row(monitor: SessionMonitor, cid: str) -> dict[str, Any]:
    return monitor.container(cid) or {}


def execute(http: httpx.Client, cid: str, code: str = "1+1", **metadata: str) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "python", "code": code}
    if metadata:
        body["metadata"] = metadata
    r = http.post(f"containers/{cid}/executions", json=body)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


@pytest.fixture
def monitor(server: RunningServer) -> Iterator[SessionMonitor]:
    m = SessionMonitor(url=server.url, token=server.token)
    yield m
    m.close()


def test_a_container_created_from_outside_appears_in_the_monitor(
    server: RunningServer, monitor: SessionMonitor
) -> None:
    wait_until(lambda: monitor.status == "live", what="the feed to be live")
    cid = create_container(server, "appears-quickly")
    # The row comes from the event at once, then the server's container object fills it.
    wait_until(lambda: row(monitor, cid).get("name") == "appears-quickly", what="the row")
    wait_until(lambda: row(monitor, cid).get("expires_minutes") == 20, what="the full row")
    r = row(monitor, cid)
    assert r["status"] == "running"
    assert r["created_at"] is not None and r["kernel_id"]
    entry = wait_until(
        lambda: next(
            (
                e
                for e in monitor.events
                if e["type"] == "container.created" and e["container_id"] == cid
            ),
            None,
        ),
        what="the created log entry",
    )
    assert entry["summary"].startswith("created, ")
    assert r["from_pool"] in (True, False)


def test_executions_update_the_container_counters_sessions_and_turns(
    server: RunningServer, monitor: SessionMonitor
) -> None:
    with server.http() as http:
        cid = create_container(server, "counters")
        execute(http, cid, "x = 1", session_id="conv-a", turn_id="a-1")
        execute(http, cid, "x + 1", session_id="conv-a", turn_id="a-2")
        execute(http, cid, "1/0", session_id="conv-b", turn_id="b-1")
        expected = server.http().get(f"containers/{cid}").json()["exec_sessions"]
    assert expected["executions"] == 3
    wait_until(
        lambda: row(monitor, cid).get("executions") == 3 and row(monitor, cid).get("turns") == 3,
        what="exact counters",
    )
    r = row(monitor, cid)
    assert (r["sessions"], r["turns"], r["busy"]) == (expected["sessions"], 3, False)
    assert r["kernel_id"] == expected["kernel_id"]
    mine = [e for e in monitor.events if e["container_id"] == cid]
    completed = [e for e in mine if e["type"] == "execution.completed"]
    assert len(completed) == 3
    assert not [e for e in mine if e["type"] == "execution.started"], "running lines replaced"
    assert "execution failed" in completed[0]["summary"]  # newest first: the 1/0
    assert completed[0]["kind"] == "exec-failed"
    assert "session conv-b" in completed[0]["summary"]
    assert " ms" in completed[2]["summary"]


def test_reuse_is_counted_and_highlighted_when_a_conversation_is_given_an_existing_container(
    server: RunningServer, monitor: SessionMonitor
) -> None:
    with server.http() as http:
        cid = create_container(server, "reused")
        for origin in ("created", "history", "explicit"):
            r = http.post(
                f"containers/{cid}/resolutions", json={"origin": origin, "session_id": "conv-r"}
            )
            assert r.status_code == 200, r.text
    wait_until(lambda: row(monitor, cid).get("reuses") == 2, what="two reuses")
    assert row(monitor, cid)["last_origin"] == "explicit"
    resolved = [
        e for e in monitor.events if e["container_id"] == cid and e["type"] == "container.resolved"
    ]
    assert [e["kind"] for e in resolved] == ["reused", "reused", "resolved"]
    assert resolved[0]["summary"] == "REUSED for session conv-r via explicit id"
    assert resolved[1]["summary"] == "REUSED for session conv-r via conversation history"


def test_a_deleted_container_stays_visible_as_deleted_with_a_log_entry(
    server: RunningServer, monitor: SessionMonitor
) -> None:
    with server.http() as http:
        cid = create_container(server, "to-delete")
        wait_until(lambda: row(monitor, cid).get("status") == "running", what="the row")
        assert http.delete(f"containers/{cid}").status_code == 200
    wait_until(lambda: row(monitor, cid).get("status") == "deleted", what="deleted status")
    assert row(monitor, cid)["ended_at"] is not None
    assert any(
        e["type"] == "container.deleted" and e["container_id"] == cid for e in monitor.events
    )
    assert monitor.containers[-1]["status"] != "running"  # ended rows sort after live ones


def test_an_expired_container_shows_as_expired(
    start_server: Callable[..., RunningServer],
) -> None:
    srv = start_server(pool_size=1, minute_seconds=1, reaper_interval=0.1)
    m = SessionMonitor(url=srv.url, token=srv.token)
    try:
        expires = {"anchor": "last_active_at", "minutes": 1}
        cid = create_container(srv, "short-lived", expires_after=expires)
        wait_until(lambda: row(m, cid).get("status") == "expired", 15, "expired status")
        assert not row(m, cid)["busy"]
        assert row(m, cid)["ended_at"] is not None
        entry = next(e for e in m.events if e["container_id"] == cid and e["kind"] == "expired")
        assert entry["summary"] == "expired: kernel shut down, files kept"
    finally:
        m.close()


def test_the_event_log_is_bounded_and_newest_first(server: RunningServer) -> None:
    m = SessionMonitor(url=server.url, token=server.token, max_events=4)
    try:
        with server.http() as http:
            cid = create_container(server, "bounded-log")
            for i in range(5):
                execute(http, cid, f"{i}")
        wait_until(lambda: row(m, cid).get("executions") == 5, what="five executions")
        wait_until(lambda: m.last_seq >= 0 and m.events[0]["seq"] == m.last_seq, what="latest")
        assert len(m.events) == 4
        seqs = [e["seq"] for e in m.events]
        assert seqs == sorted(seqs, reverse=True)
    finally:
        m.close()


def test_close_stops_the_follower_and_marks_the_monitor_closed(server: RunningServer) -> None:
    m = SessionMonitor(url=server.url, token=server.token)
    wait_until(lambda: m.status == "live", what="live")
    assert m.following
    m.close()
    assert not m.following
    assert m.status == "closed"


def test_a_wrong_token_shows_an_authentication_error_instead_of_data(
    server: RunningServer,
) -> None:
    m = SessionMonitor(url=server.url, token="not-the-token")
    try:
        wait_until(lambda: m.status == "error", what="error status")
        assert "403" in m.error or "401" in m.error
        assert m.containers == []
    finally:
        m.close()


# --------------------------------------------------------------------------- discovery
def test_without_arguments_the_monitor_uses_the_environment_url_and_token(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_URL, server.api_base)
    monkeypatch.setenv(ENV_TOKEN, server.token)
    m = SessionMonitor()
    try:
        assert m.connection.base_url == server.url
        assert m.server_url == server.url
        wait_until(lambda: m.status == "live", what="live via environment")
    finally:
        m.close()


def test_without_arguments_the_monitor_finds_the_running_server_whose_root_contains_the_cwd(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_URL, raising=False)
    monkeypatch.delenv(ENV_TOKEN, raising=False)
    runtime_dir = server.root_dir.parent / "runtime"
    assert list(runtime_dir.glob("jpserver-*.json")), "the server wrote its info file"
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(runtime_dir))
    monkeypatch.chdir(server.root_dir)
    conn = discover_server()
    assert (conn.base_url, conn.token) == (server.url, server.token)
    assert "root_dir" in conn.source
    # A URL without a token picks the token up from the matching running server.
    assert discover_server(url=server.url).token == server.token


def test_discovery_explains_what_to_pass_when_no_server_is_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_URL, raising=False)
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path))
    with pytest.raises(LookupError, match=re.escape("SessionMonitor(url=..., token=...)")):
        SessionMonitor()


# --------------------------------------------------------------------------- resume
class TcpProxy:
    """A loopback TCP relay whose connections the test can cut, and whose upstream can move."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.refusing = False
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._socks: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self.refusing:
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                self._close(s)

    def _close(self, s: socket.socket) -> None:
        with self._lock:
            self._socks.discard(s)
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()

    def cut(self) -> None:
        """Drop every open connection (the peer sees the stream end)."""
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            self._close(s)

    def close(self) -> None:
        self._listener.close()
        self.cut()


def events_until(srv: RunningServer, marker_session: str) -> list[dict[str, Any]]:
    """The server's event history for this user, read from the feed up to a marker event."""
    events: list[dict[str, Any]] = []
    with (
        httpx.Client(headers=srv.headers, timeout=10) as http,
        http.stream("GET", f"{srv.api_base}/events", params={"after": "0"}) as r,
    ):
        for sse in sse_events(r.iter_lines()):
            events.append(json.loads(sse.data))
            if events[-1]["data"].get("session_id") == marker_session:
                return events
    raise AssertionError("the feed ended before the marker event")


def test_the_follower_resumes_after_drops_and_a_server_restart_without_duplicates_or_gaps(
    start_server: Callable[..., RunningServer],
) -> None:
    srv = start_server(pool_size=1)
    proxy = TcpProxy(srv.port)
    m = SessionMonitor(url=proxy.url, token=srv.token)
    try:
        with srv.http() as http:
            first = create_container(srv, "before-cut")
            execute(http, first, "y = 1")
            wait_until(lambda: row(m, first).get("executions") == 1, what="first container")
            assert m.connections == 1

            # 1. The connection drops and stays down while things happen.
            proxy.refusing = True
            proxy.cut()
            wait_until(lambda: m.status in ("reconnecting", "error"), what="the drop noticed")
            during = create_container(srv, "during-cut")
            execute(http, during, "2+2", session_id="s", turn_id="t")
            execute(http, first, "y + 1")
            proxy.refusing = False
            wait_until(lambda: row(m, during).get("executions") == 1, what="missed events replayed")
            wait_until(lambda: row(m, first).get("executions") == 2, what="missed execution")
            assert m.connections >= 2

        # 2. The server itself goes away and comes back on the same data dir.
        srv.stop()
        wait_until(lambda: m.status in ("reconnecting", "error"), what="the server loss noticed")
        again = start_server(data_dir=srv.data_dir, token=srv.token, pool_size=1)
        proxy.upstream_port = again.port
        with again.http() as http:
            after = create_container(again, "after-restart")
            execute(http, after, "3+3")
            wait_until(lambda: row(m, after).get("executions") == 1, 20, "events after restart")
            wait_until(lambda: m.status == "live", what="live again")

            # A marker event: everything before it must have reached the monitor.
            http.post(
                f"containers/{after}/resolutions",
                json={"origin": "explicit", "session_id": "marker"},
            )
        history = events_until(again, "marker")
        seqs = [e["seq"] for e in history]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "server seqs are contiguous"
        wait_until(lambda: m.last_seq == seqs[-1], what="the last event")
        assert (m.received, m.duplicates, m.gaps) == (len(history), 0, 0)
        logged = {e["seq"] for e in m.events}
        for ev in history:
            if ev["type"] != "execution.started":
                assert ev["seq"] in logged, ev
        assert row(m, first)["name"] == "before-cut"  # rows from before survive the resume
    finally:
        m.close()
        proxy.close()


# --------------------------------------------------------------------------- example notebook
# The kernel nbclient starts is not launched by the server, so the notebook finds it through
# JUPYTER_EXEC_SESSIONS_URL / JUPYTER_EXEC_SESSIONS_TOKEN, exactly as documented.
DEMO = ROOT / "notebooks" / "session_monitor_demo.ipynb"


def text_of(outputs: list[Any]) -> str:
    parts = []
    for out in outputs:
        if out.get("output_type") == "stream":
            parts.append(out["text"])
        elif "data" in out:
            parts.append(out["data"].get("text/plain", ""))
    return "".join(parts)


def test_the_demo_notebook_runs_against_a_server_and_shows_reuse_in_the_monitor(
    server: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = nbformat.read(DEMO, as_version=4)  # type: ignore[no-untyped-call]
    monkeypatch.setenv("JUPYTER_EXEC_SESSIONS_URL", server.url)
    monkeypatch.setenv("JUPYTER_EXEC_SESSIONS_TOKEN", server.token)
    client = NotebookClient(
        nb,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(DEMO.parent)}},
        env=dict(os.environ),
    )
    client.execute()
    outputs = "\n".join(text_of(c.get("outputs", [])) for c in nb.cells if c.cell_type == "code")
    assert "containers API at " + server.api_base in outputs
    assert "42" in outputs  # the second turn saw the first turn's state
    assert "ZeroDivisionError" in outputs and "-> failed" in outputs
    widget_views = [
        o
        for c in nb.cells
        for o in c.get("outputs", [])
        if "application/vnd.jupyter.widget-view+json" in o.get("data", {})
    ]
    assert widget_views, "the monitor is displayed"
    with server.http() as http:
        names = {c["name"] for c in http.get("containers", params={"limit": 100}).json()["data"]}
    assert not {"demo-alpha", "demo-beta"} & names, "the notebook cleans up after itself"
