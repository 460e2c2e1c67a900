"""Pydantic wire models: containers, files, executions, events and errors.

These are the JSON shapes of the API (README lists the routes); every face (REST, MCP, HTTP
client, hook, widget) speaks them. Field names follow the OpenAI containers API; our additions
live in ``Container.exec_sessions`` and in the execution objects.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

__all__ = [
    "SandboxInfo",
    "Container",
    "ContainerDeleted",
    "ContainerFile",
    "ContainerFileDeleted",
    "ContainerFileList",
    "ContainerList",
    "CreateContainerRequest",
    "DisplayOutput",
    "ErrorBody",
    "ErrorDetail",
    "ErrorOutput",
    "EVENT_ADAPTER",
    "EVENT_TYPE_OF_DATA",
    "EXECUTION_REQUEST_ADAPTER",
    "ContainerCreatedData",
    "ContainerCreatedEvent",
    "ContainerDeletedData",
    "ContainerDeletedEvent",
    "ContainerExpiredData",
    "ContainerExpiredEvent",
    "ContainerResolvedData",
    "ContainerResolvedEvent",
    "ConversationContainerObject",
    "ConversationEnded",
    "ConversationRequest",
    "Event",
    "EventData",
    "ExecutionCompletedData",
    "ExecutionCompletedEvent",
    "ExecutionStartedData",
    "ExecutionStartedEvent",
    "KernelRestartedData",
    "KernelRestartedEvent",
    "ExecSessionsInfo",
    "Execution",
    "ExecutionMetadata",
    "ExecutionRecord",
    "ExecutionRecordList",
    "ExecutionRequest",
    "ExecutionStatus",
    "ExecutionStreamEvent",
    "ExitOutcome",
    "ExpiresAfter",
    "ImageOutput",
    "LogsOutput",
    "MemoryLimit",
    "Output",
    "PythonExecutionRequest",
    "FileDeleted",
    "FileList",
    "FileObject",
    "FilePurpose",
    "AddContainerFileRequest",
    "ResolutionRecorded",
    "ResolutionRequest",
    "ResultOutput",
    "ShellCallOutput",
    "ShellExecutionRequest",
    "TimeoutOutcome",
]

MemoryLimit = Literal["1g", "4g", "16g", "64g"]
ExecutionStatus = Literal["in_progress", "completed", "failed", "timed_out", "cancelled"]


class _Wire(BaseModel):
    """Base of response models: tolerant of unknown fields so newer servers stay readable."""

    model_config = ConfigDict(extra="allow")


class _Request(BaseModel):
    """Base of request bodies: unknown fields are an error naming the field.

    Types are strict, as in the OpenAI API: a boolean is ``true``/``false`` (not ``"yes"``),
    an integer is a JSON integer (not ``true`` nor ``"5"``).
    """

    model_config = ConfigDict(extra="forbid", strict=True)


# --------------------------------------------------------------------------- containers
class ExpiresAfter(BaseModel):
    """Expiry policy: ``minutes`` after ``last_active_at``."""

    model_config = ConfigDict(extra="forbid", strict=True)
    anchor: Literal["last_active_at"] = "last_active_at"
    minutes: int = Field(default=20, ge=1, le=7 * 24 * 60)


class SandboxInfo(_Wire):
    """How a container's kernel is confined.

    ``mode``: ``bwrap`` (bubblewrap sandbox) or ``none``. ``memory``: the mechanism that
    enforces ``memory_limit`` (``cgroup-v2``, ``cgroup-v1``, ``rlimit``) or null when nothing
    does. ``network``: ``disabled``, ``allowlist`` or ``host`` (no sandbox).
    """

    mode: Literal["bwrap", "none"]
    memory: str | None = None
    network: Literal["disabled", "allowlist", "host"]


class ExecSessionsInfo(_Wire):
    """Our additions to the container object: kernel, usage counters, confinement."""

    kernel_id: str | None = None
    executions: int = 0
    sessions: int = 0
    turns: int = 0
    state_resets: int = 0
    busy: bool = False
    #: Executions waiting for the kernel behind the running one (bounded by max_queue_depth).
    queued: int = 0
    sandbox: SandboxInfo | None = None


class Container(_Wire):
    """An OpenAI-compatible container object; one reusable Jupyter kernel + working directory."""

    id: str
    object: Literal["container"] = "container"
    name: str
    created_at: int
    last_active_at: int
    status: Literal["running", "expired"]
    expires_after: ExpiresAfter
    memory_limit: MemoryLimit | None = None
    exec_sessions: ExecSessionsInfo = Field(default_factory=ExecSessionsInfo)


class ContainerList(_Wire):
    """A cursor page of containers."""

    object: Literal["list"] = "list"
    data: list[Container]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class ContainerDeleted(_Wire):
    """Answer of ``DELETE /containers/{id}``."""

    id: str
    object: Literal["container.deleted"] = "container.deleted"
    deleted: bool = True


class CreateContainerRequest(_Request):
    """Body of ``POST /containers``."""

    name: str = Field(min_length=1, max_length=256)
    expires_after: ExpiresAfter | None = None
    memory_limit: MemoryLimit | None = None
    file_ids: list[str] | None = None
    network_policy: dict[str, Any] | None = None
    skills: list[Any] | None = None


# --------------------------------------------------------------------------- files
class ContainerFile(_Wire):
    """A file inside a container's working directory."""

    id: str
    object: Literal["container.file"] = "container.file"
    container_id: str
    path: str
    bytes: int
    source: Literal["user", "assistant"]
    created_at: int


