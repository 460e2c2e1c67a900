"""MCP tools over the containers: ``execute_python_code`` and ``execute_shell_commands``.

The tools are written once against ``_contract.ContainerBackend``; a *resolver* gives the
backend of each call from the authenticated owner (``None`` when the transport has no
authentication, e.g. stdio)::

    in the Jupyter server   create_mcp_server(lambda owner: service.for_user(owner))
    stdio                   create_mcp_server(lambda _owner: http_client, default_session=…)

Which container a call runs in, first match wins:

1. ``_meta["jupyter-exec-sessions/container_id"]`` of the ``tools/call`` request;
2. the ``X-Container-Id`` header of the HTTP request that carried it;
3. the conversation's container, keyed by (owner, conversation id) where the conversation id
   is the turn metadata's session id: so a resumed conversation (``codex exec resume``), a
   reconnect or a second process of the same conversation finds its state again;
4. the MCP session's own container (a call without any conversation id).

Containers made by rules 3 and 4 are *implicit*: they expire after
``implicit_expires_minutes`` idle, an MCP session's container ends with its session, and at
the owner's quota the least recently used idle one is evicted. Coming back to a conversation
whose container is gone makes a new one, and the result starts with a state-reset note.
The conversation → container bindings live in the service (durable, ``ConversationBackend``):
the in-server endpoint calls it directly, the stdio server through the HTTP client
(``/conversations``), so a second stdio process of a conversation finds its container. Only a
backend without ``ConversationBackend`` gets bindings kept in this process.

Turn metadata (``session_id``/``turn_id``) comes from ``_meta`` (``jupyter-exec-sessions/…`` keys,
then Codex's ``x-codex-turn-metadata``), then the ``X-Session-Id``/``X-Turn-Id`` headers. All of a
call's routing is read from its own request.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import logging
import math
import os
from collections.abc import Callable
from typing import Annotated, Any

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream
from mcp.server.mcpserver import Context, MCPServer
from mcp_types import CallToolResult, DiscoverResult, ToolAnnotations
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from opentelemetry import trace
from pydantic import Field

from .. import errors
from .._contract import (
    CODEX_TURN_META_KEY,
    CONTAINER_HEADER,
    META_CONTAINER_ID,
    META_SESSION_ID,
    META_TURN_ID,
    ContainerBackend,
    ConversationBackend,
    conversation_container_name,
)
from ..models import (
    ExecutionRequest,
    Output,
    PythonExecutionRequest,
    ShellExecutionRequest,
)
from .render import output_text, render_execution, tool_error
from .routing import (
    CONVERSATION_PREFIX,
    OWNER_SCOPE_KEY,
    SESSION_PREFIX,
    CallRouting,
    SessionContainers,
    conversation_key,
    read_call,
)

__all__ = [
    "CODEX_TURN_META_KEY",
    "CONTAINER_HEADER",
    "META_CONTAINER_ID",
    "OWNER_SCOPE_KEY",
    "META_SESSION_ID",
    "META_TURN_ID",
    "BackendResolver",
    "create_mcp_server",
    "render_execution",
    "run_stdio",
]

#: Gives the backend for an authenticated owner (``None``: the transport has no auth).
BackendResolver = Callable[[str | None], ContainerBackend]

log = logging.getLogger(__name__)

PYTHON_DESCRIPTION = """\
Run Python code in a persistent IPython kernel and return what it printed and produced.

State persists between calls: variables, imports, functions and open files stay alive, so \
build on earlier results instead of recomputing them. The working directory is the container's \
own directory, shared with execute_shell_commands; write files there with relative paths and \
they stay available to later calls. The value of the last expression is shown as `Out:`, like \
in a notebook; print() output, stderr, rich displays and images (IPython.display, matplotlib) \
are returned, images as image content. An exception returns its traceback: read it, fix the \
code and call again. input() is not available. Very long output is truncated: the head and the \
tail are kept around a marker line and the full output is saved to a file whose path is given. \
If a result says the state was reset, variables and imports from earlier calls are gone and \
must be recreated; the note says whether files survived."""

