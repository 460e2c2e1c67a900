"""The reference gateway's scripted "model": one tool call per turn, as Responses events.

Not an LLM. It takes the last user message's text as the tool input (Python for
``code_interpreter``, one shell command per line for ``shell``), runs it through the session
hook (``RequestToolContext`` + ``MCPClientPool``) and answers with an assistant message holding
the output. :func:`run_turn` yields the Responses API stream events in the order OpenAI emits
them; the non-streaming path consumes the same generator, so both make the same decisions.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from mcp_types import CallToolResult, ImageContent, TextContent

from .._contract import RESULT_META_EXECUTION, new_id
from ..errors import ExecSessionsError, InvalidRequestError
from ..hook.pool import MCPClientPool, MCPServerConfig
from ..hook.resolver import RequestToolContext, Resolution
from ..models import Execution

__all__ = ["OUTPUT_DELTA_EVENT", "Turn", "run_turn"]

#: Extension event (not in the OpenAI API): Python output while ``code_interpreter`` runs.
#: Fields: ``item_id``, ``output_index``, ``sequence_number``, ``delta`` (text).
OUTPUT_DELTA_EVENT = "response.code_interpreter_call_output.delta"


@dataclass
class Turn:
    """Everything one ``POST /v1/responses`` needs to run."""

    response_id: str
    model: str
    tool: dict[str, Any]
    user_text: str
    context: RequestToolContext
    pool: MCPClientPool
    mcp: MCPServerConfig
    request: dict[str, Any]
    created_at: int = field(default_factory=lambda: int(time.time()))
    error: ExecSessionsError | None = None
    final: dict[str, Any] | None = None

    def response(self, status: str, output: list[dict[str, Any]]) -> dict[str, Any]:
        """The Response object in its current state."""
        req = self.request
        body: dict[str, Any] = {
            "id": self.response_id,
            "object": "response",
            "created_at": self.created_at,
            "model": self.model,
            "status": status,
            "output": output,
            "error": None,
            "incomplete_details": None,
            "instructions": req.get("instructions"),
            "metadata": req.get("metadata") or {},
            "parallel_tool_calls": bool(req.get("parallel_tool_calls", True)),
            "previous_response_id": req.get("previous_response_id"),
            "temperature": None,
            "tool_choice": req.get("tool_choice") or "auto",
            "tools": req.get("tools") or [],
            "top_p": None,
            "text": {"format": {"type": "text"}},
            "truncation": "disabled",
            "usage": None,
        }
        if status == "completed":
            body["completed_at"] = int(time.time())
        return body


class _Events:
    """Numbers events as they are built (``sequence_number`` from 0)."""

    def __init__(self) -> None:
        self.seq = 0

    def __call__(self, type_: str, **fields: Any) -> dict[str, Any]:
        event = {"type": type_, "sequence_number": self.seq, **fields}
        self.seq += 1
        return event


def _texts(result: CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


def _execution(result: CallToolResult) -> Execution | None:
    data = (result.meta or {}).get(RESULT_META_EXECUTION)
    if not isinstance(data, dict) or result.is_error:
        return None
    return Execution.model_validate(data)


def _fault(exc: Exception) -> ExecSessionsError:
    """An unexpected failure (e.g. an MCP protocol error) as a server error."""
    return ExecSessionsError(f"The tool call failed: {exc}")


def _state_note(resolution: Resolution) -> str:
    if not resolution.state_lost:
        return ""
    why = "has expired" if resolution.reason == "expired" else "no longer exists"
    return (
        f"Note: container {resolution.previous_id} {why}, so this ran in a new container "
        f"{resolution.id}; variables and files from earlier turns are gone.\n\n"
    )


async def _call_streaming(
    turn: Turn,
    name: str,
    arguments: dict[str, Any],
    meta: dict[str, Any],
    emit: Callable[[str], dict[str, Any]],
) -> AsyncIterator[dict[str, Any] | CallToolResult]:
    """Run one MCP call; yield an event per progress message, then the result."""
    queue: asyncio.Queue[str | None] = asyncio.Queue()

    def on_progress(_progress: float, _total: float | None, message: str | None) -> None:
        if message:
            queue.put_nowait(message)

    task = asyncio.ensure_future(
        turn.pool.call_tool(turn.mcp, name, arguments, meta=meta, on_progress=on_progress)
    )
    task.add_done_callback(lambda _: queue.put_nowait(None))
    try:
        while (message := await queue.get()) is not None:
            yield emit(message)
        yield await task
    finally:
        if not task.done():
            task.cancel()


async def _code_interpreter(
    turn: Turn, ev: _Events, output: list[dict[str, Any]]
) -> AsyncIterator[dict[str, Any]]:
    resolution = await turn.context.resolve(turn.tool)
    meta = await turn.context.meta(turn.tool)
    code = turn.user_text
    index = len(output)
    item: dict[str, Any] = {
        "id": new_id("ci_"),
        "type": "code_interpreter_call",
        "status": "in_progress",
        "code": "",
        "container_id": resolution.id,
        "outputs": None,
    }
    ids = {"item_id": item["id"], "output_index": index}
    yield ev("response.output_item.added", output_index=index, item=dict(item))
    yield ev("response.code_interpreter_call.in_progress", **ids)
    yield ev("response.code_interpreter_call_code.delta", delta=code, **ids)
    yield ev("response.code_interpreter_call_code.done", code=code, **ids)
    yield ev("response.code_interpreter_call.interpreting", **ids)
    result: CallToolResult | None = None
    async for got in _call_streaming(
        turn,
        "execute_python_code",
        {"code": code},
        meta,
        lambda text: ev(OUTPUT_DELTA_EVENT, delta=text, **ids),
    ):
        if isinstance(got, CallToolResult):
            result = got
        else:
            yield got
    assert result is not None
    logs = _texts(result)
    outputs: list[dict[str, Any]] = [{"type": "logs", "logs": logs}] if logs else []
    outputs += [
        {"type": "image", "url": f"data:{c.mime_type};base64,{c.data}"}
        for c in result.content
        if isinstance(c, ImageContent)
    ]
    item.update(code=code, outputs=outputs, status="failed" if result.is_error else "completed")
    yield ev("response.code_interpreter_call.completed", **ids)
    yield ev("response.output_item.done", output_index=index, item=item)
    output.append(item)
    turn.final = {"text": _state_note(resolution) + (logs or "(no output)")}


async def _shell(
    turn: Turn, ev: _Events, output: list[dict[str, Any]]
) -> AsyncIterator[dict[str, Any]]:
    resolution = await turn.context.resolve(turn.tool)
    meta = await turn.context.meta(turn.tool)
    commands = [line for line in turn.user_text.splitlines() if line.strip()]
    if not commands:
        raise InvalidRequestError("The last user message has no shell command.", param="input")
    index = len(output)
    call: dict[str, Any] = {
        "id": new_id("sh_"),
        "type": "shell_call",
        "call_id": new_id("call_"),
        "status": "in_progress",
        "action": {"commands": [], "timeout_ms": None, "max_output_length": None},
        "environment": {"type": "container_reference", "container_id": resolution.id},
    }
    yield ev("response.output_item.added", output_index=index, item=dict(call))
    for i, command in enumerate(commands):
        where = {"command_index": i, "output_index": index}
        yield ev("response.shell_call_command.added", command="", **where)
        yield ev("response.shell_call_command.delta", delta=command, **where)
        yield ev("response.shell_call_command.done", command=command, **where)
    call.update(status="completed", action={**call["action"], "commands": commands})
    yield ev("response.output_item.done", output_index=index, item=call)
    output.append(call)

    out_index = index + 1
    result_item: dict[str, Any] = {
        "id": new_id("sho_"),
        "type": "shell_call_output",
        "call_id": call["call_id"],
        "status": "in_progress",
        "output": [],
        "max_output_length": None,
    }
    yield ev("response.output_item.added", output_index=out_index, item=dict(result_item))
    texts: list[str] = []
    for i, command in enumerate(commands):
        where = {"command_index": i, "item_id": result_item["id"], "output_index": out_index}

        def delta(text: str, where: dict[str, Any] = where) -> dict[str, Any]:
            if text.startswith("[stderr] "):
                return ev(
                    "response.shell_call_output_content.delta",
                    delta={"stderr": text.removeprefix("[stderr] ")},
                    **where,
                )
            return ev("response.shell_call_output_content.delta", delta={"stdout": text}, **where)

        result: CallToolResult | None = None
        async for got in _call_streaming(
            turn, "execute_shell_commands", {"commands": [command]}, meta, delta
        ):
            if isinstance(got, CallToolResult):
                result = got
            else:
                yield got
        assert result is not None
        execution = _execution(result)
        chunks = [
            {"stdout": r.stdout, "stderr": r.stderr, "outcome": r.outcome.model_dump()}
            for r in (execution.shell_output or [] if execution else [])
        ] or [{"stdout": "", "stderr": _texts(result), "outcome": {"type": "exit", "exit_code": 1}}]
        result_item["output"].extend(chunks)
        yield ev("response.shell_call_output_content.done", output=chunks, **where)
        texts.append(_texts(result))
    result_item["status"] = "completed"
    yield ev("response.output_item.done", output_index=out_index, item=result_item)
    output.append(result_item)
    turn.final = {"text": _state_note(resolution) + "\n\n".join(texts)}


async def _message(
    text: str, ev: _Events, output: list[dict[str, Any]]
) -> AsyncIterator[dict[str, Any]]:
    index = len(output)
    item: dict[str, Any] = {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "status": "in_progress",
        "content": [],
    }
    ids = {"item_id": item["id"], "output_index": index, "content_index": 0}
    part: dict[str, Any] = {"type": "output_text", "text": "", "annotations": []}
    yield ev("response.output_item.added", output_index=index, item=dict(item))
    yield ev("response.content_part.added", part=dict(part), **ids)
    yield ev("response.output_text.delta", delta=text, logprobs=[], **ids)
    yield ev("response.output_text.done", text=text, logprobs=[], **ids)
    part["text"] = text
    yield ev("response.content_part.done", part=part, **ids)
    item.update(status="completed", content=[part])
    yield ev("response.output_item.done", output_index=index, item=item)
    output.append(item)


async def run_turn(turn: Turn) -> AsyncIterator[dict[str, Any]]:
    """Yield the turn's stream events; the last one is ``response.completed`` or ``.failed``.

    On failure ``turn.error`` holds the infrastructure error (the non-streaming path turns it
    into an HTTP error); the turn's final Response object is in the last event either way.
    """
    ev = _Events()
    output: list[dict[str, Any]] = []
    yield ev("response.created", response=turn.response("in_progress", []))
    yield ev("response.in_progress", response=turn.response("in_progress", []))
    try:
        steps = _code_interpreter if turn.tool["type"] == "code_interpreter" else _shell
        async for event in steps(turn, ev, output):
            yield event
        assert turn.final is not None
        async for event in _message(turn.final["text"], ev, output):
            yield event
    except Exception as exc:  # an infrastructure fault ends the turn as `response.failed`
        turn.error = exc if isinstance(exc, ExecSessionsError) else _fault(exc)
        failed = turn.response("failed", output)
        failed["error"] = {"code": "server_error", "message": turn.error.message}
        yield ev("response.failed", response=failed)
        return
    yield ev("response.completed", response=turn.response("completed", output))
