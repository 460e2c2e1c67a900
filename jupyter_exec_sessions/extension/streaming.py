"""Streaming and action handlers: executions (buffered or SSE), interrupt, resolutions, events."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from jupyter_server.auth.decorator import authorized
from pydantic import ValidationError
from tornado import web
from tornado.iostream import StreamClosedError

from ..errors import ExecSessionsError, InvalidRequestError
from ..models import (
    EXECUTION_REQUEST_ADAPTER,
    ContainerResolvedData,
    ExecutionRequest,
    ExecutionStreamEvent,
    Output,
    ResolutionRecorded,
    ResolutionRequest,
)
from .base import ExecSessionsHandler, authorized_to_execute, openai_errors, validation_error

__all__ = ["EventsHandler", "ExecutionsHandler", "InterruptHandler", "ResolutionsHandler"]

#: Largest body of ``POST /containers/{id}/resolutions`` in bytes.
RESOLUTION_BODY_LIMIT = 4096
#: Largest event ``seq`` a client may resume after (SQLite's integer range).
MAX_SEQ = 2**63 - 1


def _no_delay(handler: web.RequestHandler) -> None:
    """Send each server-sent event at once: no Nagle delay between small writes."""
    stream = getattr(handler.request.connection, "stream", None)
    if stream is not None:
        stream.set_nodelay(True)


class ExecutionsHandler(ExecSessionsHandler):
    """``/containers/{id}/executions``: run Python or shell, buffered or streamed; history."""

    _task: asyncio.Task[Any] | None = None

    @web.authenticated
    @authorized
    @openai_errors
    async def get(self, container_id: str) -> None:
        """A cursor page of the container's recent executions, newest first by default."""
        after, limit, order = self.page_args()
        self.send_model(
            self.service.executions.history(
                self.owner, container_id, after=after, limit=limit, order=order
            )
        )

    @web.authenticated
    @authorized_to_execute
    @openai_errors
    async def post(self, container_id: str) -> None:
        """Run an execution."""
        body = self.json_body()
        if "type" not in body:
            body["type"] = "shell" if "commands" in body else "python"
        try:
            request = EXECUTION_REQUEST_ADAPTER.validate_python(body)
        except ValidationError as e:
            message, param = validation_error(e)
            raise InvalidRequestError(message, param=param) from None
        owner = self.owner
        if not request.stream:
            self._task = asyncio.ensure_future(
                self.service.executions.execute(owner, container_id, request)
            )
            execution = await self._task
            self.send_model(execution)
            return
        await self._stream(owner, container_id, request)

    async def _stream(self, owner: str, container_id: str, request: ExecutionRequest) -> None:
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
                execution = await self.service.executions.execute(
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
                _no_delay(self)
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


class ExecutionHandler(ExecSessionsHandler):
    """``/containers/{id}/executions/{exec_id}``: one execution of the history, whole."""

    @web.authenticated
    @authorized
    @openai_errors
    async def get(self, container_id: str, execution_id: str) -> None:
        """Retrieve one execution record."""
        self.send_model(self.service.executions.retrieve(self.owner, container_id, execution_id))


class InterruptHandler(ExecSessionsHandler):
    """``/containers/{id}/interrupt``: interrupt the running execution (state kept)."""

    @web.authenticated
    @authorized
    @openai_errors
    async def post(self, container_id: str) -> None:
        """Interrupt."""
        result = await self.service.executions.interrupt(self.owner, container_id)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(result))


class ResolutionsHandler(ExecSessionsHandler):
    """``/containers/{id}/resolutions``: publish a session-hook decision as an event."""

    @web.authenticated
    @authorized
    @openai_errors
    async def post(self, container_id: str) -> None:
        """Record ``container.resolved {origin, previous_id, session_id}``."""
        request = self.parse(ResolutionRequest, self.json_body())
        self.service.containers.record_resolution(
            self.owner, container_id, ContainerResolvedData(**request.model_dump())
        )
        self.send_model(ResolutionRecorded())

    def body_limit(self) -> int:
        """A resolution is a few short fields."""
        return min(super().body_limit(), RESOLUTION_BODY_LIMIT)


class EventsHandler(ExecSessionsHandler):
    """``/events``: the caller's lifecycle events as server-sent events, resumable."""

    _closed = False

    @web.authenticated
    @authorized
    @openai_errors
    async def get(self) -> None:
        """Stream events with ``seq`` greater than ``Last-Event-ID`` (or ``?after=``)."""
        raw = self.request.headers.get("Last-Event-ID") or self.get_query_argument("after", "0")
        param = "Last-Event-ID" if self.request.headers.get("Last-Event-ID") else "after"
        try:
            after = int(raw or 0)
        except ValueError:
            raise InvalidRequestError(
                f"Invalid '{param}': {raw!r} is not an event seq (an integer).", param=param
            ) from None
        if not 0 <= after <= MAX_SEQ:
            raise InvalidRequestError(
                f"Invalid '{param}': {after} is not an event seq (0 to {MAX_SEQ}).", param=param
            )
        _no_delay(self)
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
