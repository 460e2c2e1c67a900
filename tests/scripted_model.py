"""A scripted Responses-API model on loopback, for driving real agent CLIs (Codex) in tests.

It is not a model: each ``POST /v1/responses`` is answered from a script, and every request
body is recorded so that a test can read exactly what the agent gave the model (tool lists,
``function_call_output`` items with their text and images). Answers stream as the Responses
API does (``response.created``, ``response.output_item.done`` per item, ``response.completed``).

A *step* is what the model says for one request: a list of tool calls (``Call``), or a final
assistant message (a ``str``). The script is a list of steps consumed in order; a request
that finds the script empty is answered with the message ``"(script exhausted)"``.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Call:
    """One function call the model makes: a tool whose name ends with ``tool``."""

    tool: str
    arguments: dict[str, Any]


Step = list[Call] | str


@dataclass
class ScriptedModel:
    """The model server; ``base_url`` ends with ``/v1``."""

    script: list[Step] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        model = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                body = json.dumps({"object": "list", "data": []}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    request = json.loads(raw or b"{}")
                except ValueError:
                    request = {"_raw": raw.decode("utf-8", "replace")}
                if not self.path.rstrip("/").endswith("/responses"):
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                stream = model._answer(request)
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Content-Length", str(len(stream)))
                self.end_headers()
                self.wfile.write(stream)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/v1"

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> ScriptedModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ answers
    def _answer(self, request: dict[str, Any]) -> bytes:
        with self._lock:
            self.requests.append(request)
            step: Step = self.script.pop(0) if self.script else "(script exhausted)"
            response_id = f"resp_{next(self._ids)}"
            items: list[dict[str, Any]]
            if isinstance(step, str):
                items = [
                    {
                        "type": "message",
                        "role": "assistant",
                        "id": f"msg_{next(self._ids)}",
                        "content": [{"type": "output_text", "text": step}],
                    }
                ]
            else:
                items = []
                for call in step:
                    namespace, name = _tool_name(request, call.tool)
                    item = {
                        "type": "function_call",
                        "id": f"fc_{next(self._ids)}",
                        "call_id": f"call_{next(self._ids)}",
                        "name": name,
                        "arguments": json.dumps(call.arguments),
                    }
                    if namespace is not None:
                        item["namespace"] = namespace
                    items.append(item)
        events: list[dict[str, Any]] = [
            {"type": "response.created", "response": {"id": response_id}}
        ]
        events += [{"type": "response.output_item.done", "item": item} for item in items]
        events.append(
            {
                "type": "response.completed",
                "response": {
                    "id": response_id,
                    "usage": {
                        "input_tokens": 10,
                        "input_tokens_details": None,
                        "output_tokens": 5,
                        "output_tokens_details": None,
                        "total_tokens": 15,
                    },
                },
            }
        )
        return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()

    # ------------------------------------------------------------------ reading
    def tool_outputs(self) -> Iterator[tuple[str, Any]]:
        """Every ``function_call_output`` the agent sent, as (call_id, output), in order."""
        seen: set[str] = set()
        for request in self.requests:
            for item in request.get("input") or []:
                if isinstance(item, dict) and item.get("type") == "function_call_output":
                    call_id = str(item.get("call_id"))
                    if call_id not in seen:
                        seen.add(call_id)
                        yield call_id, item.get("output")


def _tool_name(request: dict[str, Any], suffix: str) -> tuple[str | None, str]:
    """(namespace, name) of the tool ending with ``suffix``; Codex groups MCP tools in a
    ``namespace`` tool named ``mcp__<server>``, other agents prefix their names."""
    names = list(_names(request.get("tools") or []))
    for namespace, name in names:
        if name == suffix or name.endswith(suffix):
            return namespace, name
    raise LookupError(f"no tool ending with {suffix!r} among {names}")


def _names(tools: list[Any]) -> Iterator[tuple[str | None, str]]:
    for tool in tools:
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            continue
        if tool.get("type") == "namespace":
            for inner in tool.get("tools") or []:
                if isinstance(inner, dict) and isinstance(inner.get("name"), str):
                    yield tool["name"], inner["name"]
        else:
            yield None, tool["name"]


def output_text(output: Any) -> str:
    """The text parts of a ``function_call_output`` output (a string or content items)."""
    if isinstance(output, str):
        return output
    if isinstance(output, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in output
            if isinstance(part, dict) and part.get("type") in ("input_text", "output_text")
        )
    return json.dumps(output)


def output_images(output: Any) -> list[str]:
    """The image URLs of a ``function_call_output`` output (``data:`` URLs for MCP images)."""
    if not isinstance(output, list):
        return []
    return [
        str(part.get("image_url"))
        for part in output
        if isinstance(part, dict) and part.get("type") == "input_image"
    ]
