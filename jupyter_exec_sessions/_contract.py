"""Wire constants, defined once, and the protocol the MCP tools are written against.

Everything that two processes must agree on lives here: URL paths, ``_meta`` keys, headers,
event types and id formats. Both faces of the server and every consumer (typed client, hook,
widget, MCP tools, reference gateway) import them from this module.

:class:`ContainerBackend` is what the MCP tools need: the in-process per-user view of the
service (``service.UserContainers``) and the typed HTTP client (``client.AsyncClient``) both
satisfy it, so the in-server MCP endpoint pays no HTTP hop and the stdio MCP server reaches a
remote server unchanged.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, Protocol, Union, get_args, runtime_checkable

from .models import (
    Container,
    CreateContainerRequest,
    Execution,
    ExecutionRequest,
    Output,
)

__all__ = [
    "API_PATH",
    "CONTAINER_ROOT",
    "AUTH_RESOURCE",
    "CODEX_TURN_META_KEY",
    "CONTAINER_HEADER",
    "ENV_TOKEN",
    "ENV_URL",
    "EVENT_TYPES",
    "MCP_PATH",
    "META_CONTAINER_ID",
    "META_INCLUDE_EXECUTION",
    "META_SESSION_ID",
    "META_TURN_ID",
    "RESULT_META_CONTAINER_ID",
    "RESULT_META_EXECUTION",
    "RESULT_META_EXECUTION_ID",
    "RESULT_META_STATE_RESET",
    "RESULT_META_STATUS",
    "SESSION_HEADER",
    "TURN_HEADER",
    "ContainerBackend",
    "ConversationBackend",
    "ConversationContainer",
    "conversation_container_name",
    "EventType",
    "OutputSink",
    "new_id",
]

#: A container's directory as the API names it (file ``path``, ``full_output_file``) in every
#: mode — and, in a sandboxed container, the path its code really sees (OpenAI's convention).
CONTAINER_ROOT: Final = "/mnt/data"
#: The containers API, relative to the Jupyter server's base URL.
API_PATH: Final = "exec-sessions/v1"
#: The streamable-HTTP MCP endpoint, relative to the Jupyter server's base URL.
MCP_PATH: Final = "exec-sessions/mcp"
#: The jupyter_server authorization resource of every route of the extension.
AUTH_RESOURCE: Final = "exec_sessions"

#: ``_meta`` key naming the container a ``tools/call`` runs in.
META_CONTAINER_ID: Final = "jupyter-exec-sessions/container_id"
#: ``_meta`` key carrying the conversation (session) id recorded on the execution.
META_SESSION_ID: Final = "jupyter-exec-sessions/session_id"
#: ``_meta`` key carrying the turn id recorded on the execution.
META_TURN_ID: Final = "jupyter-exec-sessions/turn_id"
#: ``_meta`` flag of a ``tools/call``: put the whole execution object in the result's ``_meta``
#: (:data:`RESULT_META_EXECUTION`), for gateways that build their own output items.
META_INCLUDE_EXECUTION: Final = "jupyter-exec-sessions/include_execution"

# An MCP tool result is text and images for the model; its ``_meta`` (which clients do not
# show a model) carries these facts for programs.
#: The container the call ran in.
RESULT_META_CONTAINER_ID: Final = "jupyter-exec-sessions/container_id"
#: The execution's id (``exec_…``).
RESULT_META_EXECUTION_ID: Final = "jupyter-exec-sessions/execution_id"
#: How it ended: ``completed`` | ``failed`` | ``timed_out`` | ``cancelled``.
RESULT_META_STATUS: Final = "jupyter-exec-sessions/status"
#: Whether the interpreter state of earlier calls is gone (the text says so too).
RESULT_META_STATE_RESET: Final = "jupyter-exec-sessions/state_reset"
#: The whole execution object, only when the call set :data:`META_INCLUDE_EXECUTION`.
RESULT_META_EXECUTION: Final = "jupyter-exec-sessions/execution"
#: Codex's turn metadata in ``_meta`` (an object or a JSON string with session_id / turn_id).
CODEX_TURN_META_KEY: Final = "x-codex-turn-metadata"
#: HTTP header naming the container (MCP requests), lower-case as ASGI gives it.
CONTAINER_HEADER: Final = "x-container-id"
#: HTTP header carrying the conversation id (MCP requests).
SESSION_HEADER: Final = "x-session-id"
#: HTTP header carrying the turn id (MCP requests).
TURN_HEADER: Final = "x-turn-id"

#: Environment variables naming a running server and its token (CLI, widget, gateway).
ENV_URL: Final = "JUPYTER_EXEC_SESSIONS_URL"
ENV_TOKEN: Final = "JUPYTER_EXEC_SESSIONS_TOKEN"

#: Every event type of the events feed (each has a model in ``models``).
EventType = Literal[
    "container.created",
    "container.resolved",
    "container.expired",
    "container.deleted",
    "kernel.restarted",
    "execution.started",
    "execution.completed",
]
EVENT_TYPES: Final[tuple[str, ...]] = get_args(EventType)

#: Called synchronously, in order, with each output delta of a running execution and the
#: index of the shell command that produced it (``None`` for Python). Must not block.
OutputSink = Callable[[Output, Union[int, None]], None]


def new_id(prefix: str) -> str:
    """A new random id: ``prefix`` (``cntr_``, ``cfile_``, ``exec_``, ``evt_``…) + 32 hex digits."""
    return prefix + secrets.token_hex(16)


class ContainerBackend(Protocol):
    """Create, look up and execute in containers on behalf of one authenticated user."""

    async def create_container(self, request: CreateContainerRequest) -> Container:
        """Create a container (from the warm pool when one is ready)."""
        ...

    async def retrieve_container(self, container_id: str) -> Container:
        """Return the container; raises ``ContainerNotFoundError`` for unknown/foreign ids."""
        ...

    async def execute(
        self,
        container_id: str,
        request: ExecutionRequest,
        on_output: OutputSink | None = None,
    ) -> Execution:
        """Run one execution to completion; ``on_output`` receives deltas as they happen.

        Raises ``ContainerExpiredError``, ``ContainerNotFoundError``, ``QueueFullError`` and
        other ``ExecSessionsError`` for infrastructure problems; user-code errors are data.
        """
        ...


@dataclass(frozen=True)
class ConversationContainer:
    """The implicit container of a conversation key, and what it replaced (if anything)."""

    container_id: str
    #: the key's previous container, when this one was made because that one is gone
    replaced: str | None = None
    #: why the previous container is gone
    reason: Literal["expired", "evicted", "deleted"] | None = None


def conversation_container_name(key: str) -> str:
    """The name an implicit container of conversation key ``key`` is created with."""
    return f"mcp-{key[:200]}"


@runtime_checkable
class ConversationBackend(Protocol):
    """What a backend offers when it keeps conversation containers itself (the service).

    Keys are ``conversation:<id>`` (the conversation id of the turn metadata) or
    ``mcp-session:<id>``. Bindings are durable (the registry), so other processes of the
    same conversation find the same container. The service has it; the HTTP client has it
    through ``POST``/``DELETE {base}/conversations``.
    """

    async def conversation_container(self, key: str, name: str) -> ConversationContainer:
        """The key's running implicit container, made or remade on demand."""
        ...

    async def end_conversation(self, key: str) -> bool:
        """Forget ``key`` and expire its implicit container now."""
        ...