SHELL_DESCRIPTION = """\
Run shell commands one after the other in the container's persistent shell and return each \
command's stdout, stderr and exit code.

The shell works like one terminal kept open for you: `cd` and `export` carry over to later \
calls. It starts in the container's working directory, the same one execute_python_code uses, \
so files are shared between the two. Commands must not wait for interactive input. Output \
longer than max_output_length characters is truncated: the head and the tail are kept and the \
full output is saved to a file whose path is given. If a result says the state was reset, the \
shell and Python state from earlier calls are gone."""

INSTRUCTIONS = """\
Stateful code execution: execute_python_code runs Python in a persistent kernel and \
execute_shell_commands runs commands in a persistent shell; both share one working directory \
that keeps its files between calls."""


def _explain(exc: errors.ExecSessionsError, call: CallRouting, container_id: str | None) -> str:
    where = {
        "_meta": f"_meta['{META_CONTAINER_ID}']",
        "header": "the X-Container-Id header",
    }.get(call.container_origin or "", "this MCP session")
    if isinstance(exc, errors.ContainerNotFoundError):
        return (
            f"Container '{container_id}' (from {where}) was not found: the id is unknown, "
            "the container was deleted, or it belongs to another user."
        )
    if isinstance(exc, errors.ContainerExpiredError):
        return (
            f"Container '{container_id}' (from {where}) is expired: its kernel was shut down "
            "and its state is gone. Use a new container."
        )
    if isinstance(exc, errors.AuthenticationError):
        return (
            "The code execution server refused this client's credentials "
            f"(HTTP {exc.status}: {exc.message}). Check the configured token."
        )
    if isinstance(exc, errors.RateLimitError):
        return f"{exc.message} Retry in {exc.retry_after:g} s."
    return f"Code execution service error ({exc.code}): {exc.message}"


# --------------------------------------------------------------------------- tools
class _Tools:
    """The tool bodies; one instance per MCP server, holding only the session map."""

    def __init__(self, resolve_backend: BackendResolver, default_session: str | None) -> None:
        self._resolve = resolve_backend
        self._default_session = default_session
        self._sessions = SessionContainers()

    async def run(self, ctx: Context[Any, Any], request: ExecutionRequest) -> CallToolResult:
        call = read_call(ctx, self._default_session)
        if call.metadata is not None:
            request = request.model_copy(update={"metadata": call.metadata})
        try:
            backend = self._resolve(call.owner)
        except errors.ExecSessionsError as exc:
            return tool_error(_explain(exc, call, None))
        if not call.wants_progress:
            return await self._route(call, backend, request, None)
        send, receive = anyio.create_memory_object_stream[Output](math.inf)

        def sink(output: Output, _index: int | None) -> None:
            # The relay may be gone already (the client cancelled, or its session was
            # deleted while the kernel still produced output): drop, never raise into the
            # engine's output hook.
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                send.send_nowait(output)

        async with anyio.create_task_group() as tg:
            tg.start_soon(_relay_progress, ctx, receive)
            with send:
                return await self._route(call, backend, request, sink)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _route(
        self,
        call: CallRouting,
        backend: ContainerBackend,
        request: ExecutionRequest,
        sink: Callable[[Output, int | None], None] | None,
    ) -> CallToolResult:
        if call.container_id is not None:
            try:
                execution = await backend.execute(call.container_id, request, sink)
            except errors.ExecSessionsError as exc:
                return tool_error(_explain(exc, call, call.container_id))
            return render_execution(execution, include_execution=call.include_execution)
        key = conversation_key(call)
        if key is None:
            return tool_error(
                "This request belongs to no MCP session (a stateless request) and carries no "
                "conversation id, so there is no container to run in. Connect with a session "
                f"(the initialize handshake), send _meta['{META_SESSION_ID}'], or name a "
                f"container in _meta['{META_CONTAINER_ID}'] or the X-Container-Id header."
            )
        name = conversation_container_name(key)
        container_id: str | None = None
        try:
            if isinstance(backend, ConversationBackend):
                bound = await backend.conversation_container(key, name)
                container_id = bound.container_id
                try:
                    execution = await backend.execute(container_id, request, sink)
                except (errors.ContainerExpiredError, errors.ContainerNotFoundError):
                    # evicted or deleted between lookup and run: the next lookup replaces it
                    bound = await backend.conversation_container(key, name)
                    container_id = bound.container_id
                    execution = await backend.execute(container_id, request, sink)
                note = _reset_note(key, bound.replaced, bound.reason, container_id)
                return render_execution(
                    execution, reset_note=note, include_execution=call.include_execution
                )
            session = (call.owner, key)
            container_id = await self._sessions.get(session, backend)
            try:
                execution = await backend.execute(container_id, request, sink)
            except (errors.ContainerExpiredError, errors.ContainerNotFoundError) as gone:
                stale = container_id
                container_id = await self._sessions.replace(session, stale, backend)
                execution = await backend.execute(container_id, request, sink)
                why = "expired" if isinstance(gone, errors.ContainerExpiredError) else "deleted"
                note = _reset_note(key, stale, why, container_id)
                return render_execution(
                    execution, reset_note=note, include_execution=call.include_execution
                )
        except errors.ExecSessionsError as exc:
            return tool_error(_explain(exc, call, container_id))
        return render_execution(execution, include_execution=call.include_execution)