class ContainerFileList(_Wire):
    """A cursor page of container files.

    ``capped`` (our addition) is true when the container directory holds more files than one
    listing walks (10,000): files the code wrote beyond that may be missing from the list.
    Uploaded files are always listed.
    """

    object: Literal["list"] = "list"
    data: list[ContainerFile]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False
    capped: bool = False


class ContainerFileDeleted(_Wire):
    """Answer of ``DELETE /containers/{id}/files/{file_id}``."""

    id: str
    object: Literal["container.file.deleted"] = "container.file.deleted"
    deleted: bool = True


# --------------------------------------------------------------------------- Files API
#: What a stored file is for (OpenAI's purposes); this server stores them all alike.
FilePurpose = Literal[
    "assistants", "batch", "fine-tune", "vision", "user_data", "evals", "code_interpreter"
]


class FileObject(_Wire):
    """A file of the Files API (``POST /files``), in OpenAI's ``file`` shape."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: Literal["processed"] = "processed"
    expires_at: int | None = None


class FileList(_Wire):
    """A cursor page of stored files."""

    object: Literal["list"] = "list"
    data: list[FileObject]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class FileDeleted(_Wire):
    """Answer of ``DELETE /files/{file_id}``."""

    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


class AddContainerFileRequest(_Request):
    """JSON body of ``POST /containers/{id}/files``: copy a stored file in by id."""

    file_id: str = Field(min_length=1, max_length=128)


# --------------------------------------------------------------------------- executions
class ExecutionMetadata(BaseModel):
    """Conversation bookkeeping recorded on an execution."""

    model_config = ConfigDict(extra="allow")
    session_id: str | None = Field(default=None, max_length=256)
    turn_id: str | None = Field(default=None, max_length=256)


class PythonExecutionRequest(_Request):
    """Run Python code in the container's kernel."""

    type: Literal["python"] = "python"
    code: str
    timeout_ms: int | None = Field(default=None, ge=1)
    max_output_length: int | None = Field(default=None, ge=1)
    stream: bool = False
    metadata: ExecutionMetadata | None = None


class ShellExecutionRequest(_Request):
    """Run shell commands, one after the other, in the container's persistent shell."""

    type: Literal["shell"] = "shell"
    commands: list[str] = Field(min_length=1)
    timeout_ms: int | None = Field(default=None, ge=1)
    max_output_length: int | None = Field(default=None, ge=1)
    stream: bool = False
    metadata: ExecutionMetadata | None = None


ExecutionRequest = Annotated[
    Union[PythonExecutionRequest, ShellExecutionRequest], Field(discriminator="type")
]


#: Validates an ``ExecutionRequest`` (either type) from a mapping or JSON.
EXECUTION_REQUEST_ADAPTER: TypeAdapter[ExecutionRequest] = TypeAdapter(ExecutionRequest)


class LogsOutput(_Wire):
    """Text the code wrote to stdout or stderr."""

    type: Literal["logs"] = "logs"
    stream: Literal["stdout", "stderr"] = "stdout"
    text: str


class ResultOutput(_Wire):
    """The value of the last expression (``execute_result``), as a MIME bundle."""

    type: Literal["result"] = "result"
    data: dict[str, Any]


class DisplayOutput(_Wire):
    """Rich display data without an image (HTML, JSON, markdown, ...), as a MIME bundle."""

    type: Literal["display"] = "display"
    data: dict[str, Any]


class ImageOutput(_Wire):
    """An image (PNG, JPEG: base64; SVG: base64 of its text)."""

    type: Literal["image"] = "image"
    mime_type: str
    data: str


class ErrorOutput(_Wire):
    """An exception raised by user code; the traceback is free of ANSI codes."""

    type: Literal["error"] = "error"
    name: str
    value: str
    traceback: list[str] = Field(default_factory=list)


Output = Annotated[
    Union[LogsOutput, ResultOutput, DisplayOutput, ImageOutput, ErrorOutput],
    Field(discriminator="type"),
]


