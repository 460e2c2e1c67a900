"""``ContainersAPIBackend`` against OpenAI's own containers API shapes.

OpenAI's API is not reachable from tests, so a few lines of Starlette answer with its
documented shapes (no ``exec_sessions``; ``status`` ``running`` / ``expired``; OpenAI error
bodies). Our own server is covered by ``test_hook.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from helpers import serve_asgi
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from jupyter_exec_sessions.errors import AuthenticationError
from jupyter_exec_sessions.hook import ContainersAPIBackend, SessionResolver

KEY = "sk-test"


def openai_container(cid: str, status: str) -> dict[str, Any]:
    return {
        "id": cid,
        "object": "container",
        "name": "c",
        "created_at": 1,
        "last_active_at": 1,
        "status": status,
        "expires_after": {"anchor": "last_active_at", "minutes": 20},
        "memory_limit": "1g",
    }


class OpenAIShapes:
    """Records every request; serves two containers: one running, one expired."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.containers = {"cntr_live": "running", "cntr_old": "expired"}

    def app(self) -> Starlette:
        async def record(request: Request) -> JSONResponse | None:
            body = await request.json() if request.method == "POST" else None
            self.requests.append((request.method, request.url.path, body))
            if request.headers.get("authorization") != f"Bearer {KEY}":
                return JSONResponse(
                    {
                        "error": {
                            "message": "bad key",
                            "type": "invalid_request_error",
                            "param": None,
                            "code": "invalid_api_key",
                        }
                    },
                    status_code=401,
                )
            return None

        async def container(request: Request) -> JSONResponse:
            if (denied := await record(request)) is not None:
                return denied
            cid = request.path_params["cid"]
            if cid not in self.containers:
                return JSONResponse(
                    {
                        "error": {
                            "message": "No such container",
                            "type": "invalid_request_error",
                            "param": None,
                            "code": None,
                        }
                    },
                    status_code=404,
                )
            return JSONResponse(openai_container(cid, self.containers[cid]))

        async def create(request: Request) -> JSONResponse:
            if (denied := await record(request)) is not None:
                return denied
            cid = f"cntr_made{len(self.containers)}"
            self.containers[cid] = "running"
            return JSONResponse(openai_container(cid, "running"))

        async def anything(request: Request) -> JSONResponse:
            await record(request)
            return JSONResponse({"error": {"message": "unknown route"}}, status_code=404)

        return Starlette(
            routes=[
                Route("/v1/containers", create, methods=["POST"]),
                Route("/v1/containers/{cid}", container, methods=["GET"]),
                Route("/{path:path}", anything, methods=["GET", "POST"]),
            ]
        )


@pytest.fixture(scope="module")
def openai_api() -> Iterator[tuple[OpenAIShapes, str]]:
    shapes = OpenAIShapes()
    with serve_asgi(shapes.app()) as base:
        yield shapes, f"{base}/v1"


async def test_the_backend_resolves_against_openai_container_shapes(
    openai_api: tuple[OpenAIShapes, str],
) -> None:
    shapes, base = openai_api
    backend = ContainersAPIBackend(base, KEY)
    resolver = SessionResolver(backend)
    try:
        live = await resolver.resolve({"type": "code_interpreter", "container": "cntr_live"})
        assert (live.id, live.origin, live.container.ours) == ("cntr_live", "explicit", False)
        old = await resolver.resolve({"type": "code_interpreter", "container": "cntr_old"})
        assert (old.origin, old.reason, old.previous_id) == ("replaced", "expired", "cntr_old")
        gone = await resolver.resolve(
            {"type": "shell", "environment": {"type": "container_auto", "memory_limit": "4g"}},
            [{"type": "code_interpreter_call", "container_id": "cntr_nope"}],
        )
        assert (gone.origin, gone.reason) == ("replaced", "not_found")
    finally:
        await backend.aclose()
    paths = [(method, path) for method, path, _ in shapes.requests]
    assert not any(path.endswith("/resolutions") for _, path in paths)  # only ours get reports
    creates = [body for method, path, body in shapes.requests if method == "POST"]
    assert creates[-1]["memory_limit"] == "4g" and "file_ids" not in creates[-1]


async def test_a_wrong_api_key_is_an_authentication_error(
    openai_api: tuple[OpenAIShapes, str],
) -> None:
    _, base = openai_api
    backend = ContainersAPIBackend(base, "wrong")
    try:
        with pytest.raises(AuthenticationError, match="bad key"):
            await backend.find("cntr_live")
    finally:
        await backend.aclose()
