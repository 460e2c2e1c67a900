"""Wire helpers shared by the sync and async HTTP clients: URLs, requests, error mapping.

Private: the public surface is :mod:`jupyter_exec_sessions.client`. Depends only on ``models``
and ``errors`` (like the client itself).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Union
from urllib.parse import quote, unquote

import httpx2
from pydantic import TypeAdapter, ValidationError

from .. import errors
from .._contract import API_PATH, ConversationContainer
from ..errors import ExecSessionsError
from ..models import (
    EVENT_ADAPTER,
    ConversationContainerObject,
    ConversationEnded,
    CreateContainerRequest,
    Event,
    Execution,
    ExecutionRequest,
    ExecutionStreamEvent,
    ExpiresAfter,
    MemoryLimit,
)

__all__ = ["API_PATH", "api_base_url", "error_from_response"]


_DEFAULT_TIMEOUT = httpx2.Timeout(60.0)
_EXEC_ADAPTER: TypeAdapter[Execution] = TypeAdapter(Execution)

FileInput = Union[bytes, str, Path, IO[bytes]]
ExecRequest = ExecutionRequest


def api_base_url(url: str) -> str:
    """Return the API root (``…/exec-sessions/v1``) of a server base URL (or the API URL)."""
    url = url.rstrip("/")
    return url if url.endswith(API_PATH) else f"{url}/{API_PATH}"


# --------------------------------------------------------------------------- errors
_BY_CODE: dict[str, type[ExecSessionsError]] = {
    "container_expired": errors.ContainerExpiredError,
    "container_not_found": errors.ContainerNotFoundError,
    "file_not_found": errors.ContainerFileNotFoundError,
    "payload_too_large": errors.PayloadTooLargeError,
    "quota_exceeded": errors.QuotaExceededError,
    "queue_full": errors.QueueFullError,
    "kernel_error": errors.KernelError,
    "unavailable": errors.ServiceUnavailableError,
}
_BY_STATUS: dict[int, type[ExecSessionsError]] = {
    400: errors.InvalidRequestError,
    401: errors.AuthenticationError,
    403: errors.AuthenticationError,
    404: errors.NotFoundError,
    413: errors.PayloadTooLargeError,
    429: errors.RateLimitError,
    503: errors.ServiceUnavailableError,
}


def error_from_response(
    status: int,
    body: bytes | str | Mapping[str, Any] | None,
    headers: Mapping[str, str] | None = None,
    *,
    container_id: str | None = None,
) -> ExecSessionsError:
    """Map an HTTP error answer back to the exception class the server raised.

    The error ``code`` decides first, then the HTTP status; the server's ``message`` and
    ``param`` are kept, and ``retry-after`` becomes ``RateLimitError.retry_after``.
    """
    detail: Mapping[str, Any] = {}
    parsed: Any = body
    if isinstance(body, bytes | str):
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
    if isinstance(parsed, Mapping):
        inner = parsed.get("error")
        detail = inner if isinstance(inner, Mapping) else parsed
    code = detail.get("code") if isinstance(detail.get("code"), str) else None
    message = str(detail.get("message") or detail.get("reason") or f"HTTP {status}")
    param = detail.get("param") if isinstance(detail.get("param"), str) else None
    cls = _BY_CODE.get(code or "") or _BY_STATUS.get(status) or ExecSessionsError
    exc = cls.__new__(cls)
    if issubclass(cls, errors.RateLimitError):
        retry_after = 1.0
        with contextlib.suppress(ValueError):
            retry_after = float((headers or {}).get("retry-after", 1.0))
        errors.RateLimitError.__init__(exc, message, retry_after=retry_after, code=code)  # type: ignore[arg-type]
    else:
        ExecSessionsError.__init__(exc, message, param=param, code=code)
    if status != cls.status and code is None:
        exc.status = status
    if isinstance(exc, errors.ContainerNotFoundError | errors.ContainerExpiredError):
        exc.container_id = container_id
    return exc


# --------------------------------------------------------------------------- requests
@dataclass
class Call:
    """One API request, built once and sent by either client."""

    method: str
    path: str
    params: dict[str, Any] | None = None
    json: Any = None
    files: Any = None
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def container_id(self) -> str | None:
        """The container this call addresses (for not-found/expired errors)."""
        parts = self.path.split("/")
        return unquote(parts[1]) if len(parts) > 1 and parts[0] == "containers" else None


def _seg(value: str) -> str:
    return quote(value, safe="")


def _page(**params: Any) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _create_request(
    request: CreateContainerRequest | None,
    name: str | None,
    expires_after: ExpiresAfter | int | None,
    memory_limit: MemoryLimit | None,
) -> CreateContainerRequest:
    if request is not None:
        return request
    if name is None:
        raise TypeError("create_container() needs a request or a name")
    if isinstance(expires_after, int):
        expires_after = ExpiresAfter(minutes=expires_after)
    return CreateContainerRequest(name=name, expires_after=expires_after, memory_limit=memory_limit)


def _file_part(file: FileInput, filename: str | None) -> Any:
    if isinstance(file, str | Path):
        path = Path(file)
        return (filename or path.name, path.read_bytes())
    if isinstance(file, bytes):
        return (filename or "upload.bin", file)
    return (filename or Path(str(getattr(file, "name", "upload.bin"))).name, file)


def _exec_call(container_id: str, request: ExecRequest, stream: bool) -> Call:
    body = request.model_dump(mode="json", exclude_none=True)
    body["stream"] = stream
    return Call("POST", f"containers/{_seg(container_id)}/executions", json=body)


def _stream_event(data: str, event_name: str) -> ExecutionStreamEvent | None:
    if not data.strip():
        return None
    payload = json.loads(data)
    if isinstance(payload, dict) and "error" in payload and "seq" not in payload:
        raise error_from_response(500, payload)
    if isinstance(payload, dict) and "type" not in payload and event_name != "message":
        payload["type"] = event_name
    return ExecutionStreamEvent.model_validate(payload)


def _conversation_call(key: str, name: str | None) -> Call:
    return Call("POST", "conversations", json=_page(key=key, name=name))


def _conversation(data: bytes) -> ConversationContainer:
    bound = ConversationContainerObject.model_validate_json(data)
    return ConversationContainer(bound.container_id, bound.replaced, bound.reason)


def _end_conversation_call(key: str) -> Call:
    return Call("DELETE", "conversations", params={"key": key})


def _ended(data: bytes) -> bool:
    return ConversationEnded.model_validate_json(data).deleted


def _events_call(last_event_id: str | int | None) -> Call:
    call = Call("GET", "events")
    if last_event_id is not None:
        call.headers["Last-Event-ID"] = str(last_event_id)
    return call


def _feed_event(data: str) -> Event | None:
    """The event of one feed frame; ``None`` when empty or of a type we do not know.

    A newer server may add event types: the feed stays readable.
    """
    if not data.strip():
        return None
    try:
        return EVENT_ADAPTER.validate_json(data)
    except ValidationError:
        return None


def _incomplete() -> ExecSessionsError:
    return errors.ServiceUnavailableError(
        "The execution stream ended before the execution completed."
    )


class _Base:
    """Configuration shared by the sync and async clients."""

    def __init__(self, url: str, token: str | None, headers: Mapping[str, str] | None) -> None:
        self.base_url = api_base_url(url)
        self._headers = dict(headers or {})
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
