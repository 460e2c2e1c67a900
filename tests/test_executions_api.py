"""Executions over REST: Python and shell, buffered and streamed, limits, faults."""

from __future__ import annotations

import ast
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from helpers import (
    RunningServer,
    ServerLauncher,
    create_container,
    read_events,
    sse_events,
    wait_until,
)


def exec_info(server: RunningServer, cid: str) -> dict[str, Any]:
    """The container's ``exec_sessions`` member (``busy``, ``queued``, counters)."""
    r = httpx.get(f"{server.api_base}/containers/{cid}", headers=server.headers)
    assert r.status_code == 200, r.text
    return dict(r.json()["exec_sessions"])


def run(server: RunningServer, cid: str, timeout: float = 90, **body: Any) -> dict[str, Any]:
    r = httpx.post(
        f"{server.api_base}/containers/{cid}/executions",
        headers=server.headers,
        json=body,
        timeout=timeout,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def text_of(execution: dict[str, Any], stream: str = "stdout") -> str:
    return "".join(
        o["text"] for o in execution["outputs"] if o["type"] == "logs" and o["stream"] == stream
    )


def result_of(execution: dict[str, Any]) -> str:
    return str(next(o["data"]["text/plain"] for o in execution["outputs"] if o["type"] == "result"))


def stream_events(
    server: RunningServer, cid: str, body: dict[str, Any], on_event: Any = None
) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    with (
        httpx.Client(timeout=90) as client,
        client.stream(
            "POST",
            f"{server.api_base}/containers/{cid}/executions",
            headers=server.headers,
            json={**body, "stream": True},
        ) as r,
    ):
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for sse in sse_events(r.iter_lines()):
            events.append(json.loads(sse.data))
            if on_event is not None and on_event(events[-1]) is False:
                break
    return events


@pytest.mark.kernels("local", "gateway")
def test_python_state_is_kept_across_executions(server: RunningServer) -> None:
    cid = create_container(server, "exec")
    first = run(server, cid, code="x = 41")
    assert first["status"] == "completed" and first["object"] == "container.execution"
    assert first["id"].startswith("exec_") and first["container_id"] == cid
    second = run(server, cid, code="x + 1")
    assert result_of(second) == "42"
    assert second["execution_count"] == first["execution_count"] + 1
    assert second["state_reset"] is False and second["truncated"] is False
    assert second["duration_ms"] > 0


@pytest.mark.kernels("local", "gateway")
def test_code_runs_in_the_container_directory(server: RunningServer) -> None:
    cid = create_container(server, "exec")
    out = run(server, cid, code="import os; print(os.getcwd())")
    expected = "/mnt/data" if server.config["sandbox"] == "bwrap" else server.containers_root / cid
    assert text_of(out).strip() == str(expected)


def test_outputs_cover_streams_results_displays_and_images(server: RunningServer) -> None:
    cid = create_container(server, "exec")
    code = (
        "import sys, base64\n"
        "from IPython.display import display, HTML, Image, SVG, JSON\n"
        "print('out'); print('err', file=sys.stderr)\n"
        "display(HTML('<b>hi</b>'))\n"
        "png = base64.b64decode('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
        "+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==')\n"
        "display(Image(data=png))\n"
        "display(SVG('<svg xmlns=\"http://www.w3.org/2000/svg\"><rect/></svg>'))\n"
        "display(JSON({'a': 1}))\n"
        "7 * 6"
    )
    out = run(server, cid, code=code)
    types = [o["type"] for o in out["outputs"]]
    assert text_of(out) == "out\n" and text_of(out, "stderr") == "err\n"
    assert "display" in types and "image" in types and types[-1] == "result"
    mimes = {o["mime_type"] for o in out["outputs"] if o["type"] == "image"}
    assert {"image/png", "image/svg+xml"} <= mimes
    html = [o for o in out["outputs"] if o["type"] == "display" and "text/html" in o["data"]]
    assert html[0]["data"]["text/html"] == "<b>hi</b>"
    assert result_of(out) == "42"


def test_a_user_exception_is_a_completed_request_with_a_clean_traceback(
    server: RunningServer,
) -> None:
    cid = create_container(server, "exec")
    out = run(server, cid, code="def f():\n    return 1/0\nf()")
    assert out["status"] == "failed"
    err = out["outputs"][-1]
    assert err["type"] == "error" and err["name"] == "ZeroDivisionError"
    assert "division by zero" in err["value"]
    tb = "\n".join(err["traceback"])
    assert "\x1b[" not in tb and "1/0" in tb
    assert result_of(run(server, cid, code="'still alive'")) == "'still alive'"


def test_input_fails_fast_with_a_clear_message(server: RunningServer) -> None:
    cid = create_container(server, "exec")
    t0 = time.monotonic()
    out = run(server, cid, code="input('name? ')", timeout_ms=30_000)
    assert time.monotonic() - t0 < 10
    assert out["status"] == "failed"
    assert "input" in out["outputs"][-1]["value"].lower()


@pytest.mark.kernels("local", "gateway")
def test_shell_keeps_cwd_env_and_variables_and_reports_each_exit_code(
    server: RunningServer,
) -> None:
    cid = create_container(server, "exec")
    out = run(
        server,
        cid,
        type="shell",
        commands=[
            "mkdir -p data && cd data",
            "export GREETING=hi; LOCAL=yes",
            "false",
            "echo oops >&2; exit 3",
        ],
    )
    assert out["type"] == "shell" and out["status"] == "completed"
    codes = [s["outcome"] for s in out["shell_output"]]
    assert codes == [
        {"type": "exit", "exit_code": 0},
        {"type": "exit", "exit_code": 0},
        {"type": "exit", "exit_code": 1},
        {"type": "exit", "exit_code": 3},
    ]
    assert out["shell_output"][3]["stderr"] == "oops\n"
    assert out["shell_output"][0]["command"] == "mkdir -p data && cd data"
    later = run(server, cid, type="shell", commands=["pwd", "echo $GREETING $LOCAL"])
    root = "/mnt/data" if server.config["sandbox"] == "bwrap" else cid
    assert later["shell_output"][0]["stdout"].strip().endswith(f"{root}/data")
    assert later["shell_output"][1]["stdout"] == "hi yes\n"
    # the shell does not disturb Python's execution count or namespace
    assert run(server, cid, code="import os; os.environ.get('GREETING')")["status"] == "completed"


def test_a_kernels_shell_state_is_removed_with_the_kernel(server: RunningServer) -> None:
    # an unconfined local kernel keeps its shell's state in the server's data dir (a sandboxed
    # kernel's private temp dir goes with the sandbox): nothing piles up in the system's /tmp
    cid = create_container(server, "shell-state")
    run(server, cid, type="shell", commands=["export KEPT=1"])
    where = "__import__('sys').modules['_jupyter_exec_sessions_kernel']._state['shell_dir']"
    state = Path(ast.literal_eval(result_of(run(server, cid, code=where))))
    if server.config["sandbox"] == "bwrap":
        assert str(state).startswith("/tmp/")  # the sandbox's own /tmp
        return
    assert state.parent == server.data_dir / "shells"
    assert (state / "state.sh").is_file()
    r = httpx.delete(f"{server.api_base}/containers/{cid}", headers=server.headers, timeout=60)
    assert r.status_code == 200, r.text
    wait_until(lambda: not state.exists(), 30, "the shell state to be removed")


@pytest.mark.kernels("local", "gateway")
def test_a_shell_command_that_times_out_is_killed_and_the_shell_stays_usable(
    server: RunningServer,
) -> None:
    cid = create_container(server, "exec")
    run(server, cid, type="shell", commands=["export KEEP=1"])
    t0 = time.monotonic()
    out = run(server, cid, type="shell", commands=["sleep 60", "echo after $KEEP"], timeout_ms=1000)
    assert time.monotonic() - t0 < 15
    assert out["shell_output"][0]["outcome"] == {"type": "timeout"}
    assert out["shell_output"][1]["stdout"] == "after 1\n"


@pytest.mark.kernels("local", "gateway")
def test_a_python_timeout_interrupts_and_keeps_state(server: RunningServer) -> None:
    cid = create_container(server, "exec")
    run(server, cid, code="kept = 'yes'")
    t0 = time.monotonic()
    out = run(
        server, cid, code="import time\nprint('start', flush=True)\ntime.sleep(60)", timeout_ms=1000
    )
    assert time.monotonic() - t0 < 15
    assert out["status"] == "timed_out" and out["state_reset"] is False
    assert "start" in text_of(out)
    assert result_of(run(server, cid, code="kept")) == "'yes'"


@pytest.mark.kernels("local", "gateway")
def test_code_that_ignores_interrupts_gets_a_fresh_kernel_and_says_so(
    start_server: ServerLauncher,
) -> None:
    srv = start_server(pool_size=1, interrupt_grace_s=1.0)
    cid = create_container(srv, "exec")
    run(srv, cid, code="lost = True\nopen('file.txt', 'w').write('kept')")
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "while True: time.sleep(0.01)"
    )
    out = run(srv, cid, code=code, timeout_ms=1000)
    assert out["status"] == "timed_out" and out["state_reset"] is True
    after = run(srv, cid, code="print(open('file.txt').read()); 'lost' in globals()")
    assert text_of(after) == "kept\n" and result_of(after) == "False"
    info = httpx.get(f"{srv.api_base}/containers/{cid}", headers=srv.headers).json()
    assert info["exec_sessions"]["state_resets"] == 1


