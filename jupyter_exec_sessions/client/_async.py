"""The asynchronous client, :class:`AsyncClient` (same routes and models as ``Client``)."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from types import TracebackType
from typing import Literal, overload

import httpx2

from .._contract import ConversationContainer, OutputSink
from ..models import (
    Container,
    ContainerDeleted,
    ContainerFile,
    ContainerFileDeleted,
    ContainerFileList,
    ContainerList,
    CreateContainerRequest,
    Event,
    Execution,
    ExecutionStreamEvent,
    ExpiresAfter,
    MemoryLimit,
)
from ._core import (
    _DEFAULT_TIMEOUT,
    _EXEC_ADAPTER,
    Call,
    ExecRequest,
    FileInput,
    _Base,
    _conversation,
    _conversation_call,
    _create_request,
    _end_conversation_call,
    _ended,
    _events_call,
    _exec_call,
    _feed_event,
    _file_part,
    _incomplete,
    _page,
    _seg,
    _stream_event,
)
from ._transport import AsyncTransport

__all__ = ["AsyncClient"]


# --------------------------------------------------------------------------- async client
class AsyncClient(_Base):
    """Async client of one jupyter-exec-sessions server; satisfies ``ContainerBackend``."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | httpx2.Timeout = _DEFAULT_TIMEOUT,
        http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        super().__init__(url, token, headers)
        self._http = http_client or httpx2.AsyncClient(timeout=timeout)
        self._owns_http = http_client is None
        self._transport = AsyncTransport(self.base_url, self._http, self._headers)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the underlying connection pool (if this client created it)."""
        if self._owns_http:
            await self._http.aclose()

    async def _send(self, call: Call) -> bytes:
        return await self._transport.send(call)

    # containers
    async def create_container(
        self,
        request: CreateContainerRequest | None = None,
        *,
        name: str | None = None,
        expires_after: ExpiresAfter | int | None = None,
        memory_limit: MemoryLimit | None = None,
    ) -> Container:
        """Create a container (``request``, or ``name`` + options; int expiry = minutes)."""
        req = _create_request(request, name, expires_after, memory_limit)
        body = req.model_dump(mode="json", exclude_none=True)
        return Container.model_validate_json(
            await self._send(Call("POST", "containers", json=body))
        )

    async def list_containers(
        self,
        *,
        after: str | None = None,
        limit: int | None = None,
        order: Literal["asc", "desc"] | None = None,
        name: str | None = None,
    ) -> ContainerList:
        """One cursor page of the caller's containers."""
        params = _page(after=after, limit=limit, order=order, name=name)
        return ContainerList.model_validate_json(
            await self._send(Call("GET", "containers", params=params))
        )

    async def iter_containers(
        self, *, order: Literal["asc", "desc"] | None = None, name: str | None = None
    ) -> AsyncIterator[Container]:
        """Every container of the caller, following the cursor pages."""
        after: str | None = None
        while True:
            page = await self.list_containers(after=after, limit=100, order=order, name=name)
            for container in page.data:
                yield container
            if not page.has_more or not page.data:
                return
            after = page.data[-1].id

    async def retrieve_container(self, container_id: str) -> Container:
        """Return the container object (refreshes ``last_active_at``)."""
        return Container.model_validate_json(
            await self._send(Call("GET", f"containers/{_seg(container_id)}"))
        )

    async def delete_container(self, container_id: str) -> ContainerDeleted:
        """Delete a container: its kernel is shut down and running executions cancelled."""
        return ContainerDeleted.model_validate_json(
            await self._send(Call("DELETE", f"containers/{_seg(container_id)}"))
        )

    # files
    async def upload_file(
        self, container_id: str, file: FileInput, *, filename: str | None = None
    ) -> ContainerFile:
        """Upload bytes, a path, or a binary file object into the container's directory."""
        call = Call(
            "POST",
            f"containers/{_seg(container_id)}/files",
            files={"file": _file_part(file, filename)},
        )
        return ContainerFile.model_validate_json(await self._send(call))

    async def list_files(
        self,
        container_id: str,
        *,
        after: str | None = None,
        limit: int | None = None,
        order: Literal["asc", "desc"] | None = None,
    ) -> ContainerFileList:
        """One cursor page of the container's files (uploaded and written by code)."""
        call = Call(
            "GET",
            f"containers/{_seg(container_id)}/files",
            params=_page(after=after, limit=limit, order=order),
        )
        return ContainerFileList.model_validate_json(await self._send(call))

    async def retrieve_file(self, container_id: str, file_id: str) -> ContainerFile:
        """Return one file object."""
        path = f"containers/{_seg(container_id)}/files/{_seg(file_id)}"
        return ContainerFile.model_validate_json(await self._send(Call("GET", path)))

    async def file_content(self, container_id: str, file_id: str) -> bytes:
        """Return the raw bytes of a file."""
        path = f"containers/{_seg(container_id)}/files/{_seg(file_id)}/content"
        return await self._send(Call("GET", path, headers={"Accept": "*/*"}))

    async def delete_file(self, container_id: str, file_id: str) -> ContainerFileDeleted:
        """Delete a file from the container."""
        path = f"containers/{_seg(container_id)}/files/{_seg(file_id)}"
        return ContainerFileDeleted.model_validate_json(await self._send(Call("DELETE", path)))

    # executions
    async def execute(
        self,
        container_id: str,
        request: ExecRequest,
        on_output: OutputSink | None = None,
    ) -> Execution:
        """Run one execution to completion and return it.

        With ``on_output`` (an ``OutputSink``) the streamed endpoint is used and the sink is
        called, in order, with each output delta and its shell command index.
        """
        if on_output is None and not request.stream:
            body = await self._send(_exec_call(container_id, request, stream=False))
            return _EXEC_ADAPTER.validate_json(body)
        async for event in self.execute_stream(container_id, request):
            if event.type == "execution.output" and event.output is not None and on_output:
                on_output(event.output, event.command_index)
            elif event.type == "execution.completed" and event.execution is not None:
                return event.execution
        raise _incomplete()

    async def execute_stream(
        self, container_id: str, request: ExecRequest
    ) -> AsyncIterator[ExecutionStreamEvent]:
        """Stream an execution's events (``started``, ``output``…, ``completed``).

        Leaving the iteration early closes the connection, which interrupts the execution.
        """
        call = _exec_call(container_id, request, stream=True)
        async for frame in self._transport.stream(call):
            event = _stream_event(frame.data, frame.event) if frame is not None else None
            if event is not None:
                yield event

    async def interrupt(self, container_id: str) -> None:
        """Interrupt the container's running execution (its state is kept)."""
        await self._send(Call("POST", f"containers/{_seg(container_id)}/interrupt"))

    # conversations
    async def conversation_container(
        self, key: str, name: str | None = None
    ) -> ConversationContainer:
        """The running implicit container of conversation ``key``, made on demand.

        ``key`` is ``conversation:<id>`` or ``mcp-session:<id>``; the binding lives on the
        server, so every process of one conversation gets the same container. When the key's
        previous container is gone, ``replaced`` and ``reason`` say which and why.
        """
        return _conversation(await self._send(_conversation_call(key, name)))

    async def end_conversation(self, key: str) -> bool:
        """Forget ``key`` and expire its implicit container now; whether one was expired."""
        return _ended(await self._send(_end_conversation_call(key)))

    # events
    @overload
    def events(
        self,
        last_event_id: str | int | None = None,
        *,
        keepalives: Literal[False] = False,
        read_timeout: float | None = None,
    ) -> AsyncGenerator[Event, None]: ...

    @overload
    def events(
        self,
        last_event_id: str | int | None = None,
        *,
        keepalives: Literal[True],
        read_timeout: float | None = None,
    ) -> AsyncGenerator[Event | None, None]: ...

    async def events(
        self,
        last_event_id: str | int | None = None,
        *,
        keepalives: bool = False,
        read_timeout: float | None = None,
    ) -> AsyncGenerator[Event | None, None]:
        """Follow the caller's live events feed, resuming after ``last_event_id``.

        With ``keepalives=True`` the feed also yields ``None`` once the stream is open (the
        server now records every event for this follower: list what already exists then, and
        nothing falls between the listing and the feed) and at each server keep-alive.
        ``read_timeout`` (seconds) turns a silent connection into a ``ServiceUnavailableError``;
        the server sends a keep-alive every 15 s. Events of types this client does not know are
        skipped.
        """
        call = _events_call(last_event_id)
        async for frame in self._transport.stream(call, read_timeout=read_timeout):
            event = _feed_event(frame.data) if frame is not None else None
            if event is not None:
                yield event
            elif frame is None and keepalives:
                yield None
