"""The synchronous ``Client`` of :mod:`jupyter_exec_sessions.client` (same routes, same models)."""

from __future__ import annotations

from collections.abc import Generator, Iterator, Mapping
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
from ._transport import SyncTransport

__all__ = ["Client"]


class Client(_Base):
    """Synchronous client of one jupyter-exec-sessions server (same methods as AsyncClient)."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        timeout: float | httpx2.Timeout = _DEFAULT_TIMEOUT,
        http_client: httpx2.Client | None = None,
    ) -> None:
        super().__init__(url, token, headers)
        self._http = http_client or httpx2.Client(timeout=timeout)
        self._owns_http = http_client is None
        self._transport = SyncTransport(self.base_url, self._http, self._headers)

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying connection pool (if this client created it)."""
        if self._owns_http:
            self._http.close()

    def _send(self, call: Call) -> bytes:
        return self._transport.send(call)

    # containers
    def create_container(
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
        return Container.model_validate_json(self._send(Call("POST", "containers", json=body)))

    def list_containers(
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
            self._send(Call("GET", "containers", params=params))
        )

    def iter_containers(
        self, *, order: Literal["asc", "desc"] | None = None, name: str | None = None
    ) -> Iterator[Container]:
        """Every container of the caller, following the cursor pages."""
        after: str | None = None
        while True:
            page = self.list_containers(after=after, limit=100, order=order, name=name)
            yield from page.data
            if not page.has_more or not page.data:
                return
            after = page.data[-1].id

    def retrieve_container(self, container_id: str) -> Container:
        """Return the container object (refreshes ``last_active_at``)."""
        return Container.model_validate_json(
            self._send(Call("GET", f"containers/{_seg(container_id)}"))
        )

    def delete_container(self, container_id: str) -> ContainerDeleted:
        """Delete a container: its kernel is shut down and running executions cancelled."""
        return ContainerDeleted.model_validate_json(
            self._send(Call("DELETE", f"containers/{_seg(container_id)}"))
        )

    # files
    def upload_file(
        self, container_id: str, file: FileInput, *, filename: str | None = None
    ) -> ContainerFile:
        """Upload bytes, a path, or a binary file object into the container's directory."""
        call = Call(
            "POST",
            f"containers/{_seg(container_id)}/files",
            files={"file": _file_part(file, filename)},
        )
        return ContainerFile.model_validate_json(self._send(call))

    def list_files(
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
        return ContainerFileList.model_validate_json(self._send(call))

    def retrieve_file(self, container_id: str, file_id: str) -> ContainerFile:
        """Return one file object."""
        path = f"containers/{_seg(container_id)}/files/{_seg(file_id)}"
        return ContainerFile.model_validate_json(self._send(Call("GET", path)))

    def file_content(self, container_id: str, file_id: str) -> bytes:
        """Return the raw bytes of a file."""
        path = f"containers/{_seg(container_id)}/files/{_seg(file_id)}/content"
        return self._send(Call("GET", path, headers={"Accept": "*/*"}))

    def delete_file(self, container_id: str, file_id: str) -> ContainerFileDeleted:
        """Delete a file from the container."""
        path = f"containers/{_seg(container_id)}/files/{_seg(file_id)}"
        return ContainerFileDeleted.model_validate_json(self._send(Call("DELETE", path)))

    # executions
    def execute(
        self,
        container_id: str,
        request: ExecRequest,
        on_output: OutputSink | None = None,
    ) -> Execution:
        """Run one execution to completion; ``on_output`` as in ``AsyncClient.execute``."""
        if on_output is None and not request.stream:
            return _EXEC_ADAPTER.validate_json(
                self._send(_exec_call(container_id, request, stream=False))
            )
        for event in self.execute_stream(container_id, request):
            if event.type == "execution.output" and event.output is not None and on_output:
                on_output(event.output, event.command_index)
            elif event.type == "execution.completed" and event.execution is not None:
                return event.execution
        raise _incomplete()

    def execute_stream(
        self, container_id: str, request: ExecRequest
    ) -> Iterator[ExecutionStreamEvent]:
        """Stream an execution's events; closing the iterator early interrupts it."""
        call = _exec_call(container_id, request, stream=True)
        for frame in self._transport.stream(call):
            event = _stream_event(frame.data, frame.event) if frame is not None else None
            if event is not None:
                yield event

    def interrupt(self, container_id: str) -> None:
        """Interrupt the container's running execution (its state is kept)."""
        self._send(Call("POST", f"containers/{_seg(container_id)}/interrupt"))

    # conversations
    def conversation_container(self, key: str, name: str | None = None) -> ConversationContainer:
        """The running implicit container of conversation ``key``, made on demand.

        ``key`` is ``conversation:<id>`` or ``mcp-session:<id>``; the binding lives on the
        server, so every process of one conversation gets the same container. When the key's
        previous container is gone, ``replaced`` and ``reason`` say which and why.
        """
        return _conversation(self._send(_conversation_call(key, name)))

    def end_conversation(self, key: str) -> bool:
        """Forget ``key`` and expire its implicit container now; whether one was expired."""
        return _ended(self._send(_end_conversation_call(key)))

    # events
    @overload
    def events(
        self,
        last_event_id: str | int | None = None,
        *,
        keepalives: Literal[False] = False,
        read_timeout: float | None = None,
    ) -> Generator[Event, None, None]: ...

    @overload
    def events(
        self,
        last_event_id: str | int | None = None,
        *,
        keepalives: Literal[True],
        read_timeout: float | None = None,
    ) -> Generator[Event | None, None, None]: ...

    def events(
        self,
        last_event_id: str | int | None = None,
        *,
        keepalives: bool = False,
        read_timeout: float | None = None,
    ) -> Generator[Event | None, None, None]:
        """Follow the caller's live events feed; arguments as in ``AsyncClient.events``."""
        call = _events_call(last_event_id)
        for frame in self._transport.stream(call, read_timeout=read_timeout):
            event = _feed_event(frame.data) if frame is not None else None
            if event is not None:
                yield event
            elif frame is None and keepalives:
                yield None
