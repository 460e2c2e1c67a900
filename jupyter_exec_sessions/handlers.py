"""REST + events handlers of the containers API; the one place errors become HTTP bodies.

Thin async verbs over ``ContainerService``; every verb is ``@web.authenticated`` and
``@authorized``. Every error on this API has the OpenAI shape
``{"error": {"message", "type", "param", "code"}}`` (see :func:`error_body`).
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from pydantic import BaseModel, TypeAdapter, ValidationError
from tornado import web
from tornado.iostream import StreamClosedError

from ._service import ContainerService
from .errors import ExecSessionsError, InvalidRequestError, PayloadTooLargeError
from .models import (
    CreateContainerRequest,
    ExecutionRequest,
    ExecutionStreamEvent,
    Output,
    PythonExecutionRequest,
    ShellExecutionRequest,
)

__all__ = ["AUTH_RESOURCE", "API_PREFIX", "default_handlers", "error_body", "owner_of"]

AUTH_RESOURCE = "exec_sessions"
API_PREFIX = "exec-sessions/v1"

_STATUS_TYPES = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "forbidden"),
    404: ("not_found_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "payload_too_large"),
    429: ("rate_limit_error", "rate_limited"),
}
_EXECUTION_ADAPTER: TypeAdapter[PythonExecutionRequest | ShellExecutionRequest] = TypeAdapter(
    ExecutionRequest
)
M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Awaitable[None]])


SERVER_OWNER = "server-owner"


def owner_of(handler: Any) -> str:
    """The owner of the containers an authenticated request may see.

    On a single-user server (jupyter_server's own token/password identity providers) every
    authenticated request is the server's one user, although jupyter_server names each
    token-authenticated request a fresh random anonymous user: they all map to one owner.
    With any other identity provider (JupyterHub, a custom one) the owner is the username,
    and one user's containers are invisible (404) to every other user.
    """
    from jupyter_server.auth.identity import IdentityProvider, PasswordIdentityProvider

    provider = handler.identity_provider
    if type(provider) in (IdentityProvider, PasswordIdentityProvider):
        return SERVER_OWNER
    return str(handler.current_user.username)


def error_body(status: int, message: str, *, param: str | None = None) -> dict[str, Any]:
    """The OpenAI error body for an HTTP status without a richer exception."""
    type_, code = _STATUS_TYPES.get(status, ("server_error", "server_error"))
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def _validation_message(e: ValidationError) -> tuple[str, str | None]:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"] if not isinstance(p, int) or True)
    loc = loc.replace("python.", "").replace("shell.", "")
    if err["type"] == "missing":
        return f"Missing required parameter: '{loc}'.", loc or None
    if err["type"] == "extra_forbidden":
        return f"Unrecognized request argument supplied: '{loc}'.", loc or None
    if err["type"] == "union_tag_invalid":
        return "Invalid 'type': expected 'python' or 'shell'.", "type"
    return f"Invalid value for '{loc}': {err['msg']}.", loc or None


def openai_errors(method: F) -> F:
    """Turn ``ExecSessionsError`` raised by a verb into its OpenAI error response."""

    @functools.wraps(method)
    async def wrapper(self: ExecSessionsHandler, *args: Any, **kwargs: Any) -> None:
        try:
            await method(self, *args, **kwargs)
        except ExecSessionsError as e:
            self.send_exec_error(e)

    return cast(F, wrapper)


class ExecSessionsHandler(APIHandler):
    """Base: authentication as a 401, OpenAI error bodies, JSON helpers."""

    auth_resource = AUTH_RESOURCE

    @property
    def service(self) -> ContainerService:
        """The container service of this server."""
        return cast(ContainerService, self.settings["exec_sessions_service"])

    @property
    def owner(self) -> str:
        """Who the containers of this request belong to (see :func:`owner_of`)."""
        return owner_of(self)

    def get_login_url(self) -> str:
        """An API never redirects to a login page: unauthenticated is a 401."""
        raise web.HTTPError(401, "Missing or invalid credentials.")

    def check_xsrf_cookie(self) -> None:
        """A request without valid credentials is a 401, not an XSRF 403."""
        if hasattr(self, "_jupyter_current_user") and not self.current_user:
            raise web.HTTPError(401, "Missing or invalid credentials.")
        super().check_xsrf_cookie()

    def send_exec_error(self, e: ExecSessionsError) -> None:
        """Write an ``ExecSessionsError`` as its status and OpenAI body."""
        if self._finished:
            return
        self.clear()
        self.set_status(e.status)
        retry_after = getattr(e, "retry_after", None)
        if retry_after is not None:
            self.set_header("Retry-After", str(max(1, round(retry_after))))
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(e.to_body()))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Every error this API writes has the OpenAI shape."""
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ExecSessionsError):
            self.send_exec_error(exc)
            return
        message = self._reason
        if isinstance(exc, web.HTTPError) and exc.log_message:
            message = exc.log_message % exc.args if exc.args else exc.log_message
        if status_code >= 500:
            message = "The server had an error while processing your request."
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(error_body(status_code, message)))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        """Expected errors are not server faults: keep them out of the error log."""
        if isinstance(value, ExecSessionsError) and value.status < 500:
            return
        super().log_exception(typ, value, tb)

    def json_body(self) -> dict[str, Any]:
        """The request's JSON object body; 400 when it is not one."""
        if not self.request.body:
            return {}
        try:
            body = json.loads(self.request.body)
        except (UnicodeDecodeError, ValueError):
            raise InvalidRequestError("The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise InvalidRequestError("The request body must be a JSON object.")
        return body

    def parse(self, model: type[M], data: dict[str, Any]) -> M:
        """Validate a body into a model; a bad field is a 400 naming it."""
        try:
            return model.model_validate(data)
        except ValidationError as e:
            message, param = _validation_message(e)
            raise InvalidRequestError(message, param=param) from None

    def send_model(self, model: BaseModel, status: int = 200) -> None:
        """Write a wire model as JSON."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(model.model_dump_json())

    def page_args(self) -> tuple[str | None, int, str]:
        """``after``, ``limit`` (1–100, default 20) and ``order`` (asc|desc, default desc)."""
        after = self.get_query_argument("after", None) or None
        raw_limit = self.get_query_argument("limit", "20")
        try:
            limit = int(raw_limit)
        except ValueError:
            raise InvalidRequestError(
                f"Invalid 'limit': {raw_limit!r} is not an integer.", param="limit"
            ) from None
        if not 1 <= limit <= 100:
            raise InvalidRequestError(
                f"Invalid 'limit': {limit}; it must be between 1 and 100.", param="limit"
            )
        order = self.get_query_argument("order", "desc")
        if order not in ("asc", "desc"):
            raise InvalidRequestError(
                f"Invalid 'order': {order!r}; expected 'asc' or 'desc'.", param="order"
            )
        return after, limit, order


class ContainersHandler(ExecSessionsHandler):
    """``/containers``: create and list."""

    @web.authenticated
    @authorized
    @openai_errors
    async def post(self) -> None:
        """Create a container."""
        request = self.parse(CreateContainerRequest, self.json_body())
        container = await self.service.create(self.owner, request)
        self.set_header("Location", self.request.path.rstrip("/") + "/" + container.id)
        self.send_model(container)

    @web.authenticated
    @authorized
    @openai_errors
    async def get(self) -> None:
        """List the caller's containers."""
        after, limit, order = self.page_args()
        name = self.get_query_argument("name", None)
        page = self.service.list(self.owner, after=after, limit=limit, order=order, name=name)
        self.send_model(page)


class ContainerHandler(ExecSessionsHandler):
    """``/containers/{id}``: retrieve and delete."""

    @web.authenticated
    @authorized
    @openai_errors
    async def get(self, container_id: str) -> None:
        """Retrieve a container."""
        self.send_model(self.service.retrieve(self.owner, container_id))

    @web.authenticated
    @authorized
    @openai_errors
    async def delete(self, container_id: str) -> None:
        """Delete a container."""
        self.send_model(await self.service.delete(self.owner, container_id))


class FilesHandler(ExecSessionsHandler):
    """``/containers/{id}/files``: upload and list."""

    async def prepare(self) -> None:  # type: ignore[override]
        """Refuse oversized uploads before reading them."""
        length = int(self.request.headers.get("Content-Length", "0") or 0)
        limit = self.service.config.max_upload_bytes
        if self.request.method == "POST" and length > limit + 64 * 1024:
            self.send_exec_error(
                PayloadTooLargeError(
                    f"The upload is {length} bytes; the limit is {limit} bytes (max_upload_bytes).",
                    param="file",
                )
            )
            return
        await super().prepare()

    @web.authenticated
    @authorized
    @openai_errors
    async def post(self, container_id: str) -> None:
        """Upload a file (multipart part ``file``)."""
        parts = self.request.files.get("file")
        if not parts:
            ctype = self.request.headers.get("Content-Type", "")
            if ctype.startswith("application/json") and "file_id" in self.json_body():
                raise InvalidRequestError(
                    "file_id is not supported by this server: upload the file's bytes as"
                    " the multipart part 'file'.",
                    param="file_id",
                )
            raise InvalidRequestError(
                "Missing required parameter: 'file' (a multipart/form-data part).",
                param="file",
            )
        part = parts[0]
        # Raw values: tornado's get_body_argument would silently drop control characters.
        raw_path = self.request.body_arguments.get("path")
        filename = raw_path[0].decode("utf-8", "replace") if raw_path else part.filename
        f = await self.service.upload_file(self.owner, container_id, filename, part.body)
        self.send_model(f)

    @web.authenticated
    @authorized
    @openai_errors
    async def get(self, container_id: str) -> None:
        """List the container's files as they are on disk."""
        after, limit, order = self.page_args()
        page = await self.service.list_files(
            self.owner, container_id, after=after, limit=limit, order=order
        )
        self.send_model(page)


class FileHandler(ExecSessionsHandler):
    """``/containers/{id}/files/{file_id}``: retrieve and delete."""

    @web.authenticated
    @authorized
    @openai_errors
    async def get(self, container_id: str, file_id: str) -> None:
        """Retrieve a file object."""
        self.send_model(await self.service.retrieve_file(self.owner, container_id, file_id))

    @web.authenticated
    @authorized
    @openai_errors
    async def delete(self, container_id: str, file_id: str) -> None:
        """Delete a file."""
        self.send_model(await self.service.delete_file(self.owner, container_id, file_id))


class FileContentHandler(ExecSessionsHandler):
    """``/containers/{id}/files/{file_id}/content``: raw bytes."""

    @web.authenticated
    @authorized
    @openai_errors
    async def get(self, container_id: str, file_id: str) -> None:
        """Download a file's bytes."""
        data = await self.service.file_content(self.owner, container_id, file_id)
        self.set_header("Content-Type", "application/octet-stream")
        self.finish(data)


class ExecutionsHandler(ExecSessionsHandler):
    """``/containers/{id}/executions``: run Python or shell, buffered or streamed."""

    _task: asyncio.Task[Any] | None = None

    @web.authenticated
    @authorized
    @openai_errors
    async def post(self, container_id: str) -> None:
        """Run an execution."""
        body = self.json_body()
        if "type" not in body:
            body["type"] = "shell" if "commands" in body else "python"
        try:
            request = _EXECUTION_ADAPTER.validate_python(body)
        except ValidationError as e:
            message, param = _validation_message(e)
            raise InvalidRequestError(message, param=param) from None
        owner = self.owner
        if not request.stream:
            self._task = asyncio.ensure_future(self.service.execute(owner, container_id, request))
            execution = await self._task
            self.send_model(execution)
            return
        await self._stream(owner, container_id, request)

    async def _stream(
        self, owner: str, container_id: str, request: PythonExecutionRequest | ShellExecutionRequest
    ) -> None:
        queue: asyncio.Queue[ExecutionStreamEvent | None] = asyncio.Queue()
        seq = 0

        def push(**kw: Any) -> None:
            nonlocal seq
            queue.put_nowait(ExecutionStreamEvent(seq=seq, **kw))
            seq += 1

        def on_started(execution: Any) -> None:
            push(type="execution.started", execution=execution.model_copy())

        def on_output(output: Output, command_index: int | None) -> None:
            push(type="execution.output", output=output, command_index=command_index)

        async def run() -> None:
            try:
                execution = await self.service.execute(
                    owner, container_id, request, on_output, on_started
                )
                push(type="execution.completed", execution=execution)
            finally:
                queue.put_nowait(None)

        self._task = asyncio.ensure_future(run())
        first = True
        while True:
            get = asyncio.ensure_future(queue.get())
            await asyncio.wait({get, self._task}, return_when=asyncio.FIRST_COMPLETED)
            if not get.done():
                get.cancel()
                # run() ended before anything was queued: an error before start.
                self._task.result()
                return
            event = get.result()
            if event is None:
                break
            if first:
                self.set_header("Content-Type", "text/event-stream")
                self.set_header("Cache-Control", "no-cache")
                self.set_header("X-Accel-Buffering", "no")
                first = False
            self.write(f"event: {event.type}\ndata: {event.model_dump_json()}\n\n")
            try:
                await self.flush()
            except StreamClosedError:
                self._task.cancel()
                return
        if self._task.done() and not self._task.cancelled() and self._task.exception():
            exc = self._task.exception()
            if first and isinstance(exc, ExecSessionsError):
                raise exc
            if isinstance(exc, ExecSessionsError):
                err = exc.to_body()
                self.write(f"event: error\ndata: {json.dumps(err)}\n\n")
        self.finish()

    def on_connection_close(self) -> None:
        """A client that goes away interrupts its execution."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
        super().on_connection_close()


class InterruptHandler(ExecSessionsHandler):
    """``/containers/{id}/interrupt``: interrupt the running execution (state kept)."""

    @web.authenticated
    @authorized
    @openai_errors
    async def post(self, container_id: str) -> None:
        """Interrupt."""
        result = await self.service.interrupt(self.owner, container_id)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(result))


class ResolutionsHandler(ExecSessionsHandler):
    """``/containers/{id}/resolutions``: publish a session-hook decision as an event."""

    @web.authenticated
    @authorized
    @openai_errors
    async def post(self, container_id: str) -> None:
        """Record ``container.resolved {origin, previous_id, session_id}``."""
        body = self.json_body()
        origin = body.get("origin")
        if origin not in ("explicit", "history", "created", "replaced"):
            raise InvalidRequestError(
                "Invalid 'origin': expected explicit, history, created or replaced.",
                param="origin",
            )
        self.service.record_resolution(
            self.owner,
            container_id,
            origin=origin,
            previous_id=body.get("previous_id"),
            session_id=body.get("session_id"),
        )
        self.finish(json.dumps({"ok": True}))


class EventsHandler(ExecSessionsHandler):
    """``/events``: the caller's lifecycle events as server-sent events, resumable."""

    _closed = False

    @web.authenticated
    @authorized
    @openai_errors
    async def get(self) -> None:
        """Stream events with ``seq`` greater than ``Last-Event-ID`` (or ``?after=``)."""
        raw = self.request.headers.get("Last-Event-ID") or self.get_query_argument("after", "0")
        try:
            after = int(raw or 0)
        except ValueError:
            raise InvalidRequestError(
                "Last-Event-ID must be an event seq (an integer).", param="Last-Event-ID"
            ) from None
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")
        self.write(": connected\n\n")
        try:
            await self.flush()
            async for event in self.service.events.follow(self.owner, after, heartbeat=15.0):
                if self._closed:
                    break
                if event is None:
                    self.write(": keepalive\n\n")
                else:
                    self.write(
                        f"id: {event.seq}\nevent: {event.type}\ndata: {event.model_dump_json()}\n\n"
                    )
                await self.flush()
        except StreamClosedError:
            return
        if not self._finished:
            self.finish()

    def on_connection_close(self) -> None:
        """Stop following when the client goes away."""
        self._closed = True
        super().on_connection_close()


class NotFoundHandler(ExecSessionsHandler):
    """Any other path under the API: a 404 in the OpenAI shape."""

    @web.authenticated
    @authorized
    async def get(self, path: str) -> None:
        """Unknown route."""
        raise web.HTTPError(404, "Unknown route: /%s", path)

    post = delete = put = patch = get


_ID = r"([^/]+)"
default_handlers: list[tuple[str, type[ExecSessionsHandler]]] = [
    (rf"/{API_PREFIX}/containers/?", ContainersHandler),
    (rf"/{API_PREFIX}/containers/{_ID}/?", ContainerHandler),
    (rf"/{API_PREFIX}/containers/{_ID}/files/?", FilesHandler),
    (rf"/{API_PREFIX}/containers/{_ID}/files/{_ID}/content/?", FileContentHandler),
    (rf"/{API_PREFIX}/containers/{_ID}/files/{_ID}/?", FileHandler),
    (rf"/{API_PREFIX}/containers/{_ID}/executions/?", ExecutionsHandler),
    (rf"/{API_PREFIX}/containers/{_ID}/interrupt/?", InterruptHandler),
    (rf"/{API_PREFIX}/containers/{_ID}/resolutions/?", ResolutionsHandler),
    (rf"/{API_PREFIX}/events/?", EventsHandler),
    (rf"/{API_PREFIX}/(.*)", NotFoundHandler),
]
