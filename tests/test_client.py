"""The typed HTTP client (sync and async) against a real server, and its error mapping."""

from __future__ import annotations

import io
import time

import anyio
import pytest
from helpers import RunningServer

from jupyter_exec_sessions import errors
from jupyter_exec_sessions._contract import ContainerBackend
from jupyter_exec_sessions.client import AsyncClient, Client, api_base_url, error_from_response
from jupyter_exec_sessions.client._transport import KEEPALIVE, ServerSentEvent, SSEDecoder
from jupyter_exec_sessions.models import (
    CreateContainerRequest,
    ExpiresAfter,
    LogsOutput,
    Output,
    PythonExecutionRequest,
    ShellExecutionRequest,
)


# --------------------------------------------------------------------------- pure
def test_the_sse_decoder_dispatches_on_blank_lines_and_reports_comments_as_keepalives() -> None:
    decoder = SSEDecoder()
    lines = ["id: 7", "event: execution.output", 'data: {"a":', "data: 1}", "", ": keepalive", ""]
    frames = [decoder.feed(line) for line in lines]
    assert frames[4] == ServerSentEvent("execution.output", '{"a":\n1}', "7")
    assert frames[5] is KEEPALIVE
    assert [f for i, f in enumerate(frames) if i not in (4, 5)] == [None] * 5
    assert decoder.feed("data: next") is None and decoder.feed("") == ServerSentEvent(
        "message", "next", "7"
    )


def test_the_api_lives_under_exec_sessions_v1_of_the_server_base_url() -> None:
    assert api_base_url("http://h:1/") == "http://h:1/exec-sessions/v1"
    assert api_base_url("http://h:1/jupyter") == "http://h:1/jupyter/exec-sessions/v1"
    assert api_base_url("http://h:1/exec-sessions/v1/") == "http://h:1/exec-sessions/v1"


@pytest.mark.parametrize(
    ("status", "code", "cls"),
    [
        (400, "container_expired", errors.ContainerExpiredError),
        (400, "invalid_request", errors.InvalidRequestError),
        (401, "invalid_api_key", errors.AuthenticationError),
        (404, "container_not_found", errors.ContainerNotFoundError),
        (404, "file_not_found", errors.ContainerFileNotFoundError),
        (404, None, errors.NotFoundError),
        (413, "payload_too_large", errors.PayloadTooLargeError),
        (429, "queue_full", errors.QueueFullError),
        (429, "quota_exceeded", errors.QuotaExceededError),
        (500, "kernel_error", errors.KernelError),
        (503, "unavailable", errors.ServiceUnavailableError),
        (502, None, errors.ExecSessionsError),
    ],
)
def test_error_bodies_map_back_to_the_exception_the_server_raised(
    status: int, code: str | None, cls: type[errors.ExecSessionsError]
) -> None:
    body = {"error": {"message": "m!", "type": "t", "param": "p", "code": code}}
    exc = error_from_response(status, body, {"retry-after": "2.5"}, container_id="cntr_x")
    assert type(exc) is cls
    assert exc.message == "m!" and str(exc) == "m!"
    if code:
        assert exc.code == code
    if isinstance(exc, errors.RateLimitError):
        assert exc.retry_after == 2.5
    if isinstance(exc, errors.ContainerNotFoundError):
        assert exc.container_id == "cntr_x"


def test_a_non_openai_error_body_still_maps_by_status() -> None:
    exc = error_from_response(403, b'{"message": "Forbidden", "reason": null}')
    assert isinstance(exc, errors.AuthenticationError) and exc.status == 403
    assert isinstance(error_from_response(500, b"<html>oops</html>"), errors.ExecSessionsError)


def test_the_async_client_is_a_container_backend() -> None:
    backend: ContainerBackend = AsyncClient("http://127.0.0.1:1/")
    assert backend is not None


async def test_an_unreachable_server_is_service_unavailable() -> None:
    async with AsyncClient("http://127.0.0.1:9/", "t") as client:
        with pytest.raises(errors.ServiceUnavailableError, match="Cannot reach"):
            await client.list_containers()


