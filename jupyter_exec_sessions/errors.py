"""Exception hierarchy of jupyter-exec-sessions.

Every infrastructure failure is one of these exceptions; each has a stable ``code``, an
HTTP ``status`` and an OpenAI error ``type``. They are mapped to wire bodies in exactly one
place per face: ``handlers.py`` (OpenAI error JSON) and ``mcp_server.py`` (MCP tool errors).
An exception raised by *user code* is never one of these: it is data, an ``error`` output of a
``failed`` execution.

::

    ExecSessionsError                 500 server_error        (base; never for user input)
    ├── InvalidRequestError           400 invalid_request_error
    │   └── ContainerExpiredError     400 invalid_request_error  code=container_expired
    ├── AuthenticationError           401 authentication_error
    ├── NotFoundError                 404 not_found_error
    │   ├── ContainerNotFoundError        code=container_not_found
    │   └── ContainerFileNotFoundError    code=file_not_found
    ├── PayloadTooLargeError          413 invalid_request_error  code=payload_too_large
    ├── RateLimitError                429 rate_limit_error       (carries retry_after)
    │   ├── QuotaExceededError            code=quota_exceeded
    │   └── QueueFullError                code=queue_full
    ├── KernelError                   500 server_error           code=kernel_error
    └── ServiceUnavailableError       503 server_error           code=unavailable
"""

from __future__ import annotations

__all__ = [
    "AuthenticationError",
    "ContainerExpiredError",
    "ContainerNotFoundError",
    "ExecSessionsError",
    "ContainerFileNotFoundError",
    "InvalidRequestError",
    "KernelError",
    "NotFoundError",
    "PayloadTooLargeError",
    "QueueFullError",
    "QuotaExceededError",
    "RateLimitError",
    "ServiceUnavailableError",
]


class ExecSessionsError(Exception):
    """Base of every infrastructure error; carries the wire mapping."""

    status: int = 500
    type: str = "server_error"
    code: str = "server_error"

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def to_body(self) -> dict[str, dict[str, str | None]]:
        """The OpenAI error body ``{"error": {message, type, param, code}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequestError(ExecSessionsError):
    """The request is malformed or not allowed (HTTP 400)."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_request"


class ContainerExpiredError(InvalidRequestError):
    """The container expired; only retrieve, list and delete still work (HTTP 400)."""

    code = "container_expired"

    def __init__(self, container_id: str | None = None) -> None:
        super().__init__("Container is expired.", param=None)
        self.container_id = container_id


class AuthenticationError(ExecSessionsError):
    """Missing or wrong credentials (HTTP 401)."""

    status = 401
    type = "authentication_error"
    code = "invalid_api_key"


class NotFoundError(ExecSessionsError):
    """An unknown id, or one that belongs to another user (HTTP 404)."""

    status = 404
    type = "not_found_error"
    code = "not_found"


class ContainerNotFoundError(NotFoundError):
    """No container with this id is visible to the caller."""

    code = "container_not_found"

    def __init__(self, container_id: str) -> None:
        super().__init__(f"No container found with id '{container_id}'.")
        self.container_id = container_id


class ContainerFileNotFoundError(NotFoundError):
    """No file with this id exists in the container."""

    code = "file_not_found"

    def __init__(self, file_id: str) -> None:
        super().__init__(f"No file found with id '{file_id}'.")
        self.file_id = file_id


class PayloadTooLargeError(ExecSessionsError):
    """A body, upload or code string exceeds a configured size limit (HTTP 413)."""

    status = 413
    type = "invalid_request_error"
    code = "payload_too_large"


class RateLimitError(ExecSessionsError):
    """A quota or queue is full; retry later (HTTP 429 with ``retry-after``)."""

    status = 429
    type = "rate_limit_error"
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float = 1.0, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class QuotaExceededError(RateLimitError):
    """Too many containers for this user or this server."""

    code = "quota_exceeded"


class QueueFullError(RateLimitError):
    """The container's execution queue is full."""

    code = "queue_full"


class KernelError(ExecSessionsError):
    """The kernel could not be started or reached (HTTP 500); never caused by user input."""

    code = "kernel_error"


class ServiceUnavailableError(ExecSessionsError):
    """The service is shutting down or not ready (HTTP 503)."""

    status = 503
    code = "unavailable"
