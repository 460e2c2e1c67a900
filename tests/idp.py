"""A test IdentityProvider with several users, each with its own token.

``Authorization: Bearer alice-secret`` is user ``alice``; ``bob-secret`` is ``bob``. Loaded by
test servers through ``--ServerApp.identity_provider_class=idp.MultiUserIdentityProvider``.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.auth.identity import IdentityProvider, User

USERS = {"alice-secret": "alice", "bob-secret": "bob"}


class MultiUserIdentityProvider(IdentityProvider):
    """Maps bearer tokens to distinct users; anything else is unauthenticated."""

    @property
    def auth_enabled(self) -> bool:
        return True

    async def get_user(self, handler: Any) -> User | None:
        header = handler.request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() in ("bearer", "token") and token in USERS:
            name = USERS[token]
            handler._token_authenticated = True
            return User(username=name, name=name, display_name=name)
        return None
