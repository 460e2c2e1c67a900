"""Reference Responses gateway: proves and demos the session hook. It is not a model server.

``jupyter-exec-sessions gateway --url URL --token TOKEN`` serves ``POST /v1/responses`` (and
``GET /v1/responses/{id}``) for the official ``openai`` SDK. Its "model" is a script: it runs the
last user message's text as the tool input — Python for ``code_interpreter``, one shell command
per line for ``shell`` — on the Jupyter server at ``URL`` and answers with an assistant message
holding the output. Everything interesting is the hook (:mod:`jupyter_exec_sessions.hook`):

- a ``RequestToolContext`` per request resolves the container lazily and once (explicit id,
  reuse from ``previous_response_id`` history, create, or replace an expired/deleted one);
- tool calls go through one shared ``MCPClientPool`` with the container, session and turn ids
  in ``_meta``;
- ``stream: true`` answers server-sent events in the Responses API's order; Python output also
  arrives while the code runs, as ``response.code_interpreter_call_output.delta`` (an extension
  event; the SDK passes unknown events through), shell output as
  ``response.shell_call_output_content.delta``.

Stored responses live in memory (bounded); the session id of a conversation is
``metadata.session_id`` if the request gives one, else the id of its first response.
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .._contract import API_PATH, ENV_TOKEN, ENV_URL, MCP_PATH, new_id
from ..errors import ExecSessionsError, InvalidRequestError, NotFoundError
from ..hook import (
    ContainersAPIBackend,
    MCPClientPool,
    MCPServerConfig,
    RequestToolContext,
    SessionResolver,
)
from .model import Turn, run_turn

__all__ = ["create_app", "main"]

DESCRIPTION = (
    "Reference Responses gateway for jupyter-exec-sessions. It exists to prove and demo the "
    "session hook with the official openai SDK; it is NOT a model server: its scripted 'model' "
    "runs the last user message as Python (code_interpreter) or shell commands (shell)."
)


@dataclass
class _Stored:
    """A finished response, kept so ``previous_response_id`` can continue from it."""

    response: dict[str, Any]
    items: list[Any]  # this turn's input items, then its output items
    previous_id: str | None
    session_id: str


def _error(exc: ExecSessionsError) -> JSONResponse:
    return JSONResponse(exc.to_body(), status_code=exc.status)


def _user_text(input_: Any) -> str:
    if isinstance(input_, str):
        return input_
    for item in reversed(input_ if isinstance(input_, list) else []):
        if not isinstance(item, dict) or item.get("role") != "user":
            continue
        if item.get("type", "message") != "message":
            continue
        content = item.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "".join(
                str(part.get("text", ""))
                for part in content
                if isinstance(part, dict) and part.get("type") in ("input_text", "text")
            )
    raise InvalidRequestError("The input has no user message for the scripted model to run.")


def _pick_tool(body: dict[str, Any]) -> dict[str, Any]:
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict)]
    choice = body.get("tool_choice")
    wanted = choice.get("type") if isinstance(choice, dict) else None
    for tool in tools:
        if tool.get("type") in ("code_interpreter", "shell") and wanted in (None, tool["type"]):
            return tool
    raise InvalidRequestError(
        "The reference gateway's scripted model needs a code_interpreter or shell tool.",
        param="tools",
    )


class _Gateway:
    """State shared by all requests: hook objects and the stored responses."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        on_expired: Literal["recreate", "error"],
        api_key: str | None,
        max_stored: int,
    ) -> None:
        base = url if url.endswith("/") else url + "/"
        self.backend = ContainersAPIBackend(f"{base}{API_PATH}", token)
        self.resolver = SessionResolver(self.backend, on_expired=on_expired)
        self.pool = MCPClientPool(client_name="jupyter-exec-sessions-gateway")
        self.mcp = MCPServerConfig(url=f"{base}{MCP_PATH}", token=token)
        self.api_key = api_key
        self.max_stored = max_stored
        self.stored: OrderedDict[str, _Stored] = OrderedDict()

    def chain(self, previous_id: str | None) -> list[_Stored]:
        """The stored turns leading to ``previous_id``, oldest first."""
        turns: list[_Stored] = []
        while previous_id is not None:
            stored = self.stored.get(previous_id)
            if stored is None:
                raise NotFoundError(f"Previous response with id '{previous_id}' not found.")
            turns.append(stored)
            previous_id = stored.previous_id
        return turns[::-1]

    def store(self, turn: Turn, response: dict[str, Any], session_id: str) -> None:
        """Remember a finished turn (oldest entries are dropped past ``max_stored``)."""
        input_ = turn.request.get("input")
        items = [{"role": "user", "content": input_}] if isinstance(input_, str) else input_
        self.stored[turn.response_id] = _Stored(
            response=response,
            items=[*(items or []), *response["output"]],
            previous_id=turn.request.get("previous_response_id"),
            session_id=session_id,
        )
        while len(self.stored) > self.max_stored:
            self.stored.popitem(last=False)

    def authorized(self, request: Request) -> bool:
        """Whether the request carries the gateway's API key (always true without one)."""
        if not self.api_key:
            return True
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        return hmac.compare_digest(given, self.api_key)

    def turn(self, body: dict[str, Any]) -> tuple[Turn, str]:
        """Build the turn (and its request context) for a validated request body."""
        chain = self.chain(body.get("previous_response_id"))
        response_id = new_id("resp_")
        metadata = body.get("metadata") or {}
        session_id = str(
            metadata.get("session_id") or (chain[0].session_id if chain else response_id)
        )
        history: list[Any] = [item for stored in chain for item in stored.items]
        if isinstance(body.get("input"), list):
            history.extend(body["input"])
        tools = body.get("tools") or []
        tool = _pick_tool(body)
        context = RequestToolContext(
            self.resolver, history, tools=tools, session_id=session_id, turn_id=response_id
        )
        turn = Turn(
            response_id=response_id,
            model=str(body.get("model") or "scripted"),
            tool=tool,
            user_text=_user_text(body.get("input")),
            context=context,
            pool=self.pool,
            mcp=self.mcp,
            request=body,
        )
        return turn, session_id


