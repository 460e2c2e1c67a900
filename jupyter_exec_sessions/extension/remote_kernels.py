"""Remote kernels (Jupyter Enterprise Gateway / Kernel Gateway): an async channel client.

With ``--ServerApp.gateway_url`` jupyter_server's kernel manager is a gateway client: kernels are
started, interrupted and shut down over the gateway's REST API. Its kernel *client*
(``GatewayKernelClient``) is not fit for a server, though: its websocket handshake carries no
``Authorization`` header (a gateway with an ``auth_token`` answers 401), a thread copies every
message into queues that ``get_msg`` polls in a busy loop, and a closed websocket is not reported.

:class:`RemoteKernelManager` wraps the server's kernel manager and hands the engine kernels
whose ``client()`` is a :class:`WebSocketKernelClient` instead: one tornado websocket per session,
opened with the gateway client's own connection arguments (auth header, TLS, timeouts), read by
one task that *pushes* each message to the engine (no polling), and that reports the end of the
connection. Everything else (start, interrupt, shutdown, models) is jupyter_server's.

This is also how kernel death is seen through a gateway: the gateway restarts a dead kernel by
itself and tells connected websockets with an IOPub ``status`` of ``restarting`` (or ``dead``
when it gave up); the engine treats both as the kernel's death.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
from collections.abc import Callable
from typing import Any

from jupyter_core.utils import ensure_async
from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

__all__ = ["RemoteKernelManager", "WebSocketKernelClient", "is_remote", "stop_despite_the_gateway"]

log = logging.getLogger(__name__)

Router = Callable[[str, dict[str, Any]], None]
Closed = Callable[[Exception], None]


def _json_default(obj: Any) -> Any:
    if isinstance(obj, datetime.datetime):
        return obj.isoformat()
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


class _Channel:
    """One channel of a websocket client: ``send`` and an async ``get_msg`` (until routed)."""

    def __init__(self, client: WebSocketKernelClient, name: str) -> None:
        self._client = client
        self.name = name
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def send(self, msg: dict[str, Any]) -> None:
        """Send one message (as built by ``Session.msg``) on this channel."""
        self._client.send(self.name, msg)

    async def get_msg(self, timeout: float | None = None) -> dict[str, Any]:
        """The next message not yet routed; ``queue.Empty`` after ``timeout`` seconds."""
        from queue import Empty

        self._client.raise_if_closed()
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            raise Empty from None


class WebSocketKernelClient:
    """The part of a kernel client the engine uses, over the gateway's kernel websocket."""

    def __init__(self, kernel_id: str, session: Any) -> None:
        self.kernel_id = kernel_id
        self.session = session
        self.shell_channel = _Channel(self, "shell")
        self.iopub_channel = _Channel(self, "iopub")
        self._ws: WebSocketClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._router: Router | None = None
        self._on_close: Closed | None = None
        self._closed_error: Exception | None = None

    # ------------------------------------------------------------------ lifecycle
    async def start_channels(self, **_: Any) -> None:
        """Open the websocket with the gateway client's connection arguments (auth, TLS)."""
        from jupyter_server.gateway.gateway_client import GatewayClient
        from jupyter_server.utils import url_escape, url_path_join

        gw = GatewayClient.instance()
        url = url_path_join(
            gw.ws_url or "", gw.kernels_endpoint, url_escape(self.kernel_id), "channels"
        )
        url += f"?session_id={url_escape(self.session.session)}"
        request = HTTPRequest(url, **gw.load_connection_args())  # type: ignore[no-untyped-call]
        self._ws = await websocket_connect(request, max_message_size=1024 * 1024 * 1024)
        # Nagle's algorithm would hold small requests back ~40 ms behind unacknowledged ones
        stream = getattr(self._ws, "stream", None)
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.set_nodelay(True)
        self._reader = asyncio.ensure_future(self._read())

    def stop_channels(self) -> None:
        """Close the websocket and stop reading."""
        if self._closed_error is None:
            self._closed_error = ConnectionError("the kernel connection was closed")
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        if self._ws is not None:
            self._ws.close()
            self._ws = None

    def set_router(self, router: Router | None, on_close: Closed | None = None) -> None:
        """Push every later message to ``router(channel, msg)``; ``on_close(error)`` at the end.

        Messages already queued for ``get_msg`` are routed first, in order.
        """
        self._router, self._on_close = router, on_close
        if router is not None:
            for channel in (self.shell_channel, self.iopub_channel):
                while not channel.queue.empty():
                    router(channel.name, channel.queue.get_nowait())

    def raise_if_closed(self) -> None:
        """Raise the reason the connection ended, if it did."""
        if self._closed_error is not None:
            raise self._closed_error

    # ------------------------------------------------------------------ messages
    def send(self, channel: str, msg: dict[str, Any]) -> None:
        """Send ``msg`` on ``channel`` (the websocket's JSON framing)."""
        self.raise_if_closed()
        assert self._ws is not None
        wire = {k: msg[k] for k in ("header", "parent_header", "metadata", "content")}
        wire["channel"] = channel
        wire["buffers"] = []
        text = json.dumps(wire, default=_json_default).replace("</", "<\\/")
        self._ws.write_message(text)

    def kernel_info(self) -> str:
        """Send a ``kernel_info_request``; returns its msg_id."""
        msg = self.session.msg("kernel_info_request", {})
        self.shell_channel.send(msg)
        return str(msg["header"]["msg_id"])

    async def _read(self) -> None:
        assert self._ws is not None
        ws = self._ws
        error: Exception = ConnectionError("the gateway closed the kernel connection")
        try:
            while True:
                raw = await ws.read_message()
                if raw is None:
                    break
                if isinstance(raw, bytes):
                    continue  # binary framing (buffers) is not requested; nothing we need
                msg = json.loads(raw)
                channel = msg.pop("channel", None)
                if channel not in ("shell", "iopub"):
                    continue
                router = self._router
                if router is None:
                    getattr(self, f"{channel}_channel").queue.put_nowait(msg)
                    continue
                try:
                    router(channel, msg)
                except Exception:
                    log.exception("routing a kernel message failed")
        except asyncio.CancelledError:
            raise
        except Exception as e:
            error = ConnectionError(f"the kernel connection failed: {e!r}")
        if self._closed_error is None:
            self._closed_error = error
        if self._on_close is not None:
            self._on_close(error)


