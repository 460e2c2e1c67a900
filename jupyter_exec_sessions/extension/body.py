"""Request bodies read after authentication and within a size limit; logs without tokens.

tornado reads a request's whole body before a handler runs, unless the handler class is
decorated with ``@web.stream_request_body``. Every handler of this extension that accepts a
body uses :class:`GuardedBody` with that decorator, so that:

1. authentication runs first, on the headers alone: a request without valid credentials gets
   its 401 before a single body byte is kept. A small declared body (up to
   :data:`DRAIN_BEFORE_REFUSAL` bytes, an MCP ``initialize`` for instance) is read and thrown
   away first, so that the refusal is answered on a connection whose bytes were all read:
   closing a socket with unread bytes makes the kernel send a reset, which can reach the
   client before it has read the 401 (it then sees a bare "connection reset" instead of the
   server's message). A larger or undeclared body gets the 401 at once and the connection is
   closed instead of read;
2. a ``Content-Length`` over the route's limit is a 413 before the body is read;
3. a body without ``Content-Length`` (chunked) is counted while it arrives and refused with
   413 as soon as it passes the limit.

The route's limit is :meth:`GuardedBody.body_limit` (``ExecSessionsApp.max_body_bytes`` for
JSON routes, ``max_upload_bytes`` plus multipart framing for uploads).
"""

from __future__ import annotations

from typing import Any

from jupyter_server.log import _scrub_uri
from tornado import httputil, web

__all__ = [
    "DRAIN_BEFORE_REFUSAL",
    "MAX_BODY_SETTING",
    "MULTIPART_OVERHEAD",
    "GuardedBody",
    "scrub_uri",
]

#: Bytes of multipart framing (boundaries, part headers, small form fields) allowed on top of
#: ``max_upload_bytes`` in an upload's body.
MULTIPART_OVERHEAD = 64 * 1024

#: Largest declared body an unauthenticated request may send that is read (and discarded)
#: before its 401 is answered, so that the answer is not lost to a connection reset.
DRAIN_BEFORE_REFUSAL = 64 * 1024

#: Settings key under which the app publishes ``max_body_bytes``.
MAX_BODY_SETTING = "exec_sessions_max_body_bytes"


def scrub_uri(uri: str) -> str:
    """``uri`` with the values of secret query parameters (``token``, ...) replaced."""
    return str(_scrub_uri(uri))


class GuardedBody(web.RequestHandler):
    """Mixin (before ``APIHandler`` in the bases) for ``@web.stream_request_body`` handlers."""

    _body: bytearray
    _body_rejected = False
    _discard_body = False

    def body_limit(self) -> int:
        """Largest body this route accepts, in bytes."""
        return int(self.settings.get(MAX_BODY_SETTING, 8 * 1024 * 1024))

    def body_too_large(self, size: int | None, limit: int) -> Exception:
        """The exception that answers a body over the limit (a 413)."""
        got = f"{size} bytes" if size is not None else "more than the limit"
        return web.HTTPError(
            413, "The request body is %s; the limit is %d bytes (max_body_bytes).", got, limit
        )

    def unauthenticated_message(self) -> str:
        """The message of this route's 401 (an endpoint may say more about what to send)."""
        return "Missing or invalid credentials."

    def get_login_url(self) -> str:
        """An API never redirects to a login page: unauthenticated is a 401."""
        raise web.HTTPError(401, self.unauthenticated_message())

    def check_xsrf_cookie(self) -> None:
        """A request without valid credentials is a 401, not an XSRF 403."""
        if hasattr(self, "_jupyter_current_user") and not self.current_user:
            raise web.HTTPError(401, self.unauthenticated_message())
        super().check_xsrf_cookie()

    def _request_summary(self) -> str:
        """The request line as tornado logs it, without secret query parameters."""
        uri = scrub_uri(self.request.uri or "")
        return f"{self.request.method} {uri} ({self.request.remote_ip})"

    async def prepare(self, *, _redirect_to_login: bool = True) -> None:
        """Authenticate on the headers, then check the declared body size."""
        self._body = bytearray()
        try:
            pending = super().prepare()  # jupyter_server's: sets current_user (or raises a 401)
            if pending is not None:
                await pending
            if not self._finished and not self.current_user:
                raise web.HTTPError(401, self.unauthenticated_message())
        except web.HTTPError as refusal:
            size = self._declared_size()
            if refusal.status_code != 401 or size is None or not 0 < size <= DRAIN_BEFORE_REFUSAL:
                raise
            self._refuse_after_body(refusal)
            return
        if self._finished:
            return
        size = self._declared_size()
        if size is not None:
            limit = self.body_limit()
            if size > limit:
                raise self.body_too_large(size, limit)

    def _declared_size(self) -> int | None:
        """The request's ``Content-Length``, if it sent one (400 when it is not a number)."""
        raw = self.request.headers.get("Content-Length")
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            raise web.HTTPError(400, "Invalid Content-Length header.") from None

    def _refuse_after_body(self, refusal: web.HTTPError) -> None:
        """Answer ``refusal`` once the (small) body has been read and thrown away.

        tornado reads a streamed body only after ``prepare`` returns and then calls the verb;
        the verb of this request is replaced by one that raises ``refusal``, and
        :meth:`data_received` keeps nothing.
        """
        self._discard_body = True

        async def refuse(*args: Any, **kwargs: Any) -> None:
            raise refusal

        setattr(self, (self.request.method or "").lower(), refuse)

    def data_received(self, chunk: bytes) -> None:
        """Keep the body while it stays within the limit; answer 413 once it does not."""
        if self._finished or self._body_rejected or self._discard_body:
            return
        limit = self.body_limit()
        if len(self._body) + len(chunk) > limit:
            self._body_rejected = True
            self._body = bytearray()
            err = self.body_too_large(None, limit)
            self.send_error(getattr(err, "status_code", 413), exc_info=(type(err), err, None))
            return
        self._body += chunk

    def body_bytes(self) -> bytes:
        """The whole request body (only once it has been received: inside a verb)."""
        if self._body_rejected:
            raise web.Finish()
        return bytes(self._body)

    def parse_form(self) -> tuple[dict[str, list[bytes]], dict[str, list[Any]]]:
        """The body's form fields and files (``multipart/form-data`` or urlencoded)."""
        fields: dict[str, list[bytes]] = {}
        files: dict[str, list[Any]] = {}
        try:
            httputil.parse_body_arguments(
                self.request.headers.get("Content-Type", ""),
                self.body_bytes(),
                fields,
                files,
                self.request.headers,
            )
        except httputil.HTTPInputError as e:
            raise web.HTTPError(400, "The form body is malformed: %s", e) from None
        return fields, files