def _sse(event: dict[str, Any]) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


def create_app(
    url: str,
    token: str | None = None,
    *,
    on_expired: Literal["recreate", "error"] = "recreate",
    api_key: str | None = None,
    max_stored: int = 10_000,
) -> Starlette:
    """The reference gateway as a Starlette app, executing on the Jupyter server at ``url``.

    ``token`` authenticates to that server; ``api_key``, if given, is required from clients
    (``Authorization: Bearer``). ``app.state.gateway`` exposes the hook objects (``resolver``,
    ``backend``, ``pool``) for inspection.
    """
    gw = _Gateway(url, token, on_expired=on_expired, api_key=api_key, max_stored=max_stored)

    async def create_response(request: Request) -> Response:
        if not gw.authorized(request):
            return JSONResponse(
                {
                    "error": {
                        "message": "Invalid API key.",
                        "type": "authentication_error",
                        "param": None,
                        "code": "invalid_api_key",
                    }
                },
                status_code=401,
            )
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise InvalidRequestError("The request body must be a JSON object.")
            turn, session_id = gw.turn(body)
        except ValueError:
            return _error(InvalidRequestError("The request body is not valid JSON."))
        except ExecSessionsError as exc:
            return _error(exc)

        def finished(event: dict[str, Any]) -> None:
            if event["type"] in ("response.completed", "response.failed"):
                gw.store(turn, event["response"], session_id)

        if body.get("stream"):

            async def stream() -> AsyncIterator[bytes]:
                # `turn` (and its RequestToolContext) is passed explicitly into this
                # generator, which Starlette consumes in another task.
                async for event in run_turn(turn):
                    finished(event)
                    yield _sse(event)

            return StreamingResponse(
                stream(),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
            )
        last: dict[str, Any] = {}
        async for event in run_turn(turn):
            finished(event)
            last = event
        if turn.error is not None:
            return _error(turn.error)
        return JSONResponse(last["response"])

    async def get_response(request: Request) -> Response:
        if not gw.authorized(request):
            return JSONResponse({"error": {"message": "Invalid API key."}}, status_code=401)
        stored = gw.stored.get(request.path_params["response_id"])
        if stored is None:
            return _error(NotFoundError("Response not found."))
        return JSONResponse(stored.response)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await gw.pool.aclose()
        await gw.backend.aclose()

    app = Starlette(
        routes=[
            Route("/v1/responses", create_response, methods=["POST"]),
            Route("/v1/responses/{response_id}", get_response, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.gateway = gw
    return app


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jupyter-exec-sessions gateway", description=DESCRIPTION)
    parser.add_argument(
        "--url",
        default=os.environ.get(ENV_URL),
        help="the Jupyter server's base URL (default: $JUPYTER_EXEC_SESSIONS_URL)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get(ENV_TOKEN),
        help="the Jupyter server's token (default: $JUPYTER_EXEC_SESSIONS_TOKEN)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    parser.add_argument("--port", type=int, default=8400, help="port to listen on")
    parser.add_argument(
        "--on-expired",
        choices=("recreate", "error"),
        default="recreate",
        help="what to do when a request names an expired or deleted container",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("JUPYTER_EXEC_SESSIONS_GATEWAY_KEY"),
        help="require this bearer key from clients (default: $JUPYTER_EXEC_SESSIONS_GATEWAY_KEY;"
        " none)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the reference gateway until interrupted; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("--url (or JUPYTER_EXEC_SESSIONS_URL) is required")
    import uvicorn

    app = create_app(args.url, args.token, on_expired=args.on_expired, api_key=args.api_key)
    print(f"Reference gateway (not a model server) on http://{args.host}:{args.port}/v1")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0
