"""The one HTTP transport of the package: requests, error decoding and the SSE reader.

The typed clients, the session monitor's follower (through ``AsyncClient``) and the hook's
``ContainersAPIBackend`` all send their requests through :class:`AsyncTransport` (or
:class:`SyncTransport`): an answer ``>= 400`` becomes the ``ExecSessionsError`` that
``error_from_response`` maps, an unreachable server a ``ServiceUnavailableError`` whose
``__cause__`` is the ``httpx2`` error (see :func:`is_unreachable`), and a server-sent events
response is read by :class:`SSEDecoder`, the only SSE parser in the package.

The transport knows nothing of our routes: ``api_root`` is any containers API root (ours,
``…/exec-sessions/v1``, or ``https://api.openai.com/v1``), which is what lets the hook keep
working against OpenAI-compatible servers without our extensions.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Union

import httpx2

from ..errors import ExecSessionsError, ServiceUnavailableError
from ._core import Call, error_from_response

__all__ = ["AsyncTransport", "SSEDecoder", "ServerSentEvent", "SyncTransport", "is_unreachable"]

#: Connect/write/pool timeout of a stream; its read timeout is the caller's (default: none).
_STREAM_CONNECT_S = 60.0
#: ``None`` stands for "the stream is open" (first) and for each keep-alive comment after.
Frame = Union["ServerSentEvent", None]


@dataclass(frozen=True)
class ServerSentEvent:
    """One dispatched server-sent event."""

    event: str = "message"
    data: str = ""
    id: str = ""


class _KeepAlive:
    """Marker returned by ``SSEDecoder.feed`` for a comment line."""


KEEPALIVE = _KeepAlive()


class SSEDecoder:
    """Line-by-line parser of ``text/event-stream`` (the WHATWG rules we need, comments kept).

    ``feed(line)`` returns a :class:`ServerSentEvent` when a blank line dispatches one, the
    ``KEEPALIVE`` marker for a comment line (``: keepalive``: the connection is alive), and
    ``None`` otherwise. ``retry`` fields are ignored: callers choose their own backoff.
    """

    def __init__(self) -> None:
        self._event = ""
        self._id = ""
        self._data: list[str] = []
        self._pending = False

    def feed(self, line: str) -> ServerSentEvent | _KeepAlive | None:
        """Consume one line (without its line terminator)."""
        if not line:
            if not self._pending:
                return None
            sse = ServerSentEvent(self._event or "message", "\n".join(self._data), self._id)
            self._event, self._data, self._pending = "", [], False
            return sse
        if line.startswith(":"):
            return KEEPALIVE
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value  # the last event id persists across events, as in browsers
        else:
            return None
        self._pending = True
        return None


def _frame(decoded: ServerSentEvent | _KeepAlive | None) -> tuple[bool, Frame]:
    """``(emit, frame)`` for one decoded line: events and keep-alives are emitted."""
    if decoded is None:
        return False, None
    return True, (None if isinstance(decoded, _KeepAlive) else decoded)


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` says the server could not be reached (rather than that it answered)."""
    return isinstance(exc, ServiceUnavailableError) and isinstance(exc.__cause__, httpx2.HTTPError)


def _unreachable(root: str, exc: httpx2.HTTPError) -> ExecSessionsError:
    return ServiceUnavailableError(f"Cannot reach {root}: {exc}")


def _check(response: httpx2.Response, body: bytes, call: Call) -> bytes:
    if response.status_code >= 400:
        raise error_from_response(
            response.status_code, body, response.headers, container_id=call.container_id
        )
    return body


class _Transport:
    """What both flavours share: the API root, the headers and how a call becomes a request."""

    def __init__(self, api_root: str, headers: Mapping[str, str] | None) -> None:
        self.api_root = api_root.rstrip("/")
        self.headers = {"Accept": "application/json", **(headers or {})}

    def _request(self, call: Call, timeout: Any) -> dict[str, Any]:
        request: dict[str, Any] = {
            "method": call.method,
            "url": f"{self.api_root}/{call.path}",
            "params": call.params,
            "json": call.json,
            "files": call.files,
            "headers": {**self.headers, **call.headers},
        }
        if timeout is not None:
            request["timeout"] = timeout
        return request

    def _stream_request(self, call: Call, read_timeout: float | None) -> dict[str, Any]:
        call.headers.setdefault("Accept", "text/event-stream")
        call.headers.setdefault("Cache-Control", "no-store")
        return self._request(call, httpx2.Timeout(_STREAM_CONNECT_S, read=read_timeout))


class AsyncTransport(_Transport):
    """Sends calls to one API root over an ``httpx2.AsyncClient`` (see module docs)."""

    def __init__(
        self, api_root: str, http: httpx2.AsyncClient, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(api_root, headers)
        self.http = http

    async def send(self, call: Call, *, timeout: float | httpx2.Timeout | None = None) -> bytes:
        """Send ``call``; return the body of a success, raise the mapped error otherwise."""
        try:
            response = await self.http.request(**self._request(call, timeout))
        except httpx2.HTTPError as exc:
            raise _unreachable(self.api_root, exc) from exc
        return _check(response, response.content, call)

    async def stream(
        self, call: Call, *, read_timeout: float | None = None
    ) -> AsyncIterator[Frame]:
        """Open an SSE response and yield ``None`` once it is open, then its frames.

        Frames are :class:`ServerSentEvent` objects and ``None`` for each keep-alive comment.
        Leaving the iteration closes the connection.
        """
        try:
            async with self.http.stream(**self._stream_request(call, read_timeout)) as response:
                if response.status_code >= 400:
                    _check(response, await response.aread(), call)
                yield None
                decoder = SSEDecoder()
                async for line in response.aiter_lines():
                    emit, frame = _frame(decoder.feed(line))
                    if emit:
                        yield frame
        except httpx2.HTTPError as exc:
            raise _unreachable(self.api_root, exc) from exc


class SyncTransport(_Transport):
    """The blocking twin of :class:`AsyncTransport`, over an ``httpx2.Client``."""

    def __init__(
        self, api_root: str, http: httpx2.Client, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(api_root, headers)
        self.http = http

    def send(self, call: Call, *, timeout: float | httpx2.Timeout | None = None) -> bytes:
        """Send ``call``; return the body of a success, raise the mapped error otherwise."""
        try:
            response = self.http.request(**self._request(call, timeout))
        except httpx2.HTTPError as exc:
            raise _unreachable(self.api_root, exc) from exc
        return _check(response, response.content, call)

    def stream(self, call: Call, *, read_timeout: float | None = None) -> Iterator[Frame]:
        """Open an SSE response and yield ``None`` once it is open, then its frames."""
        try:
            with self.http.stream(**self._stream_request(call, read_timeout)) as response:
                if response.status_code >= 400:
                    _check(response, response.read(), call)
                yield None
                decoder = SSEDecoder()
                for line in response.iter_lines():
                    emit, frame = _frame(decoder.feed(line))
                    if emit:
                        yield frame
        except httpx2.HTTPError as exc:
            raise _unreachable(self.api_root, exc) from exc
