"""Pure resolver and request-context rules, with a tiny in-test backend.

These pin every rule of the session hook without a server; ``test_hook.py`` proves the same rules
against a real Jupyter server with the extension.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest
from openai.types.responses import (
    FunctionShellTool,
    Response,
    ResponseCodeInterpreterToolCall,
    ResponseFunctionShellToolCall,
)
from openai.types.responses.tool import CodeInterpreter

from jupyter_exec_sessions.errors import (
    ContainerExpiredError,
    ContainerNotFoundError,
    InvalidRequestError,
    ServiceUnavailableError,
)
from jupyter_exec_sessions.hook import (
    META_CONTAINER_ID,
    META_SESSION_ID,
    META_TURN_ID,
    ContainerRef,
    RequestToolContext,
    SessionBackend,
    SessionResolver,
    SessionSpec,
    history_container_ids,
    parse_tool,
)
from jupyter_exec_sessions.mcp_server import META_INCLUDE_EXECUTION


@dataclass
class FakeBackend:
    """Containers in a dict; counts creations; optional gate to hold ``create`` open."""

    containers: dict[str, str] = field(default_factory=dict)  # id -> status
    created: list[SessionSpec] = field(default_factory=list)
    reports: list[dict[str, Any]] = field(default_factory=list)
    gate: asyncio.Event | None = None
    fail_next_create: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def find(self, container_id: str) -> ContainerRef | None:
        status = self.containers.get(container_id)
        return None if status is None else ContainerRef(container_id, status, ours=True)

    async def validate(self, container: ContainerRef) -> bool:
        return container.status == "running"

    async def create(self, spec: SessionSpec) -> ContainerRef:
        if self.gate is not None:
            await self.gate.wait()  # callers bound their waits
        with self._lock:
            if self.fail_next_create:
                self.fail_next_create = False
                raise ServiceUnavailableError("backend down")
            self.created.append(spec)
            cid = f"cntr_new{len(self.created)}"
            self.containers[cid] = "running"
        return ContainerRef(cid, "running", ours=True)

    async def report_resolution(
        self,
        container: ContainerRef,
        *,
        origin: str,
        previous_id: str | None,
        session_id: str | None,
    ) -> None:
        self.reports.append(
            {
                "id": container.id,
                "origin": origin,
                "previous_id": previous_id,
                "session": session_id,
            }
        )


CI_AUTO = {"type": "code_interpreter", "container": {"type": "auto"}}
SHELL_AUTO = {"type": "shell", "environment": {"type": "container_auto"}}


def ci_call(cid: str) -> dict[str, Any]:
    return {"type": "code_interpreter_call", "id": "ci_1", "container_id": cid, "code": "1"}


def test_the_fake_backend_satisfies_the_backend_protocol() -> None:
    assert isinstance(FakeBackend(), SessionBackend)


async def test_an_explicit_usable_container_is_used_as_is() -> None:
    backend = FakeBackend({"cntr_a": "running"})
    res = await SessionResolver(backend).resolve(
        {"type": "code_interpreter", "container": "cntr_a"}
    )
    assert (res.id, res.origin, res.previous_id, res.state_lost) == (
        "cntr_a",
        "explicit",
        "cntr_a",
        False,
    )
    assert backend.created == []


async def test_an_explicit_expired_container_is_replaced_when_on_expired_is_recreate() -> None:
    backend = FakeBackend({"cntr_a": "expired"})
    res = await SessionResolver(backend, "recreate").resolve(
        {"type": "code_interpreter", "container": "cntr_a"}
    )
    assert (res.origin, res.previous_id, res.state_lost, res.reason) == (
        "replaced",
        "cntr_a",
        True,
        "expired",
    )
    assert res.id != "cntr_a" and len(backend.created) == 1


async def test_an_explicit_unknown_container_is_replaced_when_on_expired_is_recreate() -> None:
    backend = FakeBackend()
    res = await SessionResolver(backend).resolve(
        {"type": "shell", "environment": {"type": "container_reference", "container_id": "cntr_x"}}
    )
    assert (res.origin, res.previous_id, res.state_lost, res.reason) == (
        "replaced",
        "cntr_x",
        True,
        "not_found",
    )


async def test_an_explicit_expired_container_is_an_error_when_on_expired_is_error() -> None:
    backend = FakeBackend({"cntr_a": "expired"})
    with pytest.raises(ContainerExpiredError):
        await SessionResolver(backend, "error").resolve(
            {"type": "code_interpreter", "container": "cntr_a"}
        )
    assert backend.created == []


async def test_an_explicit_unknown_container_is_an_error_when_on_expired_is_error() -> None:
    with pytest.raises(ContainerNotFoundError):
        await SessionResolver(FakeBackend(), "error").resolve(
            {"type": "code_interpreter", "container": "cntr_gone"}
        )


async def test_auto_without_history_creates_a_container() -> None:
    backend = FakeBackend()
    res = await SessionResolver(backend).resolve(CI_AUTO, [], session_id="conv-1")
    assert (res.origin, res.previous_id, res.state_lost) == ("created", None, False)
    assert backend.created[0].name == "exec-session-conv-1"


async def test_auto_reuses_the_newest_container_named_in_history() -> None:
    backend = FakeBackend({"cntr_old": "running", "cntr_new": "running"})
    history = [ci_call("cntr_old"), {"role": "user", "content": "hi"}, ci_call("cntr_new")]
    res = await SessionResolver(backend).resolve(CI_AUTO, history)
    assert (res.id, res.origin, res.previous_id, res.state_lost) == (
        "cntr_new",
        "history",
        "cntr_new",
        False,
    )


async def test_auto_replaces_an_expired_history_container_even_when_on_expired_is_error() -> None:
    backend = FakeBackend({"cntr_old": "running", "cntr_new": "expired"})
    history = [ci_call("cntr_old"), ci_call("cntr_new")]
    res = await SessionResolver(backend, "error").resolve(CI_AUTO, history)
    assert (res.origin, res.previous_id, res.state_lost) == ("replaced", "cntr_new", True)
    assert res.id not in ("cntr_old", "cntr_new")


async def test_history_accepts_openai_sdk_objects_and_whole_responses() -> None:
    shell_call = ResponseFunctionShellToolCall.model_validate(
        {
            "id": "sh_1",
            "call_id": "call_1",
            "type": "shell_call",
            "status": "completed",
            "action": {"commands": ["ls"]},
            "environment": {"type": "container_reference", "container_id": "cntr_shell"},
        }
    )
    ci = ResponseCodeInterpreterToolCall.model_validate(
        {
            "id": "ci_1",
            "type": "code_interpreter_call",
            "status": "completed",
            "container_id": "cntr_ci",
        }
    )
    response = Response.model_validate(
        {
            "id": "resp_1",
            "object": "response",
            "created_at": 0,
            "model": "m",
            "output": [ci],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
        }
    )
    assert history_container_ids([response, shell_call]) == ["cntr_shell", "cntr_ci"]
    assert history_container_ids([shell_call, response]) == ["cntr_ci", "cntr_shell"]


def test_tool_declarations_parse_from_dicts_and_openai_sdk_objects() -> None:
    sdk_ci = CodeInterpreter.model_validate(
        {"type": "code_interpreter", "container": {"type": "auto", "memory_limit": "4g"}}
    )
    assert parse_tool(sdk_ci).auto == {"memory_limit": "4g"}
    sdk_shell = FunctionShellTool.model_validate(
        {"type": "shell", "environment": {"type": "container_reference", "container_id": "cntr_s"}}
    )
    assert parse_tool(sdk_shell).container_id == "cntr_s"
    assert parse_tool({"type": "code_interpreter", "container": "auto"}).container_id is None
    assert parse_tool({"type": "shell"}).container_id is None
    with pytest.raises(InvalidRequestError):
        parse_tool({"type": "shell", "environment": {"type": "local"}})
    with pytest.raises(InvalidRequestError):
        parse_tool({"type": "web_search"})


async def test_auto_options_reach_the_created_container_spec() -> None:
    backend = FakeBackend()
    tool = {
        "type": "code_interpreter",
        "container": {"type": "auto", "file_ids": ["f1"], "memory_limit": "4g"},
    }
    await SessionResolver(backend).resolve(tool)
    spec = backend.created[0]
    assert (spec.file_ids, spec.memory_limit, spec.tool) == (("f1",), "4g", "code_interpreter")


async def test_every_decision_is_reported_to_a_backend_that_observes_them() -> None:
    backend = FakeBackend({"cntr_a": "expired"})
    resolver = SessionResolver(backend)
    await resolver.resolve({"type": "code_interpreter", "container": "cntr_a"}, session_id="s1")
    assert backend.reports == [
        {"id": "cntr_new1", "origin": "replaced", "previous_id": "cntr_a", "session": "s1"}
    ]


def test_on_expired_accepts_only_recreate_or_error() -> None:
    with pytest.raises(ValueError):
        SessionResolver(FakeBackend(), "ignore")  # type: ignore[arg-type]


async def test_fifty_concurrent_tool_calls_in_one_request_resolve_once() -> None:
    backend = FakeBackend(gate=asyncio.Event())
    ctx = RequestToolContext(
        SessionResolver(backend), [], tools=[CI_AUTO], session_id="s", turn_id="t"
    )
    calls = [asyncio.ensure_future(ctx.meta("code_interpreter")) for _ in range(50)]
    # callbacks run in FIFO order: all 50 reach the single flight before the backend answers
    gate = backend.gate
    assert gate is not None
    asyncio.get_running_loop().call_soon(gate.set)
    metas = await asyncio.wait_for(asyncio.gather(*calls), 10)
    assert len(backend.created) == 1
    assert {m[META_CONTAINER_ID] for m in metas} == {"cntr_new1"}
    assert metas[0] == {
        META_CONTAINER_ID: "cntr_new1",
        META_SESSION_ID: "s",
        META_TURN_ID: "t",
        META_INCLUDE_EXECUTION: True,  # the gateway builds its output items from it
    }


def test_a_request_context_resolves_once_across_threads_with_their_own_event_loops() -> None:
    backend = FakeBackend()
    ctx = RequestToolContext(SessionResolver(backend), [], tools=[CI_AUTO])
    barrier = threading.Barrier(8, timeout=10)
    ids: list[str] = []

    def worker() -> None:
        async def go() -> str:
            barrier.wait()
            return (await ctx.resolve("code_interpreter")).id

        ids.append(asyncio.run(go()))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(ids) == 8 and set(ids) == {"cntr_new1"}
    assert len(backend.created) == 1


async def test_a_cancelled_first_caller_hands_the_resolution_to_a_waiting_caller() -> None:
    backend = FakeBackend(gate=asyncio.Event())
    ctx = RequestToolContext(SessionResolver(backend), [], tools=[CI_AUTO])
    leader = asyncio.ensure_future(ctx.resolve("code_interpreter"))
    follower = asyncio.ensure_future(ctx.resolve("code_interpreter"))
    loop = asyncio.get_running_loop()
    loop.call_soon(leader.cancel)  # after both tasks reached the flight (FIFO)
    assert backend.gate is not None
    loop.call_soon(backend.gate.set)
    res = await asyncio.wait_for(follower, 10)
    assert leader.cancelled()
    assert res.origin == "created" and len(backend.created) == 1


async def test_a_decision_error_is_remembered_for_the_request_but_a_transient_fault_is_not() -> (
    None
):
    backend = FakeBackend({"cntr_a": "expired"})
    explicit = {"type": "code_interpreter", "container": "cntr_a"}
    ctx = RequestToolContext(SessionResolver(backend, "error"), [], tools=[explicit])
    for _ in range(2):
        with pytest.raises(ContainerExpiredError):
            await ctx.resolve("code_interpreter")

    flaky = FakeBackend(fail_next_create=True)
    ctx2 = RequestToolContext(SessionResolver(flaky), [], tools=[CI_AUTO])
    with pytest.raises(ServiceUnavailableError):
        await ctx2.resolve("code_interpreter")
    assert (await ctx2.resolve("code_interpreter")).origin == "created"


async def test_auto_code_interpreter_and_auto_shell_share_one_container_per_request() -> None:
    backend = FakeBackend()
    ctx = RequestToolContext(SessionResolver(backend), [], tools=[CI_AUTO, SHELL_AUTO])
    a, b = await asyncio.gather(ctx.resolve("code_interpreter"), ctx.resolve("shell"))
    assert a.id == b.id and len(backend.created) == 1
    assert set(ctx.resolutions) == {"code_interpreter", "shell"}


async def test_a_request_context_refuses_a_tool_the_request_did_not_declare() -> None:
    ctx = RequestToolContext(SessionResolver(FakeBackend()), [], tools=[CI_AUTO])
    with pytest.raises(InvalidRequestError):
        await ctx.resolve("shell")
