"""The streamable-HTTP MCP endpoint inside the Jupyter server: a tornado → ASGI bridge.

``{base_url}exec-sessions/mcp`` serves the MCP SDK's streamable-HTTP session manager on the
server's own port, behind the server's authentication (``Authorization: Bearer <token>``).
Each request's ASGI scope is built from the tornado request; ``receive()`` yields the body once
and then waits for the connection to close; ``send()`` sets status and headers and writes and
flushes every body chunk (with TCP_NODELAY). The authenticated owner goes into the scope
(``scope["user"]`` binds each MCP session to the owner that opened it; ``scope[OWNER_SCOPE_KEY]``
picks the backend), and the tools call the container service in-process: no HTTP hop.

A request without a progress token is answered as ``application/json`` instead of an SSE
stream (both are valid streamable-HTTP answers): clients that stop reading an SSE body at the
answer keep their keep-alive connection, and the SDK skips its per-request SSE machinery. The
SDK is asked for a JSON answer per request (:class:`_JSONWhenAsked`; ``initialize`` excepted);
where it still streams one (``initialize``), a stream that turns out to be the answer alone is
sent as JSON by the bridge.

Wiring in ``app.py`` (``ExtensionApp`` prepends ``base_url`` to the handler pattern)::

    from .mcp import MCPEndpoint

    def initialize_handlers(self) -> None:
        self.mcp_endpoint = MCPEndpoint(self.service, owner_of=request_owner)
        self.handlers.extend(self.mcp_endpoint.handlers())

    async def _start_jupyter_server_extension(self, serverapp) -> None:
        await self.mcp_endpoint.start()     # holds the SDK's session_manager.run() open

    async def stop_extension(self) -> None:
        await self.mcp_endpoint.stop()

``owner_of(handler) -> str`` is the rule the REST handlers use to name the owner passed to
``service.for_user`` (``base.owner_of``), so both faces agree on who owns what.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, MutableMapping
from contextvars import ContextVar
from typing import Any, Protocol

import anyio
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.auth.provider import AccessToken
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from tornado import web
from tornado.iostream import StreamClosedError

from .._contract import AUTH_RESOURCE, MCP_PATH, ContainerBackend, ConversationBackend
from ..mcp_server import OWNER_SCOPE_KEY, create_mcp_server
from ..mcp_server.routing import SESSION_PREFIX
from .base import authorized_to_execute
from .body import GuardedBody
from .jsoncheck import json_problem

__all__ = ["MCPEndpoint", "MCPHandler"]


OwnerOf = Callable[[Any], str]

log = logging.getLogger("jupyter_exec_sessions")


class _Backend(ContainerBackend, ConversationBackend, Protocol):
    """The per-owner view of the service: execution and conversation containers."""


class _Service(Protocol):
    """The part of ``ContainerService`` the endpoint uses."""

    def for_user(self, owner: str) -> _Backend:
        """The per-owner backend."""
        ...


class _ClientRaceFilter(logging.Filter):
    """Keep the SDK's tracebacks for a client racing its own session's end out of the log.

    A client that cancels a call and closes its session at once (``notifications/cancelled``
    then ``DELETE``) can have its last POST reach a session whose streams are already closed;
    the SDK logs that ``ClosedResourceError`` with a traceback. It is the client's race, not a
    server fault: it is logged at debug level, without the traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Drop (to debug) records whose exception is a closed or broken stream."""
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, (anyio.ClosedResourceError, anyio.BrokenResourceError)):
            log.debug("MCP: a request raced its session's end (%s)", record.getMessage())
            return False
        return True


def _quiet_client_races() -> None:
    sdk = logging.getLogger("mcp.server.streamable_http")
    if not any(isinstance(f, _ClientRaceFilter) for f in sdk.filters):
        sdk.addFilter(_ClientRaceFilter())


#: True in the task that hands one POST to the session manager when that POST is to be answered
#: with a plain JSON body (one JSON-RPC request without a progress token, not ``initialize``).
_JSON_ANSWER: ContextVar[bool] = ContextVar("exec_sessions_mcp_json_answer", default=False)


class _JSONWhenAsked(StreamableHTTPServerTransport):
    """A session transport that answers a POST as JSON when the bridge asks for it.

    The SDK chooses between an SSE stream and a JSON body once per session manager
    (``json_response``). An SSE answer costs the SDK an ``EventSourceResponse`` with its task
    group (stream, ping, disconnect and exit listeners) and a writer task per request; a call
    that asked for no progress has nothing to stream, and its answer is the same JSON-RPC
    message either way. The transport reads the choice from :data:`_JSON_ANSWER` in the
    request's task. The session's own tasks (started by ``initialize``, which is never
    answered this way) read ``False``, so requests with a progress token stream as before.
    """

    _json_always = False

    @property
    def is_json_response_enabled(self) -> bool:
        """JSON for every request (the manager's setting), or for this request."""
        return self._json_always or _JSON_ANSWER.get()

    @is_json_response_enabled.setter
    def is_json_response_enabled(self, value: bool) -> None:
        self._json_always = value


def _answer_json_when_asked(manager: StreamableHTTPSessionManager) -> None:
    """Make the sessions the manager admits :class:`_JSONWhenAsked` transports.

    This reaches into the SDK (a private method, a transport attribute): with an SDK that has
    neither, requests keep their SSE answers (slower, equally correct) instead of failing.
    """
    admit = getattr(manager, "_admit_session", None)
    if not callable(admit):
        log.info("exec-sessions: this mcp SDK has no _admit_session; MCP answers stay SSE")
        return

    def admit_session(requestor: Any) -> StreamableHTTPServerTransport | None:
        transport: StreamableHTTPServerTransport | None = admit(requestor)
        if type(transport) is StreamableHTTPServerTransport:
            json_always = transport.__dict__.pop("is_json_response_enabled", False)
            transport.__class__ = _JSONWhenAsked
            transport.is_json_response_enabled = json_always
        return transport

    manager._admit_session = admit_session  # type: ignore[method-assign]


class MCPEndpoint:
    """The MCP server, its session manager and their lifetime, for one Jupyter server."""

    def __init__(
        self,
        service: _Service,
        *,
        owner_of: OwnerOf,
        session_idle_timeout: float | None = 30 * 60,
    ) -> None:
        def resolve(owner: str | None) -> ContainerBackend:
            if owner is None:  # the bridge always sets it; defensive
                from ..errors import AuthenticationError

                raise AuthenticationError("No authenticated owner on this MCP request.")
            return service.for_user(owner)

        self.owner_of: OwnerOf = owner_of
        self.service = service
        _quiet_client_races()
        self.mcp = create_mcp_server(resolve, sessions_required=True)
        # Builds the session manager; Jupyter checks hosts and origins itself.
        self.mcp.streamable_http_app(
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
            session_idle_timeout=session_idle_timeout,
        )
        self.manager = self.mcp.session_manager
        _answer_json_when_asked(self.manager)
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._ready = asyncio.Event()

    async def session_ended(self, owner: str, session_id: str) -> None:
        """The client ended its MCP session: the session's own container ends with it.

        Conversation containers (calls that carried a conversation id) stay for the next
        process of the conversation; they expire after ``implicit_expires_minutes``.
        """
        await self.service.for_user(owner).end_conversation(SESSION_PREFIX + session_id)

    @property
    def running(self) -> bool:
        """Whether the session manager is accepting requests."""
        return self._ready.is_set() and not self._stopping.is_set()

    def handlers(self, base_url: str = "") -> list[tuple[str, type[MCPHandler], dict[str, Any]]]:
        """Tornado handler specs (pattern relative to ``base_url``; ExtensionApp prepends it)."""
        pattern = base_url.rstrip("/") + "/" + MCP_PATH
        return [(pattern, MCPHandler, {"endpoint": self})]

    async def start(self) -> None:
        """Enter the SDK's ``session_manager.run()`` in a task that lives until ``stop()``."""
        if self._task is not None:
            return

        async def hold_open() -> None:
            async with self.manager.run():
                self._ready.set()
                await self._stopping.wait()

        self._task = asyncio.create_task(hold_open(), name="exec-sessions-mcp")
        ready = asyncio.create_task(self._ready.wait())
        done, _ = await asyncio.wait({ready, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if self._task in done:
            ready.cancel()
            self._task.result()  # raises what stopped it

    async def stop(self) -> None:
        """Close every MCP session and leave the session manager."""
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(self._task, timeout=10)


@web.stream_request_body
class MCPHandler(GuardedBody, APIHandler):
    """Bridges one HTTP request (POST, GET stream, DELETE) to the MCP session manager.

    Authentication and the body size limit come before the body is read (``GuardedBody``).
    """

    auth_resource = AUTH_RESOURCE

    def initialize(self, endpoint: MCPEndpoint) -> None:
        """Receive the endpoint (tornado handler kwargs)."""
        self._endpoint = endpoint
        self._gone = asyncio.Event()
        self._content_type = "application/json"
        self._hold = False
        self._held_start: MutableMapping[str, Any] | None = None
        self._held_chunks: list[bytes] = []

    def unauthenticated_message(self) -> str:
        """What an MCP client must send, and why this request was refused."""
        return _unauthenticated_message(self.request.headers)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Errors before the MCP session manager answers, as a JSON-RPC error body.

        A 401 also says ``WWW-Authenticate: Bearer`` (how to authenticate), so that MCP
        clients report an authentication problem instead of a generic error.
        """
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = getattr(exc, "log_message", None) or self._reason
        if status_code == 401:
            # Some clients show only this header (Codex): it says what is wrong, too.
            challenge = 'Bearer realm="jupyter-exec-sessions"'
            if "authorization" in self.request.headers:
                challenge += (
                    ', error="invalid_token", error_description="The Jupyter server did not'
                    " accept this bearer token: send the server's token (Codex:"
                    ' bearer_token_env_var)."'
                )
            self.set_header("WWW-Authenticate", challenge)
        self.set_header("Content-Type", "application/json")
        code = _JSONRPC_AUTH_ERROR if status_code in (401, 403) else _JSONRPC_SERVER_ERROR
        body = {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}
        self.finish(json.dumps(body))

    def on_connection_close(self) -> None:
        """The client went away: ``receive()`` answers ``http.disconnect``."""
        self._gone.set()

    @web.authenticated
    @authorized_to_execute  # a tools/call runs code, as a kernel's execute does
    async def post(self) -> None:
        """JSON-RPC messages from the client (``tools/list``, ``tools/call``, ...)."""
        await self._bridge()

    @web.authenticated
    @authorized
    async def get(self) -> None:
        """The session's standalone server-to-client SSE stream."""
        await self._bridge()

    @web.authenticated
    @authorized
    async def delete(self) -> None:
        """End the MCP session; the session's own implicit container expires with it."""
        session_id = self.request.headers.get("mcp-session-id")
        await self._bridge()
        if session_id and self.get_status() < 400:
            await self._endpoint.session_ended(self._endpoint.owner_of(self), session_id)

    def _scope(self) -> dict[str, Any]:
        request = self.request
        owner = self._endpoint.owner_of(self)
        host, _, port = (request.host or "").rpartition(":")
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": request.method,
            "scheme": request.protocol,
            "path": request.path,
            "raw_path": request.path.encode("latin-1"),
            "root_path": "",
            "query_string": (request.query or "").encode("latin-1"),
            "headers": [
                (k.lower().encode("latin-1"), v.encode("latin-1"))
                for k, v in request.headers.get_all()
            ],
            "client": (request.remote_ip or "", 0),
            "server": (host or request.host, int(port) if port.isdigit() else 0),
            "state": {},
            "extensions": {},
            "user": AuthenticatedUser(AccessToken(token="", client_id=owner, scopes=[])),
            OWNER_SCOPE_KEY: owner,
        }

    async def _bridge(self) -> None:
        if not self._endpoint.running:
            raise web.HTTPError(503, "The MCP endpoint is not running.")
        # SSE answers are written in small flushed chunks: without TCP_NODELAY, Nagle's
        # algorithm and delayed ACKs add ~40 ms to every tool call.
        stream = getattr(self.request.connection, "stream", None)
        if stream is not None:
            with contextlib.suppress(Exception):
                stream.set_nodelay(True)
        body = self.body_bytes()
        post = _PostBody(body) if self.request.method == "POST" else None
        if post is not None and post.problem is not None:
            self.set_status(400)
            error = {"code": -32600, "message": post.problem}
            self.finish({"jsonrpc": "2.0", "id": None, "error": error})
            return
        self._hold = post is not None and post.wants_no_stream
        body_sent = False

        async def receive() -> dict[str, Any]:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await self._gone.wait()
            return {"type": "http.disconnect"}

        scope = self._scope()
        json_answer = _JSON_ANSWER.set(self._hold and post is not None and post.json_answer)
        try:  # the task runs in a copy of this context
            answer = asyncio.ensure_future(
                self._endpoint.manager.handle_request(scope, receive, self._send)
            )
        finally:
            _JSON_ANSWER.reset(json_answer)
        request_id = post.call_id if post is not None else None
        if request_id is not None:
            gone = asyncio.ensure_future(self._gone.wait())
            await asyncio.wait({answer, gone}, return_when=asyncio.FIRST_COMPLETED)
            gone.cancel()
            if not answer.done() and not self._finished:
                await self._cancel_call(scope, request_id)
        try:
            await answer
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            # the request reached a session that was closing (the client's own race)
            log.debug("MCP: a %s raced its session's end", self.request.method)
            if not self._finished and self._held_start is None and not self._headers_written:
                raise web.HTTPError(404, "The MCP session has ended.") from None
        if self._held_start is not None:
            await self._release()
        if not self._finished:
            self.finish(set_content_type=self._content_type)

    async def _cancel_call(self, scope: dict[str, Any], request_id: Any) -> None:
        """The client dropped a ``tools/call`` mid-run: cancel it as its own cancel would.

        The SDK does not cancel a request whose HTTP connection closed; a
        ``notifications/cancelled`` for it, sent into its session, interrupts the execution
        (which then ends ``cancelled``), as a dropped REST stream does.
        """
        note = {
            "jsonrpc": "2.0",
            "method": "notifications/cancelled",
            "params": {"requestId": request_id, "reason": "The client disconnected."},
        }
        body = json.dumps(note).encode()
        headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Event().wait()  # pragma: no cover - a notification reads once
            return {"type": "http.disconnect"}

        async def discard(_message: MutableMapping[str, Any]) -> None:
            return None

        with contextlib.suppress(Exception):
            await self._endpoint.manager.handle_request(
                {**scope, "headers": headers}, receive, discard
            )

    async def _send(self, message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            if self._hold and _is_sse(message):
                self._held_start = message  # maybe answered as JSON: see _hold_back
                return
            self._start(message)
            return
        if message["type"] != "http.response.body" or self._finished or self._gone.is_set():
            return
        chunk: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        if self._held_start is not None:
            await self._hold_back(chunk, more)
            return
        if more:
            if chunk:
                self.write(chunk)
            await self._flush()
            return
        if chunk:
            self.write(chunk)
        self.finish(set_content_type=self._content_type)

    def _start(self, message: MutableMapping[str, Any], *, json_body: bool = False) -> None:
        self.set_status(message["status"])
        for raw_name, raw_value in message.get("headers", ()):
            name = raw_name.decode("latin-1")
            value = raw_value.decode("latin-1")
            lower = name.lower()
            if lower == "content-type":
                self._content_type = "application/json" if json_body else value
                self.set_header(name, self._content_type)
            elif lower in ("content-length", "connection") or (json_body and lower in _SSE_ONLY):
                continue  # tornado frames the body itself
            else:
                self.add_header(name, value)

    async def _hold_back(self, chunk: bytes, more: bool) -> None:
        """Answer a one-message SSE stream as plain JSON; anything else streams as sent.

        The official MCP client closes an SSE response as soon as it has read the answer,
        before the chunked body's end, which costs it the keep-alive connection (a new TCP
        connection per tool call). A JSON body is read to its end, so the connection is
        reused. Only requests without a progress token are held back, and only until a
        second event (a notification, a keep-alive ping) shows the stream is not one answer.
        """
        if chunk:
            self._held_chunks.append(chunk)
        held = b"".join(self._held_chunks)
        complete = held.endswith((b"\n\n", b"\r\n\r\n"))
        data = _single_event_data(held) if complete else None
        if not more:
            if data is not None:
                assert self._held_start is not None
                self._start(self._held_start, json_body=True)
                self._held_start = None
                self.finish(data, set_content_type="application/json")
                return
            await self._release()
            self.finish(set_content_type=self._content_type)
            return
        if complete and data is None and held.strip():
            await self._release()

    async def _release(self) -> None:
        """Stream what was held back, as the SSE response it is."""
        assert self._held_start is not None
        self._start(self._held_start)
        self._held_start = None
        for chunk in self._held_chunks:
            self.write(chunk)
        self._held_chunks.clear()
        await self._flush()

    async def _flush(self) -> None:
        try:
            await self.flush()
        except StreamClosedError:
            self._gone.set()


_SSE_ONLY = frozenset({"cache-control", "x-accel-buffering"})
#: JSON-RPC error codes of answers the endpoint gives itself (implementation-defined range).
_JSONRPC_AUTH_ERROR = -32001
_JSONRPC_SERVER_ERROR = -32000


def _unauthenticated_message(headers: Any) -> str:
    """What a client without valid credentials is told (no XSRF or cookie wording)."""
    how = (
        "Send the Jupyter server's token as 'Authorization: Bearer <token>' (for Codex: "
        "bearer_token_env_var in config.toml)."
    )
    if "authorization" in headers:
        return f"Unauthorized: this Jupyter server did not accept the bearer token. {how}"
    return (
        f"Unauthorized: no credentials were sent to the jupyter-exec-sessions MCP endpoint. {how}"
    )


class _PostBody:
    """What the bridge needs to know of a POST body, from one JSON parse.

    ``problem``: why the body must be refused before the SDK sees it (deep nesting, lone
    surrogates; a body that is not JSON is the SDK's to answer). ``wants_no_stream``: one
    JSON-RPC request without a progress token. ``call_id``: the JSON-RPC id of a
    ``tools/call`` request, else ``None``. ``json_answer``: it wants no stream and is not
    ``initialize`` (whose task starts the session's own tasks).
    """

    __slots__ = ("call_id", "json_answer", "problem", "wants_no_stream")

    def __init__(self, body: bytes) -> None:
        self.problem: str | None = None
        self.wants_no_stream = False
        self.json_answer = False
        self.call_id: Any = None
        try:
            message = json.loads(body)
        except RecursionError:
            self.problem = "The request body is nested too deeply."
            return
        except ValueError:
            return  # the SDK answers its own parse error
        problem = json_problem(message)
        if problem is not None:
            self.problem = problem[0]
            return
        if not isinstance(message, dict):
            return
        if message.get("method") == "tools/call":
            self.call_id = message.get("id")
        if "id" not in message or "method" not in message:
            return
        params = message.get("params")
        meta = params.get("_meta") if isinstance(params, dict) else None
        self.wants_no_stream = not (
            isinstance(meta, dict) and meta.get("progressToken") is not None
        )
        self.json_answer = self.wants_no_stream and message["method"] != "initialize"


def _is_sse(message: MutableMapping[str, Any]) -> bool:
    return any(
        k.lower() == b"content-type" and v.startswith(b"text/event-stream")
        for k, v in message.get("headers", ())
    )


def _single_event_data(stream: bytes) -> bytes | None:
    """The data of ``stream`` if it is exactly one complete ``message`` event, else None."""
    text = stream.decode("utf-8", "replace").replace("\r\n", "\n")
    if not text.endswith("\n\n"):
        return None
    blocks = [b for b in text.split("\n\n") if b.strip()]
    if len(blocks) != 1:
        return None
    data: list[str] = []
    for line in blocks[0].split("\n"):
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            data.append(value)
        elif field == "event" and value != "message":
            return None
        elif field not in ("event", "id", "retry"):
            return None  # comments (pings) and unknown fields: not a lone answer
    return "\n".join(data).encode() if data else None
