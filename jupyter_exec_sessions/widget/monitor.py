"""``SessionMonitor``: a live view of containers, executions and session reuse.

An anywidget (plain ESM in ``static/``, no bundler). All it shows lives in synced traits, so a
saved notebook keeps the last state and the state is readable from Python
(``monitor.containers``, ``monitor.events``). A background follower (a daemon thread with its
own asyncio loop, see ``widget.feed``) reads the containers list and follows the events feed,
resuming with ``Last-Event-ID`` after a dropped connection; it never blocks the kernel.

Which server (first match wins):

1. ``SessionMonitor(url=..., token=...)`` — ``url`` is the Jupyter server's base URL
   (``http://host:8888/``) or the API base (``…/exec-sessions/v1``). Works from any process.
2. Environment ``JUPYTER_EXEC_SESSIONS_URL`` / ``JUPYTER_EXEC_SESSIONS_TOKEN``.
3. Running-server discovery (``jupyter_server.serverapp.list_running_servers()``, the
   ``jpserver-*.json`` files of the runtime dir): the server whose ``pid`` is this kernel's
   parent (``JPY_PARENT_PID``, set by jupyter_client when a server launches a local kernel, or
   ``os.getppid()``); else the server whose ``root_dir`` contains the current directory (the
   deepest); else the only running server. Otherwise it raises ``LookupError`` saying what to
   pass. Kernels on a remote gateway cannot see the server's runtime dir: use 1 or 2.

When ``token`` is not given it comes from the environment or from the discovered server's
info file (a server using only a password cannot be discovered: pass a token).

Thread safety: traits are only ever assigned whole (new lists), from the follower thread, under
a lock and inside ``hold_sync`` so each update is one comm message. ipykernel sends comm
messages from any thread through its IOPub thread (each thread gets its own pipe), which is
what ipywidgets documents for updating widgets from a background thread; so the view stays
live even while the kernel is busy running a cell.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anywidget
import traitlets
from jupyter_core.paths import jupyter_runtime_dir

from .._contract import API_PATH, ENV_TOKEN, ENV_URL
from .feed import Follower, Snapshot

__all__ = ["ServerConnection", "SessionMonitor", "discover_server"]

_STATIC = Path(__file__).parent / "static"
_API_SUFFIX = "/" + API_PATH


@dataclass(frozen=True)
class ServerConnection:
    """Where the monitor connects: the server's base URL, its token and how it was found."""

    base_url: str
    token: str
    source: str

    @property
    def api_base(self) -> str:
        """The containers API base, ``{base_url}exec-sessions/v1`` (no trailing slash)."""
        return self.base_url.rstrip("/") + _API_SUFFIX


def _base_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if url.endswith(_API_SUFFIX):
        url = url[: -len(_API_SUFFIX)]
    return url + "/"


def _same_server(a: str, b: str) -> bool:
    sa, sb = urlsplit(a), urlsplit(b)
    local = {"localhost", "127.0.0.1", "::1", "0.0.0.0", ""}
    host_a, host_b = sa.hostname or "", sb.hostname or ""
    same_host = host_a == host_b or (host_a in local and host_b in local)
    return same_host and sa.port == sb.port and sa.path.rstrip("/") == sb.path.rstrip("/")


def _running_servers() -> list[dict[str, Any]]:
    """The ``jpserver-*.json`` files of live Jupyter servers in the runtime directory.

    What ``jupyter_server.serverapp.list_running_servers`` reads, without importing the server
    (and tornado) into a kernel.
    """
    servers = []
    for path in sorted(Path(jupyter_runtime_dir()).glob("jpserver-*.json")):
        with contextlib.suppress(OSError, ValueError):
            info = json.loads(path.read_text())
            if isinstance(info, dict) and _pid_alive(info.get("pid")):
                servers.append(info)
    return servers


def _pid_alive(pid: object) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pick_server(servers: list[dict[str, Any]]) -> tuple[dict[str, Any], str] | None:
    parents = {os.getppid()}
    if os.environ.get("JPY_PARENT_PID", "").isdigit():
        parents.add(int(os.environ["JPY_PARENT_PID"]))
    for info in servers:
        if info.get("pid") in parents:
            return info, "the server that launched this kernel"
    cwd = Path.cwd().resolve()
    containing = []
    for info in servers:
        root = Path(str(info.get("root_dir") or "/nonexistent")).resolve()
        if cwd == root or root in cwd.parents:
            containing.append((len(root.parts), info))
    if containing:
        containing.sort(key=lambda pair: pair[0])
        return containing[-1][1], "the server whose root_dir contains the current directory"
    if len(servers) == 1:
        return servers[0], "the only running Jupyter server"
    return None


