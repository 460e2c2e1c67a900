"""The reference gateway with the official ``openai`` SDK as its client, on a real server.

The gateway runs in-process under uvicorn (a thread) and executes on a real Jupyter server with
the extension; nothing is faked. Streaming and non-streaming are exercised side by side.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import pytest
from helpers import RunningServer, ServerLauncher, read_events, serve_asgi
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter
from starlette.applications import Starlette

from jupyter_exec_sessions.gateway import create_app

CI_AUTO: Any = {"type": "code_interpreter", "container": {"type": "auto"}}
SHELL_AUTO: Any = {"type": "shell", "environment": {"type": "container_auto"}}
EXTENSION_EVENT = "response.code_interpreter_call_output.delta"
STRICT_EVENT: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)

CI_EVENTS_HEAD = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.code_interpreter_call.in_progress",
    "response.code_interpreter_call_code.delta",
    "response.code_interpreter_call_code.done",
    "response.code_interpreter_call.interpreting",
]
CI_EVENTS_TAIL = [
    "response.code_interpreter_call.completed",
    "response.output_item.done",
    "response.output_item.added",
    "response.content_part.added",
    "response.output_text.delta",
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


@contextmanager
def serve(app: Starlette) -> Iterator[openai.OpenAI]:
    """Run ``app`` under uvicorn in a thread; yield an SDK client pointed at it."""
    with serve_asgi(app) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
        try:
            yield client
        finally:
            client.close()


@pytest.fixture(scope="module")
def gateway(server: Any) -> Iterator[tuple[Starlette, openai.OpenAI]]:
    app = create_app(server.url, server.token)
    with serve(app) as client:
        yield app, client


@pytest.fixture(scope="module")
def sdk(gateway: tuple[Starlette, openai.OpenAI]) -> openai.OpenAI:
    return gateway[1]


def ask(
    client: openai.OpenAI, text: str, *, stream: bool, tools: list[Any] | None = None, **kw: Any
) -> tuple[Response, list[Any]]:
    """One turn; returns the final Response and (when streaming) every SDK-parsed event."""
    args = {"model": "scripted", "input": text, "tools": tools or [CI_AUTO], **kw}
    if not stream:
        return client.responses.create(**args), []
    events = list(client.responses.create(stream=True, **args))
    assert events[-1].type == "response.completed", [e.type for e in events]
    return events[-1].response, events


def ci_item(response: Response) -> Any:
    return next(o for o in response.output if o.type == "code_interpreter_call")


def containers_api(server: Any) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api_base, api_key=server.token, max_retries=0)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_auto_creates_a_container_and_the_answer_holds_the_output(
    sdk: openai.OpenAI, stream: bool
) -> None:
    response, _ = ask(sdk, "print('hello')\n6 * 7", stream=stream)
    assert response.status == "completed"
    assert [o.type for o in response.output] == ["code_interpreter_call", "message"]
    call = ci_item(response)
    assert call.container_id.startswith("cntr_") and call.status == "completed"
    assert call.code == "print('hello')\n6 * 7"
    logs = "".join(o.logs for o in call.outputs or [] if o.type == "logs")
    assert "hello" in logs and "42" in logs
    assert "hello" in response.output_text and "42" in response.output_text


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_previous_response_id_reuses_the_same_container_and_its_state(
    sdk: openai.OpenAI, stream: bool
) -> None:
    first, _ = ask(sdk, "x = 41", stream=stream)
    second, _ = ask(sdk, "print(x + 1)", stream=stream, previous_response_id=first.id)
    assert ci_item(second).container_id == ci_item(first).container_id
    assert second.output_text.strip() == "42"
    assert second.previous_response_id == first.id
    stored = sdk.responses.retrieve(second.id)
    assert stored.id == second.id and stored.output_text == second.output_text


def test_an_explicit_container_id_is_honoured(server: RunningServer, sdk: openai.OpenAI) -> None:
    container = containers_api(server).containers.create(name="explicit-from-sdk")
    tool = {"type": "code_interpreter", "container": container.id}
    plain, _ = ask(sdk, "import os; print(os.getcwd())", stream=False, tools=[tool])
    streamed, _ = ask(sdk, "print('again')", stream=True, tools=[tool])
    assert ci_item(plain).container_id == ci_item(streamed).container_id == container.id
    assert "again" in streamed.output_text


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_deleted_container_is_replaced_and_the_answer_says_the_state_is_gone(
    server: RunningServer, sdk: openai.OpenAI, stream: bool
) -> None:
    first, _ = ask(sdk, "secret = 'kept'", stream=stream)
    old = ci_item(first).container_id
    containers_api(server).containers.delete(old)
    second, _ = ask(sdk, "print(secret)", stream=stream, previous_response_id=first.id)
    new = ci_item(second).container_id
    assert new != old
    assert f"container {old} no longer exists" in second.output_text
    assert "NameError" in second.output_text


def test_an_expired_container_is_replaced_or_refused_as_configured(
    start_server: ServerLauncher,
) -> None:
    srv = start_server(minute_seconds=1, reaper_interval=0.2)
    with serve(create_app(srv.url, srv.token)) as recreate:
        # one "minute" lasts a second here: 4 s to set some state, then it expires
        container = containers_api(srv).containers.create(
            name="expiring", expires_after={"anchor": "last_active_at", "minutes": 4}
        )
        tool = {"type": "code_interpreter", "container": container.id}
        first, _ = ask(recreate, "state = 1", stream=False, tools=[tool])
        assert ci_item(first).container_id == container.id
        read_events(
            srv.api_base,
            srv.headers,
            until=lambda evs: any(
                e["type"] == "container.expired" and e["container_id"] == container.id for e in evs
            ),
        )
        strict_app = create_app(srv.url, srv.token, on_expired="error")
        with serve(strict_app) as strict, pytest.raises(openai.BadRequestError, match="expired"):
            ask(strict, "print(state)", stream=False, tools=[tool])
        replaced, _ = ask(recreate, "print(state)", stream=True, tools=[tool])
        assert ci_item(replaced).container_id != container.id
        assert f"container {container.id} has expired" in replaced.output_text
        assert "NameError" in replaced.output_text


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_the_shell_tool_runs_one_command_per_line_in_a_persistent_shell(
    sdk: openai.OpenAI, stream: bool
) -> None:
    response, _ = ask(sdk, "cd /tmp\npwd\nls /nonexistent-dir", stream=stream, tools=[SHELL_AUTO])
    kinds = [o.type for o in response.output]
    assert kinds == ["shell_call", "shell_call_output", "message"]
    call: Any = response.output[0]  # the SDK's output union: the types are asserted above
    result: Any = response.output[1]
    assert call.action.commands == ["cd /tmp", "pwd", "ls /nonexistent-dir"]
    assert call.environment.type == "container_reference"
    assert call.environment.container_id.startswith("cntr_")
    assert result.call_id == call.call_id
    assert [o.outcome.exit_code for o in result.output[:2]] == [0, 0]
    assert result.output[1].stdout.strip() == "/tmp"
    assert result.output[2].outcome.exit_code != 0 and result.output[2].stderr
    follow, _ = ask(sdk, "pwd", stream=stream, tools=[SHELL_AUTO], previous_response_id=response.id)
    again: list[Any] = list(follow.output)
    assert again[0].environment.container_id == call.environment.container_id
    assert again[1].output[0].stdout.strip() == "/tmp"


def test_streaming_events_arrive_in_the_documented_order_and_the_sdk_parses_every_one(
    sdk: openai.OpenAI,
) -> None:
    _, events = ask(sdk, "print('a')\nprint('b')", stream=True)
    types = [e.type for e in events]
    assert types[: len(CI_EVENTS_HEAD)] == CI_EVENTS_HEAD
    assert types[-len(CI_EVENTS_TAIL) :] == CI_EVENTS_TAIL
    middle = types[len(CI_EVENTS_HEAD) : -len(CI_EVENTS_TAIL)]
    assert middle and set(middle) == {EXTENSION_EVENT}
    assert [e.sequence_number for e in events] == list(range(len(events)))
    for event in events:
        if event.type != EXTENSION_EVENT:
            STRICT_EVENT.validate_python(event.to_dict())
    added, done = events[2], events[len(events) - len(CI_EVENTS_TAIL) + 1]
    assert added.item.container_id == done.item.container_id
    assert added.item.status == "in_progress" and done.item.status == "completed"
    Response.model_validate(events[-1].response.to_dict())

    _, shell_events = ask(sdk, "echo one\necho two", stream=True, tools=[SHELL_AUTO])
    shell_types = [e.type for e in shell_events]
    per_command = [
        "response.shell_call_command.added",
        "response.shell_call_command.delta",
        "response.shell_call_command.done",
    ]
    assert shell_types[:3] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
    ]
    assert shell_types[3:9] == per_command * 2
    assert shell_types[9:11] == ["response.output_item.done", "response.output_item.added"]
    content = [
        (e.type.rsplit(".", 1)[1], e.command_index)
        for e in shell_events[11:]
        if e.type.startswith("response.shell_call_output_content")
    ]
    for index in (0, 1):  # each command: its output deltas, then its done
        mine = [kind for kind, i in content if i == index]
        assert mine[-1] == "done" and set(mine[:-1]) == {"delta"}
    assert [i for _, i in content] == sorted(i for _, i in content)
    assert shell_types[-1] == "response.completed"
    for event in shell_events:
        STRICT_EVENT.validate_python(event.to_dict())


def test_the_sdk_stream_helper_accumulates_the_gateway_stream(sdk: openai.OpenAI) -> None:
    with sdk.responses.stream(model="scripted", input="print(2 + 3)", tools=[CI_AUTO]) as stream:
        final = stream.get_final_response()
    assert final.output_text.strip() == "5"


def test_python_output_reaches_a_streaming_client_while_the_code_runs(
    sdk: openai.OpenAI, tmp_path: Path
) -> None:
    marker = tmp_path / f"go-{uuid.uuid4().hex}"
    code = (
        "import os, time\n"
        "print('first', flush=True)\n"
        "deadline = time.time() + 30\n"
        f"while not os.path.exists({str(marker)!r}) and time.time() < deadline:\n"
        "    time.sleep(0.01)\n"
        "print('second')"
    )
    seen: list[str] = []
    event: Any  # the SDK's stream-event union: narrowed by ``type`` below
    for event in sdk.responses.create(model="scripted", input=code, tools=[CI_AUTO], stream=True):
        seen.append(event.type)
        if event.type == EXTENSION_EVENT and "first" in event.delta and not marker.exists():
            assert "response.code_interpreter_call.completed" not in seen
            marker.touch()  # the code is still waiting for this: its output came early
        final = event
    assert marker.exists()
    assert final.type == "response.completed"
    assert "second" in final.response.output_text


def test_the_same_request_makes_the_same_decisions_streaming_and_non_streaming(
    server: RunningServer, sdk: openai.OpenAI
) -> None:
    def scenario(stream: bool) -> list[str]:
        a, _ = ask(sdk, "v = 1", stream=stream)
        b, _ = ask(sdk, "v", stream=stream, previous_response_id=a.id)
        containers_api(server).containers.delete(ci_item(b).container_id)
        c, _ = ask(sdk, "v", stream=stream, previous_response_id=b.id)
        ids = [ci_item(r).container_id for r in (a, b, c)]
        return [
            "created",
            "history" if ids[1] == ids[0] else "other",
            "replaced" if ids[2] != ids[1] and "no longer exists" in c.output_text else "other",
        ]

    assert scenario(False) == scenario(True) == ["created", "history", "replaced"]


def test_the_gateway_shares_one_pooled_mcp_connection_across_requests(
    gateway: tuple[Starlette, openai.OpenAI],
) -> None:
    app, client = gateway
    for stream in (False, True, False):
        ask(client, "1 + 1", stream=stream)
    assert app.state.gateway.pool.connections_opened == 1


def test_a_request_without_an_execution_tool_is_a_clear_400(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="code_interpreter or shell"):
        sdk.responses.create(model="scripted", input="1", tools=[])


def test_gateway_help_says_it_is_a_reference_and_not_a_model_server() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "jupyter_exec_sessions", "gateway", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "Reference Responses gateway" in out and "NOT a model server" in out
    for option in ("--url", "--token", "--host", "--port"):
        assert option in out