class ExitOutcome(_Wire):
    """A shell command that finished with an exit code."""

    type: Literal["exit"] = "exit"
    exit_code: int


class TimeoutOutcome(_Wire):
    """A shell command that was killed because it ran out of time."""

    type: Literal["timeout"] = "timeout"


class ShellCallOutput(_Wire):
    """One shell command's result, in the OpenAI ``shell_call_output`` shape."""

    command: str
    stdout: str = ""
    stderr: str = ""
    outcome: Annotated[Union[ExitOutcome, TimeoutOutcome], Field(discriminator="type")]


class Execution(_Wire):
    """The result of one execution request."""

    id: str
    object: Literal["container.execution"] = "container.execution"
    container_id: str
    type: Literal["python", "shell"]
    status: ExecutionStatus
    outputs: list[Output] = Field(default_factory=list)
    shell_output: list[ShellCallOutput] | None = None
    execution_count: int | None = None
    truncated: bool = False
    full_output_file: str | None = None
    state_reset: bool = False
    duration_ms: float = 0.0
    metadata: ExecutionMetadata | None = None
    created_at: int = 0


class ExecutionRecord(_Wire):
    """One entry of a container's executions history (``GET …/executions``).

    In a listing ``code`` / ``commands`` are previews (``preview_truncated`` says when they
    were cut) and ``outputs`` / ``shell_output`` are present only for the container's most
    recent executions; ``GET …/executions/{id}`` answers the whole record. Times are unix
    seconds; ``started_at`` / ``completed_at`` are null while queued / running.
    """

    id: str
    object: Literal["container.execution"] = "container.execution"
    container_id: str
    type: Literal["python", "shell"]
    status: ExecutionStatus
    code: str | None = None
    commands: list[str] | None = None
    preview_truncated: bool = False
    created_at: float
    started_at: float | None = None
    completed_at: float | None = None
    duration_ms: float | None = None
    session_id: str | None = None
    turn_id: str | None = None
    state_reset: bool = False
    truncated: bool = False
    execution_count: int | None = None
    full_output_file: str | None = None
    outputs: list[Output] | None = None
    shell_output: list[ShellCallOutput] | None = None


class ExecutionRecordList(_Wire):
    """A cursor page of a container's executions history, newest first by default."""

    object: Literal["list"] = "list"
    data: list[ExecutionRecord]
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False


class ExecutionStreamEvent(_Wire):
    """One server-sent event of a streamed execution.

    ``execution.started`` carries ``execution`` (status ``in_progress``), ``execution.output``
    carries one ``output`` delta (and ``command_index`` for shell), ``execution.completed``
    carries the final ``execution``.
    """

    type: Literal["execution.started", "execution.output", "execution.completed"]
    seq: int
    execution: Execution | None = None
    output: Output | None = None
    command_index: int | None = None


# --------------------------------------------------------------------------- events feed
# Each event of ``GET /events`` is ``{id, seq, type, created_at, container_id, data}``; ``type``
# selects the model of ``data``. ``Event`` is the discriminated union of all of them.
class ContainerCreatedData(_Wire):
    """``container.created``: a container was made, from the warm pool or from a cold kernel."""

    name: str
    from_pool: bool
    latency_ms: float
    kernel_id: str | None = None


class ResolutionRequest(_Request):
    """Body of ``POST /containers/{id}/resolutions``: a session hook's decision."""

    origin: Literal["explicit", "history", "created", "replaced"]
    previous_id: str | None = Field(default=None, max_length=128)
    session_id: str | None = Field(default=None, max_length=512)


class ContainerResolvedData(_Wire):
    """``container.resolved``: a session hook decided which container a conversation uses."""

    origin: Literal["explicit", "history", "created", "replaced"]
    previous_id: str | None = None
    session_id: str | None = None


class ContainerExpiredData(_Wire):
    """``container.expired``: the container's kernel was shut down; its files stay.

    ``reason``: ``idle`` (it passed its idle time), ``evicted`` (an idle implicit container
    made room at the owner's quota), ``session_closed`` (the MCP session it belonged to
    ended).
    """

    reason: Literal["idle", "evicted", "session_closed"] = "idle"


class ContainerDeletedData(_Wire):
    """``container.deleted``: the container was deleted; its executions were cancelled."""


class KernelRestartedData(_Wire):
    """``kernel.restarted``: the container's interpreter state is gone.

    ``reason``: ``kernel_died``, ``timeout`` (an interrupt was ignored), ``server_restart``.
    """

    reason: str
    kernel_id: str | None = None


class ExecutionStartedData(_Wire):
    """``execution.started``: an execution left the queue and runs in the kernel."""

    execution_id: str
    type: Literal["python", "shell"]
    session_id: str | None = None
    turn_id: str | None = None


