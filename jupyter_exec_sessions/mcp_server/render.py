"""Tool results written for a model: text content, images as image content, nothing else.

Private to :mod:`jupyter_exec_sessions.mcp_server` (which re-exports ``render_execution``).

Why there is no ``structuredContent``: some clients hand the model the structured content
*instead of* the content blocks when both are present. Codex does (``codex-rs``
``FunctionCallOutputPayload::from(&CallToolResult)``: a non-null ``structuredContent`` becomes
the whole tool output as JSON text, and the content blocks, images included, are dropped).
Without it, Codex gives the model our text and every image as an ``input_image``. Anything a
model needs (status, notes, ``state_reset``, file paths) is in the text; what a program
needs to route later calls (container id, execution id, status, ``state_reset``) is in the
result's ``_meta`` under ``jupyter-exec-sessions/…`` keys, which clients do not show a model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from mcp_types import CallToolResult, ContentBlock, ImageContent, TextContent

from .._contract import (
    RESULT_META_CONTAINER_ID,
    RESULT_META_EXECUTION,
    RESULT_META_EXECUTION_ID,
    RESULT_META_STATE_RESET,
    RESULT_META_STATUS,
)
from ..models import ErrorOutput, Execution, ImageOutput, LogsOutput, Output

__all__ = ["output_text", "render_execution", "tool_error"]

STATE_RESET_NOTE = (
    "State reset: the interpreter restarted before or during this run, so variables "
    "and imports from earlier calls are gone; files in the working directory remain."
)


def _bundle_text(data: Mapping[str, Any]) -> str:
    for mime in ("text/plain", "text/markdown", "text/latex"):
        value = data.get(mime)
        if isinstance(value, str):
            return value
        if isinstance(value, list):
            return "".join(str(v) for v in value)
    if "application/json" in data:
        return json.dumps(data["application/json"])
    kinds = ", ".join(sorted(data)) or "empty"
    return f"[display data: {kinds}]"


def output_text(output: Output) -> str:
    """The model-readable text of one output (images become a placeholder line)."""
    if isinstance(output, LogsOutput):
        return output.text if output.stream == "stdout" else f"[stderr] {output.text}"
    if isinstance(output, ErrorOutput):
        if output.traceback:
            return "\n".join(output.traceback)
        return f"{output.name}: {output.value}"
    if isinstance(output, ImageOutput):
        return f"[image: {output.mime_type}]"
    if output.type == "result":
        return f"Out: {_bundle_text(output.data)}"
    return _bundle_text(output.data)


def _python_text(execution: Execution) -> list[str]:
    """Outputs in order; consecutive chunks of one stream are joined before rendering."""
    parts: list[tuple[str, str]] = []  # (kind, text); kind: stdout | stderr | other
    for output in execution.outputs:
        if isinstance(output, LogsOutput):
            if parts and parts[-1][0] == output.stream:
                parts[-1] = (output.stream, parts[-1][1] + output.text)
            else:
                parts.append((output.stream, output.text))
        else:
            parts.append(("other", output_text(output)))
    rendered = [
        ("[stderr]\n" + text.rstrip("\n")) if kind == "stderr" else text.rstrip("\n")
        for kind, text in parts
        if text.strip()
    ]
    return rendered


def _shell_text(execution: Execution) -> list[str]:
    parts: list[str] = []
    for result in execution.shell_output or []:
        lines = [f"$ {result.command}"]
        if result.stdout:
            lines.append(result.stdout.rstrip("\n"))
        if result.stderr:
            lines.append("[stderr]\n" + result.stderr.rstrip("\n"))
        outcome = result.outcome
        lines.append(
            f"[exit code {outcome.exit_code}]" if outcome.type == "exit" else "[timed out]"
        )
        parts.append("\n".join(lines))
    if not parts:
        return _python_text(execution)
    return parts


def render_execution(
    execution: Execution, *, reset_note: str | None = None, include_execution: bool = False
) -> CallToolResult:
    """The tool result for an execution: text for the model, then its images.

    ``reset_note`` says why earlier state is gone (e.g. a new container replaced an expired
    one); it comes first in the text. Without it, an execution whose kernel restarted gets
    the generic state-reset note. The result's ``_meta`` carries the container id, execution
    id, status and ``state_reset``, and with ``include_execution`` the whole execution object.
    """
    state_reset = execution.state_reset or reset_note is not None
    notes = [reset_note or STATE_RESET_NOTE] if state_reset else []
    body = _shell_text(execution) if execution.type == "shell" else _python_text(execution)
    if execution.status == "timed_out":
        body.append("[execution timed out and was interrupted]")
    elif execution.status == "cancelled":
        body.append("[execution was cancelled]")
    if execution.truncated:
        where = (
            f" The full output is in {execution.full_output_file}."
            if execution.full_output_file
            else ""
        )
        body.append(f"[output truncated: head and tail kept.{where}]")
    if not body:
        body.append("(no output)")
    text = "\n".join(body)
    if notes:
        text = "\n\n".join([*notes, text])
    content: list[ContentBlock] = [TextContent(type="text", text=text)]
    content.extend(
        ImageContent(type="image", data=o.data, mime_type=o.mime_type)
        for o in execution.outputs
        if isinstance(o, ImageOutput)
    )
    meta: dict[str, Any] = {
        RESULT_META_CONTAINER_ID: execution.container_id,
        RESULT_META_EXECUTION_ID: execution.id,
        RESULT_META_STATUS: execution.status,
        RESULT_META_STATE_RESET: state_reset,
    }
    if include_execution:
        meta[RESULT_META_EXECUTION] = execution.model_dump(mode="json")
    return CallToolResult(content=content, is_error=False, meta=meta)


def tool_error(message: str) -> CallToolResult:
    """A tool error result (``isError``) with a message for the model and its operator."""
    return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)