def _reset_note(key: str, stale: str | None, why: str | None, new: str) -> str | None:
    """The state-reset note for a result that ran in a replacement container."""
    if stale is None:
        return None
    whose = "conversation" if key.startswith(CONVERSATION_PREFIX) else "MCP session"
    because = {
        "expired": "expired after being idle",
        "evicted": "was evicted (idle, to make room for newer work at the container quota)",
        "deleted": "was deleted",
    }.get(why or "", "is gone")
    return (
        f"State reset: this {whose}'s previous container ({stale}) {because}, so this ran in "
        f"a new container ({new}). Variables, imports and files from earlier calls are gone; "
        "recreate what you need."
    )


async def _relay_progress(
    ctx: Context[Any, Any], outputs: MemoryObjectReceiveStream[Output]
) -> None:
    """Send each output's text as a ``notifications/progress`` message, in order."""
    sent = 0
    async with outputs:
        async for output in outputs:
            text = output_text(output)
            if not text:
                continue
            sent += 1
            try:
                await ctx.report_progress(sent, None, text)
            except Exception:  # a gone client must not fail the execution
                log.debug("progress notification dropped", exc_info=True)


def create_mcp_server(
    resolve_backend: BackendResolver,
    *,
    default_session: str | None = None,
    name: str = "jupyter-exec-sessions",
    sessions_required: bool = False,
) -> MCPServer[Any]:
    """Build the MCP server with exactly the two execution tools.

    ``default_session`` is the session key for calls whose transport has no MCP session id
    (stdio: the process is the session). ``sessions_required`` answers ``server/discover``
    with the handshake-era protocol versions only, so that ``mode="auto"`` clients use the
    stateful handshake, which the per-session container needs (the streamable-HTTP endpoint).
    """
    server: MCPServer[Any] = _quiet_mcp_server(name, _version())
    tools = _Tools(resolve_backend, default_session)

    async def execute_python_code(
        code: Annotated[str, Field(description="Python source to run (IPython syntax works).")],
        timeout_seconds: Annotated[
            float | None,
            Field(
                gt=0,
                le=86_400,  # larger values would overflow; the server clamps to its maximum
                allow_inf_nan=False,
                description="Stop the code after this many seconds (default: the server's "
                "default; at most 86400). On timeout it is interrupted; the state is kept.",
            ),
        ] = None,
        *,
        ctx: Context[Any, Any],
    ) -> CallToolResult:
        timeout_ms = None if timeout_seconds is None else max(1, math.ceil(timeout_seconds * 1000))
        return await tools.run(ctx, PythonExecutionRequest(code=code, timeout_ms=timeout_ms))

    async def execute_shell_commands(
        commands: Annotated[
            list[str],
            Field(min_length=1, description="Commands to run in order, e.g. ['cd data', 'ls']."),
        ],
        timeout_ms: Annotated[
            int | None,
            Field(ge=1, description="Time limit in milliseconds (default: the server's)."),
        ] = None,
        max_output_length: Annotated[
            int | None,
            Field(
                ge=1,
                description="Keep at most this many characters of output (head and tail); "
                "default: the server's.",
            ),
        ] = None,
        *,
        ctx: Context[Any, Any],
    ) -> CallToolResult:
        return await tools.run(
            ctx,
            ShellExecutionRequest(
                commands=commands, timeout_ms=timeout_ms, max_output_length=max_output_length
            ),
        )

    # No outputSchema and no structuredContent: results are text and images written for a
    # model (see render.py for why); ids and status travel in the result's _meta.
    hints = ToolAnnotations(destructive_hint=True, idempotent_hint=False, open_world_hint=True)
    server.add_tool(
        execute_python_code,
        title="Run Python",
        description=PYTHON_DESCRIPTION,
        annotations=hints,
    )
    server.add_tool(
        execute_shell_commands,
        title="Run shell commands",
        description=SHELL_DESCRIPTION,
        annotations=hints,
    )
    if sessions_required:
        server.middleware.append(_handshake_versions_only)
    return server