class ExecutionCompletedData(_Wire):
    """``execution.completed``: one for every started execution, whatever its end."""

    execution_id: str
    type: Literal["python", "shell"]
    status: ExecutionStatus
    duration_ms: float
    session_id: str | None = None
    turn_id: str | None = None
    state_reset: bool = False


EventData = Union[
    ContainerCreatedData,
    ContainerResolvedData,
    ContainerExpiredData,
    ContainerDeletedData,
    KernelRestartedData,
    ExecutionStartedData,
    ExecutionCompletedData,
]


class _EventBase(_Wire):
    id: str
    seq: int
    created_at: float
    container_id: str | None = None


class ContainerCreatedEvent(_EventBase):
    """See :class:`ContainerCreatedData`."""

    type: Literal["container.created"] = "container.created"
    data: ContainerCreatedData


class ContainerResolvedEvent(_EventBase):
    """See :class:`ContainerResolvedData`."""

    type: Literal["container.resolved"] = "container.resolved"
    data: ContainerResolvedData


class ContainerExpiredEvent(_EventBase):
    """See :class:`ContainerExpiredData`."""

    type: Literal["container.expired"] = "container.expired"
    data: ContainerExpiredData = Field(default_factory=ContainerExpiredData)


class ContainerDeletedEvent(_EventBase):
    """See :class:`ContainerDeletedData`."""

    type: Literal["container.deleted"] = "container.deleted"
    data: ContainerDeletedData = Field(default_factory=ContainerDeletedData)


class KernelRestartedEvent(_EventBase):
    """See :class:`KernelRestartedData`."""

    type: Literal["kernel.restarted"] = "kernel.restarted"
    data: KernelRestartedData


class ExecutionStartedEvent(_EventBase):
    """See :class:`ExecutionStartedData`."""

    type: Literal["execution.started"] = "execution.started"
    data: ExecutionStartedData


class ExecutionCompletedEvent(_EventBase):
    """See :class:`ExecutionCompletedData`."""

    type: Literal["execution.completed"] = "execution.completed"
    data: ExecutionCompletedData


#: One event of the events feed, told apart by ``type``.
Event = Annotated[
    Union[
        ContainerCreatedEvent,
        ContainerResolvedEvent,
        ContainerExpiredEvent,
        ContainerDeletedEvent,
        KernelRestartedEvent,
        ExecutionStartedEvent,
        ExecutionCompletedEvent,
    ],
    Field(discriminator="type"),
]

#: Validates an ``Event`` from JSON or a mapping (``EVENT_ADAPTER.validate_json(text)``).
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)

#: The event type of each data model (what ``EventBus.emit`` records).
EVENT_TYPE_OF_DATA: dict[type[_Wire], str] = {
    ContainerCreatedData: "container.created",
    ContainerResolvedData: "container.resolved",
    ContainerExpiredData: "container.expired",
    ContainerDeletedData: "container.deleted",
    KernelRestartedData: "kernel.restarted",
    ExecutionStartedData: "execution.started",
    ExecutionCompletedData: "execution.completed",
}


# --------------------------------------------------------------------------- resolutions
class ResolutionRecorded(_Wire):
    """Answer of ``POST /containers/{id}/resolutions``."""

    ok: bool = True


# --------------------------------------------------------------------------- conversations
class ConversationRequest(_Request):
    """Body of ``POST /conversations``: the implicit container of a conversation key.

    ``key`` is ``conversation:<conversation id>`` (the turn metadata's session id) or
    ``mcp-session:<MCP session id>``; bindings are the caller's own.
    """

    key: str = Field(max_length=600, pattern=r"^(conversation|mcp-session):[^\x00-\x1f]+$")
    #: the name a new container gets (default ``mcp-<key>``)
    name: str | None = Field(default=None, min_length=1, max_length=256)


class ConversationContainerObject(_Wire):
    """Answer of ``POST /conversations``: the key's running container (made on demand)."""

    object: Literal["conversation"] = "conversation"
    key: str
    container_id: str
    #: the key's previous container, when this one was made because that one is gone
    replaced: str | None = None
    #: why the previous container is gone
    reason: Literal["expired", "evicted", "deleted"] | None = None


class ConversationEnded(_Wire):
    """Answer of ``DELETE /conversations?key=…``: the binding is gone, its container expired."""

    object: Literal["conversation.deleted"] = "conversation.deleted"
    key: str
    #: whether an implicit container of the key was expired by this call
    deleted: bool


# --------------------------------------------------------------------------- errors
class ErrorDetail(_Wire):
    """The ``error`` member of an OpenAI error body."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorBody(_Wire):
    """An OpenAI error body."""

    error: ErrorDetail
