"""The OpenAPI 3.1 document of the REST API, generated from the pydantic wire models.

Served at ``GET {base_url}exec-sessions/v1/openapi.json``. Every route of the handler table has
its operations here (a test compares them with the registered handlers); request and response
bodies are the JSON Schemas of ``models``; every error answer is the OpenAI error body.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from pydantic import BaseModel, TypeAdapter

from .. import __version__, models

__all__ = ["OPERATIONS", "Operation", "build_openapi"]

BodyKind = Literal["json", "upload", "file_upload"]
AnswerKind = Literal["json", "sse_or_json", "sse", "binary", "openapi"]


@dataclass(frozen=True)
class Operation:
    """One documented operation (method + path template)."""

    method: str
    path: str
    operation_id: str
    summary: str
    answer: Any = None  # a model or type for TypeAdapter
    answer_kind: AnswerKind = "json"
    body: Any = None
    body_kind: BodyKind = "json"
    body_required: bool = True
    query: tuple[str, ...] = ()
    errors: tuple[int, ...] = (400, 401, 404)
    description: str = ""
    stream_event: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


_PAGE = ("after", "limit", "order")
_CID = "/containers/{container_id}"

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "post",
        "/containers",
        "createContainer",
        "Create a container (from the warm pool).",
        models.Container,
        body=models.CreateContainerRequest,
        errors=(400, 401, 404, 413, 429),
    ),
    Operation(
        "get",
        "/containers",
        "listContainers",
        "List the caller's containers (cursor page).",
        models.ContainerList,
        query=(*_PAGE, "name"),
        errors=(400, 401),
    ),
    Operation("get", _CID, "retrieveContainer", "Retrieve a container.", models.Container),
    Operation(
        "delete",
        _CID,
        "deleteContainer",
        "Delete a container: its kernel, executions and files.",
        models.ContainerDeleted,
    ),
    Operation(
        "post",
        f"{_CID}/files",
        "createContainerFile",
        "Upload a file into the container (multipart part 'file', optional 'path'), or copy"
        " a stored file in (JSON 'file_id').",
        models.ContainerFile,
        body_kind="upload",
        errors=(400, 401, 404, 413),
    ),
    Operation(
        "get",
        f"{_CID}/files",
        "listContainerFiles",
        "List the container's files, as they are on disk (cursor page).",
        models.ContainerFileList,
        query=_PAGE,
    ),
    Operation(
        "get",
        f"{_CID}/files/{{file_id}}",
        "retrieveContainerFile",
        "Retrieve a container file object.",
        models.ContainerFile,
    ),
    Operation(
        "delete",
        f"{_CID}/files/{{file_id}}",
        "deleteContainerFile",
        "Delete a container file.",
        models.ContainerFileDeleted,
    ),
    Operation(
        "get",
        f"{_CID}/files/{{file_id}}/content",
        "retrieveContainerFileContent",
        "Download a container file's bytes.",
        answer_kind="binary",
    ),
    Operation(
        "post",
        f"{_CID}/executions",
        "createExecution",
        "Run Python code or shell commands in the container.",
        models.Execution,
        answer_kind="sse_or_json",
        body=models.ExecutionRequest,
        errors=(400, 401, 404, 413, 429),
        stream_event=models.ExecutionStreamEvent,
        description=(
            "With `stream: false` (default) the answer is the execution object. With"
            " `stream: true` it is `text/event-stream`: `execution.started`, one"
            " `execution.output` per output delta, then `execution.completed` with the whole"
            " execution; each event's data is an `ExecutionStreamEvent` with `seq` from 0."
            " An error in user code is a completed request with `status: failed`."
        ),
    ),
    Operation(
        "get",
        f"{_CID}/executions",
        "listExecutions",
        "The container's executions history, newest first (a cursor page).",
        models.ExecutionRecordList,
        query=_PAGE,
        description=(
            "Bounded per container (`execution_history_size`); the most recent few carry their"
            " outputs. Readable after the container expired."
        ),
    ),
    Operation(
        "get",
        f"{_CID}/executions/{{execution_id}}",
        "retrieveExecution",
        "One execution of the container's history, whole.",
        models.ExecutionRecord,
    ),
    Operation(
        "post",
        f"{_CID}/interrupt",
        "interruptContainer",
        "Interrupt the running execution (state kept).",
        dict[str, Any],
        body_required=False,
    ),
    Operation(
        "post",
        f"{_CID}/resolutions",
        "recordResolution",
        "Publish a session-hook decision as a container.resolved event.",
        models.ResolutionRecorded,
        body=models.ResolutionRequest,
        errors=(400, 401, 404, 413),
    ),
    Operation(
        "post",
        "/files",
        "createFile",
        "Store a file (multipart 'file' and 'purpose') to copy into containers by id.",
        models.FileObject,
        body_kind="file_upload",
        errors=(400, 401, 413),
    ),
    Operation(
        "get",
        "/files",
        "listFiles",
        "List the caller's stored files (cursor page).",
        models.FileList,
        query=(*_PAGE, "purpose"),
        errors=(400, 401),
    ),
    Operation("get", "/files/{file_id}", "retrieveFile", "Retrieve a file.", models.FileObject),
    Operation(
        "delete", "/files/{file_id}", "deleteFile", "Delete a stored file.", models.FileDeleted
    ),
    Operation(
        "get",
        "/files/{file_id}/content",
        "retrieveFileContent",
        "Download a stored file's bytes.",
        answer_kind="binary",
    ),
    Operation(
        "post",
        "/conversations",
        "resolveConversation",
        "The running implicit container of a conversation key, made (or remade) on demand.",
        models.ConversationContainerObject,
        body=models.ConversationRequest,
        errors=(400, 401, 413, 429),
        description=(
            "The durable conversation bindings the in-server MCP endpoint keeps, for MCP"
            " servers in other processes (`jupyter-exec-sessions mcp`): every process of one"
            " conversation finds the same container. When the key's previous container is"
            " gone, `replaced` and `reason` say which and why."
        ),
    ),
    Operation(
        "delete",
        "/conversations",
        "endConversation",
        "Forget a conversation key and expire its implicit container now.",
        models.ConversationEnded,
        query=("key",),
        errors=(400, 401),
    ),
    Operation(
        "get",
        "/events",
        "followEvents",
        "The caller's lifecycle events as server-sent events, resumable.",
        answer_kind="sse",
        query=("after",),
        errors=(400, 401),
        stream_event=models.Event,
        description=(
            "Each event is sent as `id: <seq>`, `event: <type>`, `data: <Event JSON>`. Resume"
            " with the `Last-Event-ID` header (or `?after=`): events with a greater seq follow."
            " The stream stays open; comments (`: keepalive`) are sent while idle."
        ),
    ),
    Operation(
        "get",
        "/openapi.json",
        "getOpenAPI",
        "This document.",
        answer_kind="openapi",
        errors=(401,),
    ),
)

_QUERY: dict[str, dict[str, Any]] = {
    "after": {
        "name": "after",
        "in": "query",
        "required": False,
        "description": "Cursor: the id of the last object of the previous page.",
        "schema": {"type": "string"},
    },
    "limit": {
        "name": "limit",
        "in": "query",
        "required": False,
        "description": "Page size, 1 to 100 (default 20).",
        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
    },
    "order": {
        "name": "order",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "enum": ["asc", "desc"], "default": "desc"},
    },
    "purpose": {
        "name": "purpose",
        "in": "query",
        "required": False,
        "description": "Only files with this purpose.",
        "schema": {"type": "string"},
    },
    "key": {
        "name": "key",
        "in": "query",
        "required": True,
        "description": "The conversation key (`conversation:<id>` or `mcp-session:<id>`).",
        "schema": {"type": "string", "pattern": "^(conversation|mcp-session):", "maxLength": 600},
    },
    "name": {
        "name": "name",
        "in": "query",
        "required": False,
        "description": "Only containers with this name.",
        "schema": {"type": "string"},
    },
}
_EVENTS_AFTER = {
    "name": "after",
    "in": "query",
    "required": False,
    "description": "Resume after this event seq (also the Last-Event-ID header).",
    "schema": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
}

_ERROR_TEXT = {
    400: "Invalid request (the error's param names the field).",
    401: "Missing or invalid credentials.",
    404: "Unknown id, or another user's.",
    413: "Body, upload or code larger than the configured limit.",
    429: "Quota or queue full; retry after Retry-After seconds.",
}


def _adapter(t: Any) -> TypeAdapter[Any]:
    return TypeAdapter(t)


def _name(t: Any) -> str:
    if isinstance(t, type) and issubclass(t, BaseModel):
        return t.__name__
    return repr(t)


def build_openapi(base_path: str = "/exec-sessions/v1") -> dict[str, Any]:
    """The OpenAPI 3.1 document, with ``servers`` at ``base_path`` (the server's base URL)."""
    inputs: list[tuple[str, Literal["validation", "serialization"], TypeAdapter[Any]]] = []
    for op in OPERATIONS:
        if op.body is not None:
            inputs.append((_name(op.body), "validation", _adapter(op.body)))
        if op.body_kind == "upload":
            request = models.AddContainerFileRequest
            inputs.append((_name(request), "validation", _adapter(request)))
        if op.answer is not None:
            inputs.append((_name(op.answer), "serialization", _adapter(op.answer)))
        if op.stream_event is not None:
            inputs.append((_name(op.stream_event), "serialization", _adapter(op.stream_event)))
    inputs.append(("ErrorBody", "serialization", _adapter(models.ErrorBody)))
    refs, defs = TypeAdapter.json_schemas(inputs, ref_template="#/components/schemas/{model}")
    schemas: dict[str, Any] = copy.deepcopy(defs.get("$defs", {}))

    def ref(t: Any, mode: Literal["validation", "serialization"]) -> dict[str, Any]:
        return copy.deepcopy(refs[(_name(t), mode)])

    error = ref(models.ErrorBody, "serialization")
    paths: dict[str, dict[str, Any]] = {}
    for op in OPERATIONS:
        item = paths.setdefault(op.path, {})
        operation: dict[str, Any] = {
            "operationId": op.operation_id,
            "summary": op.summary,
            "responses": {},
        }
        if op.description:
            operation["description"] = op.description
        params = [_EVENTS_AFTER if op.path == "/events" else _QUERY[q] for q in op.query]
        if op.path == "/events":
            params.append(
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string", "pattern": "^[0-9]{1,19}$"},
                }
            )
        for name in ("container_id", "file_id"):
            if "{" + name + "}" in op.path:
                params.append(
                    {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                )
        if params:
            operation["parameters"] = params
        if op.body is not None:
            operation["requestBody"] = {
                "required": op.body_required,
                "content": {"application/json": {"schema": ref(op.body, "validation")}},
            }
        elif op.body_kind == "file_upload":
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file", "purpose"],
                            "properties": {
                                "file": {"type": "string", "format": "binary"},
                                "purpose": {
                                    "type": "string",
                                    "enum": list(get_args(models.FilePurpose)),
                                },
                            },
                        }
                    }
                },
            }
        elif op.body_kind == "upload":
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": ref(models.AddContainerFileRequest, "validation")
                    },
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["file"],
                            "properties": {
                                "file": {"type": "string", "format": "binary"},
                                "path": {
                                    "type": "string",
                                    "description": "Relative path in the container"
                                    " (default: the part's filename).",
                                },
                            },
                        }
                    },
                },
            }
        ok: dict[str, Any] = {"description": "OK"}
        if op.answer_kind in ("json", "sse_or_json"):
            ok["content"] = {"application/json": {"schema": ref(op.answer, "serialization")}}
        if op.answer_kind in ("sse", "sse_or_json"):
            ok.setdefault("content", {})["text/event-stream"] = {
                "schema": {"type": "string"},
                "x-event-data": ref(op.stream_event, "serialization"),
            }
        if op.answer_kind == "binary":
            ok["content"] = {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
            }
        if op.answer_kind == "openapi":
            ok["content"] = {"application/json": {"schema": {"type": "object"}}}
        operation["responses"]["200"] = ok
        for status in op.errors:
            operation["responses"][str(status)] = {
                "description": _ERROR_TEXT[status],
                "content": {"application/json": {"schema": error}},
            }
        item[op.method] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "jupyter-exec-sessions containers API",
            "version": __version__,
            "description": (
                "OpenAI-compatible containers API served by a Jupyter server, with executions"
                " and an events feed. Errors always have the OpenAI shape"
                ' {"error": {"message", "type", "param", "code"}}.'
            ),
        },
        "servers": [{"url": base_path}],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The Jupyter server's token (or any identity provider's).",
                }
            },
        },
    }