# --------------------------------------------------------------------------- sync client
def test_sync_client_covers_containers_files_and_executions(server: RunningServer) -> None:
    tag = f"sync-{time.monotonic_ns()}"
    with Client(server.url, server.token) as client:
        ids = [
            client.create_container(name=tag, expires_after=30, memory_limit="4g").id
            for _ in range(3)
        ]
        page = client.list_containers(name=tag, limit=2)
        assert [c.id for c in page.data] == ids[::-1][:2] and page.has_more
        assert [c.id for c in client.iter_containers(name=tag, order="asc")] == ids
        got = client.retrieve_container(ids[0])
        assert got.name == tag and got.expires_after.minutes == 30 and got.memory_limit == "4g"

        cid = ids[0]
        uploaded = client.upload_file(cid, b"a,b\n1,2\n", filename="data.csv")
        assert uploaded.path.endswith("data.csv") and uploaded.bytes == 8
        assert uploaded.source == "user"
        from_obj = client.upload_file(cid, io.BytesIO(b"xyz"), filename="obj.bin")
        assert client.retrieve_file(cid, uploaded.id).id == uploaded.id
        assert client.file_content(cid, uploaded.id) == b"a,b\n1,2\n"
        listed = {f.id for f in client.list_files(cid).data}
        assert {uploaded.id, from_obj.id} <= listed
        assert client.delete_file(cid, from_obj.id).deleted is True
        with pytest.raises(errors.ContainerFileNotFoundError):
            client.retrieve_file(cid, from_obj.id)

        done = client.execute(cid, PythonExecutionRequest(code="open('data.csv').read().upper()"))
        assert done.status == "completed" and done.container_id == cid
        assert any("A,B" in str(getattr(o, "data", "")) for o in done.outputs)
        shell = client.execute(cid, ShellExecutionRequest(commands=["echo hi", "exit 3"]))
        assert shell.shell_output and shell.shell_output[0].stdout.strip() == "hi"
        events = list(
            client.execute_stream(cid, PythonExecutionRequest(code="print('s1')\nprint('s2')"))
        )
        assert events[0].type == "execution.started" and events[-1].type == "execution.completed"
        assert [e.seq for e in events] == list(range(len(events)))
        streamed = "".join(e.output.text for e in events if isinstance(e.output, LogsOutput))
        assert streamed.split() == ["s1", "s2"]

        feed = client.events()
        first = next(feed)
        assert first.seq >= 0 and first.type
        feed.close()

        live = client.events(first.seq, keepalives=True, read_timeout=30)
        assert next(live) is None  # the stream is open: what happens now is in the feed
        made = client.create_container(name="after-the-feed-opened")
        ids.append(made.id)
        later = next(e for e in live if e is not None and e.container_id == made.id)
        assert later.type == "container.created" and later.seq > first.seq
        live.close()

        for container_id in ids:
            assert client.delete_container(container_id).deleted is True
        with pytest.raises(errors.ContainerNotFoundError) as missing:
            client.retrieve_container(ids[0])
        assert missing.value.status == 404 and missing.value.container_id == ids[0]


def test_sync_client_with_a_wrong_token_raises_authentication_error(server: RunningServer) -> None:
    with Client(server.url, "wrong") as client, pytest.raises(errors.AuthenticationError):
        client.list_containers()


def test_bad_requests_raise_invalid_request_error_naming_the_parameter(
    server: RunningServer,
) -> None:
    with Client(server.url, server.token) as client:
        with pytest.raises(errors.InvalidRequestError) as bad:
            client.list_containers(limit=500)
        assert bad.value.param == "limit"


# --------------------------------------------------------------------------- async client
async def test_async_client_streams_outputs_to_on_output_and_returns_the_execution(
    server: RunningServer,
) -> None:
    seen: list[tuple[Output, int | None]] = []
    async with AsyncClient(server.url, server.token) as client:
        box = await client.create_container(
            CreateContainerRequest(name="async", expires_after=ExpiresAfter(minutes=5))
        )
        result = await client.execute(
            box.id,
            PythonExecutionRequest(code="print('one')\nprint('two')\n21 * 2"),
            on_output=lambda output, index: seen.append((output, index)),
        )
        buffered = await client.execute(box.id, PythonExecutionRequest(code="21 * 2"))
        failed = await client.execute(box.id, PythonExecutionRequest(code="1/0"))
        await client.delete_container(box.id)
    assert result.status == "completed" and result.id.startswith("exec_")
    assert "".join(o.text for o, _ in seen if isinstance(o, LogsOutput)).split() == ["one", "two"]
    assert [o.type for o, _ in seen][-1] == "result"
    assert buffered.outputs[-1].type == "result"
    assert failed.status == "failed" and failed.outputs[-1].type == "error"


async def test_async_client_interrupts_a_running_execution(server: RunningServer) -> None:
    async with AsyncClient(server.url, server.token) as client:
        box = await client.create_container(name="interrupt-me")
        started = anyio.Event()
        outcome: dict[str, str] = {}

        async def run() -> None:
            req = PythonExecutionRequest(
                code="import time\nprint('go', flush=True)\ntime.sleep(60)"
            )
            done = await client.execute(box.id, req, on_output=lambda *_: started.set())
            outcome["status"] = done.status
            outcome["error"] = str(done.outputs[-1].model_dump())

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run)
                await started.wait()
                await client.interrupt(box.id)
        after = await client.execute(box.id, PythonExecutionRequest(code="'alive'"))
        await client.delete_container(box.id)
    assert "KeyboardInterrupt" in outcome["error"] or outcome["status"] in ("cancelled", "failed")
    assert after.status == "completed"


async def test_async_client_follows_the_events_feed_and_resumes_after_last_event_id(
    server: RunningServer,
) -> None:
    async with AsyncClient(server.url, server.token) as client:
        box = await client.create_container(name=f"feed-{time.monotonic_ns()}")
        with anyio.fail_after(20):
            async for event in client.events():
                if event.type == "container.created" and event.container_id == box.id:
                    created = event
                    break
        await client.delete_container(box.id)
        with anyio.fail_after(20):
            async for event in client.events(last_event_id=created.seq):
                assert event.seq > created.seq
                if event.type == "container.deleted" and event.container_id == box.id:
                    break