def discover_server(url: str | None = None, token: str | None = None) -> ServerConnection:
    """Find the server to monitor (rules in the module docstring); raises ``LookupError``."""
    env_token = os.environ.get(ENV_TOKEN)
    if url:
        base = _base_url(url)
        if token is None and env_token is None:
            for info in _running_servers():
                if _same_server(str(info.get("url", "")), base):
                    return ServerConnection(base, str(info.get("token") or ""), "argument")
        return ServerConnection(base, token if token is not None else env_token or "", "argument")
    if os.environ.get(ENV_URL):
        tok = token if token is not None else env_token or ""
        return ServerConnection(_base_url(os.environ[ENV_URL]), tok, f"${ENV_URL}")
    servers = _running_servers()
    picked = _pick_server(servers)
    if picked is None:
        found = ", ".join(str(s.get("url")) for s in servers) or "none"
        raise LookupError(
            "SessionMonitor could not tell which Jupyter server to monitor (running servers: "
            f"{found}). Pass SessionMonitor(url=..., token=...) or set {ENV_URL} and {ENV_TOKEN}."
        )
    info, why = picked
    tok = token if token is not None else env_token or str(info.get("token") or "")
    return ServerConnection(_base_url(str(info["url"])), tok, why)


class SessionMonitor(anywidget.AnyWidget):
    """Live table of containers and log of lifecycle/reuse events of one server.

    ``SessionMonitor()`` finds the server it runs under; ``SessionMonitor(url, token)`` works
    from any Python process. ``close()`` stops the background follower.
    """

    _esm = _STATIC / "monitor.js"
    _css = _STATIC / "monitor.css"

    #: The monitored server's base URL (shown in the header).
    server_url = traitlets.Unicode("").tag(sync=True)
    #: ``connecting`` | ``live`` | ``reconnecting`` | ``error`` | ``closed``.
    status = traitlets.Unicode("connecting").tag(sync=True)
    #: Why the feed is not live (empty when it is).
    error = traitlets.Unicode("").tag(sync=True)
    #: One dict per container (fields in ``widget.state``), live ones first.
    containers = traitlets.List(traitlets.Dict()).tag(sync=True)
    #: The event log, newest first, at most ``max_events`` entries.
    events = traitlets.List(traitlets.Dict()).tag(sync=True)
    #: Bound of the event log.
    max_events = traitlets.Int(200).tag(sync=True)
    #: ``seq`` of the last event processed (``-1`` before the first).
    last_seq = traitlets.Int(-1).tag(sync=True)
    #: Events processed, replays dropped, and jumps in ``seq`` (other users' events).
    received = traitlets.Int(0).tag(sync=True)
    duplicates = traitlets.Int(0).tag(sync=True)
    gaps = traitlets.Int(0).tag(sync=True)
    #: Successful connections to the events feed (``> 1`` after a resume).
    connections = traitlets.Int(0).tag(sync=True)
    #: Unix time of the last update from the follower.
    updated_at = traitlets.Float(0.0).tag(sync=True)

    def __init__(
        self,
        url: str | None = None,
        token: str | None = None,
        *,
        max_events: int = 200,
        **kwargs: Any,
    ) -> None:
        self.connection = discover_server(url, token)
        super().__init__(server_url=self.connection.base_url, max_events=max_events, **kwargs)
        self._lock = threading.Lock()
        self._follower = Follower(
            self.connection.api_base,
            self.connection.token,
            self._on_snapshot,
            max_events=max_events,
        )
        self._follower.start()

    @traitlets.observe("max_events")
    def _max_events_changed(self, change: dict[str, Any]) -> None:
        follower = getattr(self, "_follower", None)
        if follower is not None:
            follower.state.max_events = max(1, int(change["new"]))

    def _on_snapshot(self, snap: Snapshot) -> None:
        with self._lock, self.hold_sync():
            self.set_trait("status", snap.status)
            self.set_trait("error", snap.error)
            self.set_trait("containers", snap.containers)
            self.set_trait("events", snap.events)
            self.set_trait("last_seq", snap.last_seq)
            self.set_trait("received", snap.received)
            self.set_trait("duplicates", snap.duplicates)
            self.set_trait("gaps", snap.gaps)
            self.set_trait("connections", snap.connections)
            self.set_trait("updated_at", snap.updated_at)

    @property
    def following(self) -> bool:
        """Whether the background follower is running."""
        follower = getattr(self, "_follower", None)
        return follower is not None and follower.alive

    def container(self, container_id: str) -> dict[str, Any] | None:
        """Return the row of one container, or ``None``."""
        return next((row for row in self.containers if row["id"] == container_id), None)

    def close(self) -> None:
        """Stop the background follower and close the widget (its views disappear)."""
        follower = getattr(self, "_follower", None)
        if follower is not None:
            follower.stop()
        super().close()