@pytest.mark.kernels("local", "gateway")
def test_a_dying_kernel_fails_the_execution_and_the_next_one_starts_fresh(
    server: RunningServer,
) -> None:
    cid = create_container(server, "exec")
    other = create_container(server, "bystander")
    run(server, other, code="safe = 1")
    run(server, cid, code="doomed = 1\nopen('survivor.txt', 'w').write('files stay')")
    t0 = time.monotonic()
    died = run(server, cid, code="import os; os._exit(1)")
    assert time.monotonic() - t0 < 20
    assert died["status"] == "failed"
    assert died["outputs"][-1]["name"] == "KernelDiedError"
    nxt = run(server, cid, code="print(open('survivor.txt').read()); 'doomed' in globals()")
    assert nxt["state_reset"] is True
    assert text_of(nxt) == "files stay\n" and result_of(nxt) == "False"
    assert result_of(run(server, other, code="safe")) == "1"  # the bystander is untouched


def test_a_dying_kernel_is_reported_even_when_jupyter_servers_restarter_sees_it_first(
    start_server: ServerLauncher,
) -> None:
    # jupyter_server's restarter polls every kernel (every 3 s by default) and would restart a
    # dead one on the same ports, behind the execution waiting for its reply; polling every
    # 50 ms it sees the death before the execution does
    server = start_server(extra_args=["--KernelRestarter.time_to_dead=0.05"])
    cid = create_container(server, "exec")
    run(server, cid, code="doomed = 1")
    t0 = time.monotonic()
    died = run(server, cid, code="import time, os; time.sleep(0.5); os._exit(1)", timeout=60)
    assert time.monotonic() - t0 < 20, died
    assert died["status"] == "failed" and died["outputs"][-1]["name"] == "KernelDiedError"
    nxt = run(server, cid, code="'doomed' in globals()")
    assert nxt["state_reset"] is True and result_of(nxt) == "False"


