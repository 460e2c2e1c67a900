"""Isolation below the API: jupyter_server's own kernel, session, terminal and contents APIs.

The containers API already answers 404 for another user's container, but jupyter_server serves
more: ``/api/kernels`` (list, model, interrupt/restart, delete), the kernel websocket
``/api/kernels/{id}/channels``, ``/api/sessions``, ``/api/terminals`` and the contents API. On a
server with several users (any identity provider other than jupyter_server's own single-user
token/password ones) the extension installs :class:`ContainerAuthorizer` in front of the
server's authorizer:

- a container kernel is reachable only by its owner: another user gets 404 from every
  ``/api/kernels/{id}`` route and its channels, and does not see it in ``GET /api/kernels``;
  sessions on it are hidden and cannot be created, changed or deleted by others; warm-pool
  kernels (nobody's yet) are hidden from everyone but admins;
- resources in ``deny_to_non_admins`` (default: ``terminals``, ``contents``, ``files``) are
  refused (403) to users not in ``admin_users``: a terminal or the contents API would reach the
  server's filesystem as the server's OS user, around every sandbox;
- everything else is decided by the server's own authorizer, which is asked first.

On a single-user server all containers belong to the one user and nothing changes.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from jupyter_client.jsonutil import json_default
from jupyter_core.utils import ensure_async
from jupyter_server.auth.authorizer import Authorizer
from jupyter_server.auth.decorator import authorized
from jupyter_server.services.kernels.handlers import MainKernelHandler
from jupyter_server.services.sessions.handlers import SessionRootHandler
from tornado import web

__all__ = ["ContainerAuthorizer", "install_authorizer"]

#: ``kernel_owner(kernel_id)``: the owner of a container kernel, ``""`` for a warm-pool kernel,
#: ``None`` for a kernel that is not ours (a notebook's).
KernelOwner = Callable[[str], "str | None"]


class ContainerAuthorizer(Authorizer):
    """Keeps users away from each other's container kernels; see the module docstring."""

    def __init__(
        self,
        inner: Any,
        kernel_owner: KernelOwner,
        owner_of: Callable[[Any], str],
        *,
        admin_users: Iterable[str] = (),
        deny_to_non_admins: Iterable[str] = ("terminals", "contents", "files"),
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.inner = inner
        self.kernel_owner = kernel_owner
        self.owner_of = owner_of
        self.admin_users = set(admin_users)
        self.deny_to_non_admins = set(deny_to_non_admins)

    def is_admin(self, user: Any) -> bool:
        """True for users named in ``admin_users``."""
        return getattr(user, "username", None) in self.admin_users

    def may_use_kernel(self, handler: Any, kernel_id: str | None) -> bool:
        """Whether the request's user may reach ``kernel_id`` (True for non-container kernels)."""
        if not kernel_id:
            return True
        owner = self.kernel_owner(kernel_id)
        if owner is None or self.is_admin(handler.current_user):
            return True
        return owner != "" and owner == self.owner_of(handler)

    async def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        """The inner authorizer's answer, narrowed; raises 404 for another user's kernel."""
        if not await ensure_async(self.inner.is_authorized(handler, user, action, resource)):
            return False
        if resource in self.deny_to_non_admins and not self.is_admin(user):
            return False
        if resource == "kernels":
            kernel_id = handler.path_kwargs.get("kernel_id") or getattr(handler, "kernel_id", None)
            if not self.may_use_kernel(handler, kernel_id):
                raise web.HTTPError(404, f"Kernel does not exist: {kernel_id}")
        elif resource == "sessions":
            for kernel_id in self._session_kernels(handler):
                if not self.may_use_kernel(handler, kernel_id):
                    raise web.HTTPError(404, "Session not found")
        return True

    @staticmethod
    def _session_kernels(handler: Any) -> list[str]:
        """Kernel ids a sessions request touches: the session's, and one named in the body."""
        ids = []
        session_id = handler.path_kwargs.get("session_id") or (
            handler.path_args[0] if handler.path_args else None
        )
        if session_id:
            row = handler.session_manager.cursor.execute(
                "SELECT kernel_id FROM session WHERE session_id=?", (session_id,)
            ).fetchone()
            if row:
                ids.append(row[0])
        if handler.request.method in ("POST", "PATCH") and handler.request.body:
            try:
                body = json.loads(handler.request.body)
                kernel = body.get("kernel") or {}
                if isinstance(kernel, dict) and kernel.get("id"):
                    ids.append(str(kernel["id"]))
            except (ValueError, AttributeError):
                pass
        return ids


class OwnKernelsHandler(MainKernelHandler):
    """``GET /api/kernels`` listing only the kernels the user may reach."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        """The list of kernels, without other users' container kernels."""
        auth = self.authorizer
        km: Any = self.kernel_manager
        kernels = await ensure_async(km.list_kernels())
        if isinstance(auth, ContainerAuthorizer):
            kernels = [k for k in kernels if auth.may_use_kernel(self, k["id"])]
        self.finish(json.dumps(kernels, default=json_default))


class OwnSessionsHandler(SessionRootHandler):
    """``GET /api/sessions`` listing only sessions on kernels the user may reach."""

    @web.authenticated
    @authorized
    async def get(self) -> None:
        """The list of sessions, without those on other users' container kernels."""
        auth = self.authorizer
        sm: Any = self.session_manager
        sessions: list[dict[str, Any]] = await ensure_async(sm.list_sessions())
        if isinstance(auth, ContainerAuthorizer):
            sessions = [
                s for s in sessions if auth.may_use_kernel(self, (s.get("kernel") or {}).get("id"))
            ]
        self.finish(json.dumps(sessions, default=json_default))


_REPLACEMENTS = {MainKernelHandler: OwnKernelsHandler, SessionRootHandler: OwnSessionsHandler}


def _swap_handlers(router: Any) -> int:
    swapped = 0
    for rule in getattr(router, "rules", []):
        target = rule.target
        if isinstance(target, type) and target in _REPLACEMENTS:
            rule.target = _REPLACEMENTS[target]
            swapped += 1
        elif hasattr(target, "rules"):
            swapped += _swap_handlers(target)
    return swapped


def install_authorizer(serverapp: Any, web_app: Any, **kw: Any) -> ContainerAuthorizer:
    """Put a :class:`ContainerAuthorizer` in front of the server's authorizer and lists."""
    inner = web_app.settings["authorizer"]
    authorizer = ContainerAuthorizer(
        inner, parent=serverapp, identity_provider=serverapp.identity_provider, **kw
    )
    web_app.settings["authorizer"] = authorizer
    serverapp.authorizer = authorizer
    _swap_handlers(web_app.default_router)
    return authorizer