async def _handshake_versions_only(ctx: Any, call_next: Any) -> Any:
    """Answer ``server/discover`` advertising only the handshake-era protocol versions.

    That is the protocol's way for a server to say it needs the ``initialize`` handshake
    (sessions): ``mode="auto"`` clients fall back to it, and the probe is an ordinary 200
    answer instead of a refused request in the server log.
    """
    result = await call_next(ctx)
    if ctx.method != "server/discover":
        return result
    versions = list(HANDSHAKE_PROTOCOL_VERSIONS)
    if isinstance(result, DiscoverResult):
        return result.model_copy(update={"supported_versions": versions})
    if isinstance(result, dict):
        return {**result, "supportedVersions": versions}
    return result


def _version() -> str:
    try:
        return importlib.metadata.version("jupyter-exec-sessions")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - source checkout
        return "0"


def _quiet_mcp_server(name: str, version: str) -> MCPServer[Any]:
    """An ``MCPServer`` that leaves the process's logging alone.

    ``MCPServer()`` calls ``logging.basicConfig`` with a rich handler at INFO; per-request
    INFO logging through rich costs milliseconds per call. A temporary root handler makes
    that call a no-op, and the SDK's loggers default to WARNING unless configured.
    """
    root = logging.getLogger()
    guard = logging.NullHandler()
    root.addHandler(guard)
    try:
        server: MCPServer[Any] = MCPServer(
            name, version=version, instructions=INSTRUCTIONS, log_level="WARNING"
        )
    finally:
        root.removeHandler(guard)
    sdk = logging.getLogger("mcp")
    if sdk.level == logging.NOTSET:
        sdk.setLevel(logging.WARNING)
    if not _tracing_configured():
        # the SDK wraps every message in an OpenTelemetry span, a no-op without a tracer
        # provider that still costs each call its context switches: kept only when tracing
        server.middleware[:] = [
            m for m in server.middleware if type(m).__name__ != "OpenTelemetryMiddleware"
        ]
    return server


def _tracing_configured() -> bool:
    """Whether an OpenTelemetry tracer provider was set up before the server was built."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


# --------------------------------------------------------------------------- stdio
async def run_stdio(url: str, token: str | None) -> None:
    """Serve the tools over stdio, executing on the server at ``url`` via the HTTP client."""
    from ..client import AsyncClient

    session = f"stdio-{os.getpid()}"
    async with AsyncClient(url, token) as client:
        server = create_mcp_server(lambda _owner: client, default_session=session)
        try:
            await server.run_stdio_async()
        finally:
            # this process was the MCP session: its own container ends with it (as the
            # in-server endpoint does when a session closes); conversations' containers stay
            with contextlib.suppress(Exception), anyio.move_on_after(5):
                await client.end_conversation(SESSION_PREFIX + session)