def _processes_naming(text: str) -> list[int]:
    """Pids of the processes whose command line contains ``text``."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
        except OSError:
            continue
    return pids


def test_a_deleted_containers_kernel_is_not_restarted_behind_its_back(
    start_server: ServerLauncher,
) -> None:
    # jupyter_server's restarter (here polling every 50 ms) would see the kernel of a deleted
    # container dead and start it again: a process no container and no kernel list knows.
    # Unconfined launched kernels name their connection file (and so their id) on their
    # command line; the restarter is jupyter_server's, the same whatever the sandbox.
    server = start_server(
        sandbox="none",
        kernel_start="launch",
        extra_args=["--KernelRestarter.time_to_dead=0.05"],
    )
    cid = create_container(server, "doomed")
    run(server, cid, code="1")
    kernel_id = exec_info(server, cid)["kernel_id"]
    assert _processes_naming(kernel_id)
    r = httpx.delete(f"{server.api_base}/containers/{cid}", headers=server.headers, timeout=60)
    assert r.status_code == 200, r.text
    wait_until(lambda: not _processes_naming(kernel_id), 30, "the kernel to exit")
    time.sleep(1.0)  # an observation window: 20 of the restarter's polls
    assert _processes_naming(kernel_id) == []
    assert "restarting kernel" not in server.log()


@pytest.mark.kernels("local", "gateway")
def test_huge_output_is_truncated_with_a_marker_and_kept_whole_in_a_file(
    server: RunningServer,
) -> None:
    cid = create_container(server, "exec")
    code = (
        "import sys\nfor i in range(4096):\n    sys.stdout.write(f'{i:07d}' + 'x' * 1016 + '\\n')"
    )
    out = run(server, cid, code=code, max_output_length=10_000)
    assert out["truncated"] is True
    text = text_of(out)
    assert len(text) < 12_000
    assert text.startswith("0000000x") and "0004095x" in text
    assert "truncated" in text
    path = out["full_output_file"]
    assert path == f"/mnt/data/.exec_output/{out['id']}.txt"
    files = httpx.get(f"{server.api_base}/containers/{cid}/files", headers=server.headers).json()
    match = [f for f in files["data"] if f["path"] == path]
    assert match and match[0]["source"] == "assistant"
    assert match[0]["bytes"] == 4096 * 1024
    content = httpx.get(
        f"{server.api_base}/containers/{cid}/files/{match[0]['id']}/content",
        headers=server.headers,
        timeout=60,
    ).content
    lines = content.decode().splitlines()
    assert len(lines) == 4096 and lines[1234].startswith("0001234x")


def test_concurrent_executions_on_one_container_all_apply_in_arrival_order(
    server: RunningServer,
) -> None:
    cid = create_container(server, "exec")
    run(server, cid, code="log = []")
    barrier = threading.Barrier(8)

    def add(i: int) -> dict[str, Any]:
        barrier.wait()
        return run(server, cid, code=f"import time; time.sleep(0.05); log.append({i}); len(log)")

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(add, range(8)))
    assert sorted(int(result_of(r)) for r in results) == list(range(1, 9))
    final = run(server, cid, code="sorted(log)")
    assert result_of(final) == str(list(range(8)))
    counts = [r["execution_count"] for r in results]
    assert len(set(counts)) == 8


def test_two_containers_run_in_parallel(server: RunningServer) -> None:
    a, b = create_container(server, "exec"), create_container(server, "exec")
    for cid in (a, b):
        run(server, cid, code="import time")
    # each cell reports when it ran (the kernel's clock); run one after the other, the two
    # 3-second spans could not overlap
    cell = "start = time.time()\ntime.sleep(3)\n(start, time.time())"
    with ThreadPoolExecutor(2) as pool:
        spans = [
            tuple(map(float, result_of(e).strip("()").split(",")))
            for e in pool.map(lambda cid: run(server, cid, code=cell), (a, b))
        ]
    (a_start, a_end), (b_start, b_end) = spans
    assert a_start < b_end and b_start < a_end, spans


def test_a_full_queue_answers_429_with_retry_after(start_server: ServerLauncher) -> None:
    srv = start_server(pool_size=1, max_queue_depth=1)
    cid = create_container(srv, "exec")
    results: list[int] = []

    def slow() -> None:
        r = httpx.post(
            f"{srv.api_base}/containers/{cid}/executions",
            headers=srv.headers,
            json={"code": "import time; time.sleep(2)"},
            timeout=60,
        )
        results.append(r.status_code)

    threads = [threading.Thread(target=slow) for _ in range(2)]
    threads[0].start()
    wait_until(lambda: exec_info(srv, cid)["busy"], 20, "the execution to run")
    threads[1].start()
    wait_until(lambda: exec_info(srv, cid)["queued"] == 1, 20, "the second one to queue")
    r = httpx.post(
        f"{srv.api_base}/containers/{cid}/executions", headers=srv.headers, json={"code": "1"}
    )
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
    assert "max_queue_depth" in r.json()["error"]["message"]
    for t in threads:
        t.join(60)
    assert results == [200, 200]


def test_oversized_code_is_a_413_naming_the_limit(start_server: ServerLauncher) -> None:
    srv = start_server(pool_size=1, max_code_bytes=1000)
    cid = create_container(srv, "exec")
    r = httpx.post(
        f"{srv.api_base}/containers/{cid}/executions",
        headers=srv.headers,
        json={"code": "x = '" + "a" * 2000 + "'"},
    )
    assert r.status_code == 413 and "max_code_bytes" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"type": "python"}, "code"),
        ({"type": "shell", "commands": []}, "commands"),
        ({"type": "ruby", "code": "1"}, "type"),
        ({"code": "1", "timeout_ms": 0}, "timeout_ms"),
        ({"code": "1", "max_output_length": -5}, "max_output_length"),
    ],
)
def test_bad_execution_bodies_are_400s(
    server: RunningServer, body: dict[str, Any], param: str
) -> None:
    cid = create_container(server, "exec")
    r = httpx.post(
        f"{server.api_base}/containers/{cid}/executions", headers=server.headers, json=body
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


@pytest.mark.kernels("local", "gateway")
def test_streamed_execution_events_arrive_in_order_with_seq(server: RunningServer) -> None:
    cid = create_container(server, "exec")
    code = "import time\nfor i in range(3):\n    print(i, flush=True)\n    time.sleep(0.05)\n'done'"
    events = stream_events(server, cid, {"code": code})
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert events[0]["type"] == "execution.started"
    assert events[0]["execution"]["status"] == "in_progress"
    assert events[-1]["type"] == "execution.completed"
    assert all(e["type"] == "execution.output" for e in events[1:-1])
    texts = [e["output"].get("text", "") for e in events[1:-1]]
    assert "".join(texts).split() == ["0", "1", "2"]
    final = events[-1]["execution"]
    assert final["status"] == "completed" and result_of(final) == "'done'"


def test_a_streaming_client_that_disconnects_interrupts_its_execution(
    server: RunningServer,
) -> None:
    cid = create_container(server, "exec")
    code = "import time\nprint('tick', flush=True)\nfor _ in range(600):\n    time.sleep(0.1)"
    stream_events(server, cid, {"code": code}, on_event=lambda e: e["type"] != "execution.output")
    t0 = time.monotonic()
    out = run(server, cid, code="'free again'")  # would wait ~60 s if not interrupted
    assert result_of(out) == "'free again'"
    assert time.monotonic() - t0 < 15


@pytest.mark.kernels("local", "gateway")
def test_deleting_a_container_cancels_running_and_queued_executions(server: RunningServer) -> None:
    cid = create_container(server, "exec")
    results: list[dict[str, Any]] = []

    def call(code: str) -> None:
        results.append(run(server, cid, code=code))

    threads = [threading.Thread(target=call, args=("import time; time.sleep(60)",))]
    threads[0].start()
    wait_until(lambda: exec_info(server, cid)["busy"], 20, "the execution to run")
    threads.append(threading.Thread(target=call, args=("1",)))
    threads[1].start()
    wait_until(lambda: exec_info(server, cid)["queued"] == 1, 20, "the second one to queue")
    t0 = time.monotonic()
    assert (
        httpx.delete(f"{server.api_base}/containers/{cid}", headers=server.headers).status_code
        == 200
    )
    for t in threads:
        t.join(30)
    assert time.monotonic() - t0 < 15
    assert sorted(r["status"] for r in results) == ["cancelled", "cancelled"]


@pytest.mark.kernels("local", "gateway")
def test_interrupt_stops_the_running_code_and_keeps_state(server: RunningServer) -> None:
    cid = create_container(server, "exec")
    run(server, cid, code="kept = 5")
    box: list[dict[str, Any]] = []
    t = threading.Thread(
        target=lambda: box.append(run(server, cid, code="import time; time.sleep(60)"))
    )
    t.start()
    wait_until(lambda: exec_info(server, cid)["busy"], 20, "the execution to run")
    r = httpx.post(f"{server.api_base}/containers/{cid}/interrupt", headers=server.headers)
    assert r.status_code == 200 and r.json()["interrupted"] is True
    t.join(30)
    assert box[0]["status"] == "cancelled"
    assert box[0]["outputs"][-1]["name"] == "KeyboardInterrupt"
    assert result_of(run(server, cid, code="kept")) == "5"


def test_executions_count_sessions_and_turns_and_emit_events(server: RunningServer) -> None:
    cid = create_container(server, "exec")
    for session, turn in (("s1", "t1"), ("s1", "t2"), ("s2", "t3"), ("s2", "t3")):
        run(server, cid, code="1", metadata={"session_id": session, "turn_id": turn})
    info = httpx.get(f"{server.api_base}/containers/{cid}", headers=server.headers).json()
    assert info["exec_sessions"]["executions"] == 4
    assert info["exec_sessions"]["sessions"] == 2
    assert info["exec_sessions"]["turns"] == 3
    assert info["exec_sessions"]["busy"] is False
    events = read_events(
        server.api_base,
        server.headers,
        until=lambda ev: (
            len([e for e in ev if e["type"] == "execution.completed" and e["container_id"] == cid])
            == 4
        ),
    )
    mine = [e for e in events if e["container_id"] == cid and e["type"].startswith("execution.")]
    assert [e["type"] for e in mine] == ["execution.started", "execution.completed"] * 4
    done = mine[-1]["data"]
    assert done["status"] == "completed" and done["session_id"] == "s2" and done["turn_id"] == "t3"
    assert done["duration_ms"] > 0


def test_output_floods_do_not_hit_the_iopub_rate_limit(server: RunningServer) -> None:
    cid = create_container(server, "exec")
    out = run(
        server,
        cid,
        code="for i in range(20000):\n    print(i)",
        max_output_length=1_000_000,
    )
    assert out["truncated"] is False
    assert text_of(out).split() == [str(i) for i in range(20000)]