class _RemoteKernel:
    """A gateway kernel manager whose ``client()`` is a :class:`WebSocketKernelClient`."""

    def __init__(self, kernel: Any) -> None:
        object.__setattr__(self, "_kernel", kernel)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kernel, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._kernel, name, value)  # e.g. ``last_activity`` for the server's culler

    def client(self, **_: Any) -> WebSocketKernelClient:
        """A new client of this kernel (channels not started)."""
        return WebSocketKernelClient(self._kernel.kernel_id, self._kernel.session.clone())

    async def interrupt_kernel(self) -> None:
        """Interrupt through the gateway's REST API."""
        await ensure_async(self._kernel.interrupt_kernel())

    async def is_alive(self) -> bool:
        """Whether the gateway still has the kernel (one REST call)."""
        model = await ensure_async(self._kernel.refresh_model())
        return model is not None


#: Seconds the server's own shut-down of the gateway's kernels may take before it gives up.
SHUTDOWN_ALL_TIMEOUT = 30.0


def stop_despite_the_gateway(kernel_manager: Any) -> None:
    """Let the server stop when the gateway is gone: ``shutdown_all`` never raises nor hangs.

    jupyter_server's ``ServerApp._stop`` shuts every kernel down before it stops its event
    loop; its gateway kernel manager raises from ``shutdown_all`` when the gateway refuses the
    connection, and the loop is then never stopped: SIGTERM left the server running forever.
    The wrapped ``shutdown_all`` logs the failure instead (kernels left on the gateway are shut
    down by the next start's sweep) and is bounded by :data:`SHUTDOWN_ALL_TIMEOUT`.
    """
    original = kernel_manager.shutdown_all

    async def shutdown_all(now: bool = False) -> None:
        try:
            await asyncio.wait_for(ensure_async(original(now=now)), SHUTDOWN_ALL_TIMEOUT)
        except Exception as e:
            log.warning(
                "exec-sessions: could not shut down the gateway's kernels (%r); the next start"
                " of this server shuts down the ones it left",
                e,
            )

    kernel_manager.shutdown_all = shutdown_all


def is_remote(kernel_manager: Any) -> bool:
    """Whether the server's kernels are remote (jupyter_server's gateway client in use)."""
    from jupyter_server.gateway.managers import GatewayMappingKernelManager

    return isinstance(kernel_manager, GatewayMappingKernelManager)


class RemoteKernelManager:
    """The server's gateway kernel manager, with kernels the engine can talk to over websockets.

    Every attribute but ``get_kernel`` and ``shutdown_orphan`` is the wrapped manager's.
    """

    def __init__(self, kernel_manager: Any) -> None:
        object.__setattr__(self, "_km", kernel_manager)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._km, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._km, name, value)  # e.g. ``last_kernel_activity``: the server's own

    def get_kernel(self, kernel_id: str) -> _RemoteKernel:
        """The kernel ``kernel_id`` (KeyError when the manager does not know it)."""
        return _RemoteKernel(self._km.get_kernel(kernel_id))

    async def shutdown_orphan(self, kernel_id: str) -> bool:
        """Shut down a kernel on the gateway that this manager does not know (a previous run's).

        Returns whether the gateway still had it.
        """
        from jupyter_server.gateway.gateway_client import gateway_request
        from jupyter_server.utils import url_escape, url_path_join
        from tornado.web import HTTPError

        if kernel_id in self._km:
            await ensure_async(self._km.shutdown_kernel(kernel_id, now=True))
            return True
        url = url_path_join(self._km.kernels_url, url_escape(kernel_id))
        try:
            await gateway_request(url, method="DELETE")
        except HTTPError as e:
            if e.status_code == 404:
                return False
            raise
        return True
