"""Base of the containers API handlers: authentication, owners, and the OpenAI error mapping.

The one place where infrastructure errors (``errors.ExecSessionsError``) and HTTP errors become
HTTP bodies: every error on this API has the OpenAI shape
``{"error": {"message", "type", "param", "code"}}``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from pydantic import BaseModel, ValidationError
from tornado import web

from .._contract import AUTH_RESOURCE
from ..errors import ExecSessionsError, InvalidRequestError, PayloadTooLargeError
from ..service import ContainerService
from .body import GuardedBody
from .jsoncheck import json_problem

__all__ = [
    "ExecSessionsHandler",
    "authorized_to_execute",
    "error_body",
    "openai_errors",
    "owner_of",
    "validation_error",
]


_STATUS_TYPES = {
    400: ("invalid_request_error", "invalid_request"),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "forbidden"),
    404: ("not_found_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "payload_too_large"),
    429: ("rate_limit_error", "rate_limited"),
}
M = TypeVar("M", bound=BaseModel)
F = TypeVar("F", bound=Callable[..., Awaitable[None]])


SERVER_OWNER = "server-owner"


def authorized_to_execute(method: F) -> F:
    """``@authorized`` with the action jupyter_server uses for running code in a kernel."""
    return cast(F, authorized(action="execute")(method))


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


def validation_error(e: ValidationError) -> tuple[str, str | None]:
    """The OpenAI-style message and ``param`` for a pydantic validation error."""
    err = e.errors()[0]
    parts = [str(p) for p in err["loc"]]
    if len(parts) > 1 and parts[0] in ("python", "shell"):
        parts = parts[1:]  # the discriminated union's tag is not a field of the body
    loc = ".".join(parts)
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


@web.stream_request_body
class ExecSessionsHandler(GuardedBody, APIHandler):
    """Base: authentication (a 401) and size limits before the body, OpenAI errors, JSON."""

    auth_resource = AUTH_RESOURCE

    def body_too_large(self, size: int | None, limit: int) -> Exception:
        """A 413 in the OpenAI shape."""
        got = f"{size} bytes" if size is not None else "larger than the limit"
        return PayloadTooLargeError(
            f"The request body is {got}; the limit for this route is {limit} bytes"
            " (max_body_bytes).",
        )

    @property
    def service(self) -> ContainerService:
        """The container service of this server."""
        return cast(ContainerService, self.settings["exec_sessions_service"])

    @property
    def owner(self) -> str:
        """Who the containers of this request belong to (see :func:`owner_of`)."""
        return owner_of(self)

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
        r"""The request's JSON object body; 400 when it is not one.

        Also 400 (naming the field) for JSON nested deeper than any request needs and for
        strings that are not Unicode text (a lone surrogate such as ``"\\ud800"``).
        """
        raw = self.body_bytes()
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except RecursionError:
            raise InvalidRequestError("The request body is nested too deeply.") from None
        except (UnicodeDecodeError, ValueError):
            raise InvalidRequestError("The request body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise InvalidRequestError("The request body must be a JSON object.")
        problem = json_problem(body)
        if problem is not None:
            message, param = problem
            raise InvalidRequestError(message, param=param)
        return body

    def parse(self, model: type[M], data: dict[str, Any]) -> M:
        """Validate a body into a model; a bad field is a 400 naming it."""
        try:
            return model.model_validate(data)
        except ValidationError as e:
            message, param = validation_error(e)
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
