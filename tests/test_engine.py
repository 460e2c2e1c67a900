"""The execution engine against real ipykernels (no server, no mocks).

One kernel + session is shared by the module where that is safe; tests that kill, wedge or
re-setup a kernel get their own. Every wait is bounded by the engine's own timeouts or
``asyncio.wait_for``.
"""

from __future__ import annotations

import asyncio
import base64
import random
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from jupyter_client.manager import AsyncKernelManager

from jupyter_exec_sessions import errors
from jupyter_exec_sessions.engine import KernelSession, RunResult
from jupyter_exec_sessions.engine.outputs import PythonOutputs
from jupyter_exec_sessions.models import (
    DisplayOutput,
    ErrorOutput,
    ImageOutput,
    LogsOutput,
    Output,
    ResultOutput,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
LIMIT = 10_000


async def _start_kernel(cwd: Path) -> AsyncKernelManager:
    km = AsyncKernelManager(kernel_name="python3")
    await km.start_kernel(cwd=str(cwd))
    return km


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def km(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[AsyncKernelManager]:
    km = await _start_kernel(tmp_path_factory.mktemp("kernel"))
    yield km
    await km.shutdown_kernel(now=True)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("containers") / "cntr_test" / "work"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def session(km: AsyncKernelManager, workdir: Path) -> AsyncIterator[KernelSession]:
    s = KernelSession(km, str(workdir))
    await s.start(wait_ready_timeout=60)
    yield s
    await s.close()


@pytest_asyncio.fixture(loop_scope="module")
async def own_km(tmp_path: Path) -> AsyncIterator[AsyncKernelManager]:
    km = await _start_kernel(tmp_path)
    yield km
    await km.shutdown_kernel(now=True)


_n = 0


def _eid() -> str:
    global _n
    _n += 1
    return f"exec_{_n:04d}"


async def py(s: KernelSession, code: str, **kw: Any) -> RunResult:
    kw.setdefault("timeout_s", 30)
    kw.setdefault("max_output_length", LIMIT)
    return await s.run_python(code, execution_id=_eid(), **kw)


async def sh(s: KernelSession, *commands: str, **kw: Any) -> RunResult:
    kw.setdefault("timeout_s", 30)
    kw.setdefault("max_output_length", LIMIT)
    return await s.run_shell(list(commands), execution_id=_eid(), **kw)


def text(outputs: list[Output], stream: str = "stdout") -> str:
    return "".join(o.text for o in outputs if isinstance(o, LogsOutput) and o.stream == stream)


# ----------------------------------------------------------------------------- python
async def test_the_kernel_runs_in_the_workdir(session: KernelSession, workdir: Path) -> None:
    r = await py(session, "import os; os.getcwd()")
    assert r.status == "completed"
    assert r.outputs == [ResultOutput(data={"text/plain": repr(str(workdir))})]
    assert workdir.is_dir()


async def test_variables_persist_and_execution_count_increments(session: KernelSession) -> None:
    first = await py(session, "x = 41")
    second = await py(session, "x + 1")
    assert second.outputs == [ResultOutput(data={"text/plain": "42"})]
    assert first.execution_count is not None
    assert second.execution_count == first.execution_count + 1


async def test_helper_calls_neither_bump_the_count_nor_touch_the_namespace(
    session: KernelSession,
) -> None:
    before = await py(session, "sorted(k for k in globals() if not k.startswith('_'))")
    await sh(session, "true")
    await session.list_files()
    after = await py(session, "sorted(k for k in globals() if not k.startswith('_'))")
    assert after.execution_count == before.execution_count + 1  # type: ignore[operator]
    assert after.outputs == before.outputs


async def test_stdout_stderr_and_result_become_separate_outputs(session: KernelSession) -> None:
    r = await py(session, "import sys\nprint('a')\nprint('b')\nprint('e', file=sys.stderr)\n7")
    assert r.outputs == [
        LogsOutput(stream="stdout", text="a\nb\n"),
        LogsOutput(stream="stderr", text="e\n"),
        ResultOutput(data={"text/plain": "7"}),
    ]


async def test_rich_displays_map_to_images_and_display_bundles(session: KernelSession) -> None:
    code = (
        "from IPython.display import display, HTML, SVG, Image\n"
        f"display({{'image/png': {PNG!r}, 'text/plain': '<fig>'}}, raw=True)\n"
        "display(SVG('<svg xmlns=\"http://www.w3.org/2000/svg\"/>'))\n"
        "display(HTML('<b>hi</b>'))\n"
        f"Image(data=__import__('base64').b64decode({PNG!r}), format='png')"
    )
    r = await py(session, code)
    assert r.status == "completed", r.outputs
    png, svg, html, result_image, result = r.outputs
    assert png == ImageOutput(mime_type="image/png", data=PNG)
    assert isinstance(svg, ImageOutput) and svg.mime_type == "image/svg+xml"
    assert base64.b64decode(svg.data).decode().startswith("<svg")
    assert isinstance(html, DisplayOutput) and html.data["text/html"] == "<b>hi</b>"
    assert result_image == ImageOutput(mime_type="image/png", data=PNG)
    assert isinstance(result, ResultOutput) and "image/png" not in result.data


async def test_an_exception_fails_the_run_with_an_ansi_free_traceback(
    session: KernelSession,
) -> None:
    r = await py(session, "print('before')\n1/0")
    assert r.status == "failed"
    assert r.outputs[0] == LogsOutput(text="before\n")
    err = r.outputs[-1]
    assert isinstance(err, ErrorOutput) and err.name == "ZeroDivisionError"
    assert err.traceback and not any("\x1b" in line for line in err.traceback)
    assert "1/0" in "".join(err.traceback)


async def test_input_fails_fast_with_a_clear_error(session: KernelSession) -> None:
    r = await py(session, "input('name? ')", timeout_s=20)
    assert r.status == "failed"
    err = r.outputs[-1]
    assert isinstance(err, ErrorOutput) and "input() is not available" in err.value


async def test_a_timeout_interrupts_the_code_and_keeps_state(session: KernelSession) -> None:
    deltas: list[Output] = []
    code = "kept = 'yes'\nimport time\ntime.sleep(100)"
    r = await py(session, code, timeout_s=1, on_output=lambda o, i: deltas.append(o))
    assert r.status == "timed_out" and not r.kernel_lost
    err = r.outputs[-1]
    assert isinstance(err, ErrorOutput) and err.name == "TimeoutError"
    assert "state is kept" in err.value and "time.sleep(100)" in "".join(err.traceback)
    assert deltas == [err]
    assert (await py(session, "kept")).outputs == [ResultOutput(data={"text/plain": "'yes'"})]


async def test_output_past_the_limit_keeps_head_and_tail_and_writes_the_full_file(
    session: KernelSession,
) -> None:
    body = 4 * 1024 * 1024
    deltas: list[Output] = []
    eid = _eid()
    r = await session.run_python(
        f"import sys\nsys.stdout.write('HEAD' + 'x' * {body} + 'TAIL');",
        execution_id=eid, timeout_s=60, max_output_length=LIMIT,
        on_output=lambda o, i: deltas.append(o),
    )  # fmt: skip
    assert r.status == "completed" and r.truncated
    assert r.full_output_file == f"/mnt/data/.exec_output/{eid}.txt"
    [out] = r.outputs
    assert isinstance(out, LogsOutput)
    assert out.text.startswith("HEAD") and out.text.endswith("TAIL")
    assert f"characters truncated: full output in {r.full_output_file}" in out.text
    assert len(out.text) < LIMIT + 200
    full = await session.read_file(f".exec_output/{eid}.txt")
    assert full == b"HEAD" + b"x" * body + b"TAIL"
    streamed = "".join(d.text for d in deltas if isinstance(d, LogsOutput))
    assert streamed.startswith("HEAD") and "live output stops here" in streamed
    assert len(streamed) < LIMIT + 200


async def test_truncation_keeps_exact_head_and_tail_across_streams_and_results() -> None:
    """Random mixes of stdout/stderr/results/images against the budget rules (pure, no kernel)."""
    for trial in range(300):
        rnd = random.Random(trial)
        limit = rnd.randint(1, 200)
        outs = PythonOutputs(limit, "/w/.exec_output/x.txt", None)
        full, images = "", 0
        for _ in range(rnd.randint(0, 12)):
            kind = rnd.random()
            if kind < 0.7:
                chunk = "".join(rnd.choice("ab\n") for _ in range(rnd.randint(0, 80)))
                msg: tuple[dict[str, Any], dict[str, Any]] = (
                    {"msg_type": "stream"},
                    {"name": rnd.choice(["stdout", "stderr"]), "text": chunk},
                )
            elif kind < 0.85:
                chunk = "R" * rnd.randint(0, 90)
                msg = {"msg_type": "execute_result"}, {"data": {"text/plain": chunk}}
            else:
                chunk, images = "", images + 1
                msg = {"msg_type": "display_data"}, {"data": {"image/png": PNG}}
            outs.handle({"header": msg[0], "content": msg[1]})
            full += chunk
        final = outs.finish("/w/.exec_output/x.txt")
        kept = "".join(
            o.text if isinstance(o, LogsOutput) else o.data["text/plain"]
            for o in final
            if isinstance(o, (LogsOutput, ResultOutput))
        )
        assert sum(isinstance(o, ImageOutput) for o in final) == images
        if len(full) <= limit:
            assert not outs.truncated and kept == full
            continue
        assert outs.truncated and b"".join(outs.spool_chunks()).decode() == full
        m = re.search(
            r"\n\[\.\.\. ([\d,]+) characters truncated: full output in \S+ \.\.\.\]\n", kept
        )
        assert m is not None, trial
        head, tail = kept[: m.start()], kept[m.end() :]
        assert len(head) == limit * 3 // 5 and len(tail) == limit - limit * 3 // 5
        assert full.startswith(head) and full.endswith(tail)
        assert int(m.group(1).replace(",", "")) == len(full) - len(head) - len(tail)


async def test_live_output_arrives_in_order(session: KernelSession) -> None:
    deltas: list[tuple[Output, int | None]] = []
    code = (
        "import sys, time\nfor i in range(3):\n    print(i, flush=True); time.sleep(0.05)\n"
        "print('err', file=sys.stderr, flush=True)\n'done'"
    )
    r = await py(session, code, on_output=lambda o, i: deltas.append((o, i)))
    assert [i for _, i in deltas] == [None] * len(deltas)
    outs = [o for o, _ in deltas]
    assert text(outs) == "0\n1\n2\n" and text(outs, "stderr") == "err\n"
    assert outs[-1] == ResultOutput(data={"text/plain": "'done'"})
    assert r.outputs[-1] == outs[-1]


async def test_cancelling_the_waiting_task_interrupts_the_kernel(session: KernelSession) -> None:
    started = asyncio.Event()
    task = asyncio.create_task(
        py(session, "import time\nprint('go', flush=True)\ntime.sleep(100)", timeout_s=100,
           on_output=lambda o, i: started.set())
    )  # fmt: skip
    await asyncio.wait_for(started.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    r = await py(session, "'alive'", timeout_s=10)  # would time out if the sleep still ran
    assert r.status == "completed"


async def test_interrupt_stops_the_run_as_cancelled_and_keeps_state(
    session: KernelSession,
) -> None:
    started = asyncio.Event()
    task = asyncio.create_task(
        py(session, "y = 5\nimport time\nprint('go', flush=True)\ntime.sleep(100)",
           timeout_s=100, on_output=lambda o, i: started.set())
    )  # fmt: skip
    await asyncio.wait_for(started.wait(), 30)
    await session.interrupt()
    r = await asyncio.wait_for(task, 30)
    assert r.status == "cancelled" and not r.kernel_lost
    assert (await py(session, "y")).outputs == [ResultOutput(data={"text/plain": "5"})]


async def test_an_interrupt_sent_before_the_kernel_began_the_cell_still_stops_it(
    session: KernelSession,
) -> None:
    task = asyncio.create_task(py(session, "import time\ntime.sleep(100)", timeout_s=100))
    for _ in range(1000):  # until the request is sent (the kernel has not answered yet)
        if session._user_req is not None:
            break
        await asyncio.sleep(0)
    assert session._user_req is not None
    await session.interrupt()  # before the kernel's busy status: it waits for it
    r = await asyncio.wait_for(task, 30)
    assert r.status == "cancelled" and not r.kernel_lost


async def test_an_interrupt_the_kernel_ignored_is_sent_again_until_the_cell_stops(
    session: KernelSession,
) -> None:
    # ipykernel reports a cell busy a moment before SIGINT can interrupt it; a signal landing
    # in that moment is lost. This cell swallows the first one, as that moment would.
    code = (
        "import signal, time\n"
        "seen = []\n"
        "def swallow_first(*args):\n"
        "    seen.append(1)\n"
        "    if len(seen) > 1:\n"
        "        raise KeyboardInterrupt\n"
        "signal.signal(signal.SIGINT, swallow_first)\n"
        "print('started', flush=True)\n"
        "time.sleep(100)"
    )
    started = asyncio.Event()
    task = asyncio.create_task(
        session.run_python(
            code,
            execution_id=_eid(),
            timeout_s=100,
            max_output_length=LIMIT,
            on_output=lambda *_: started.set(),
        )
    )
    await asyncio.wait_for(started.wait(), 30)
    await session.interrupt()
    r = await asyncio.wait_for(task, 30)
    assert r.status == "cancelled" and not r.kernel_lost
    seen = (await py(session, "len(seen)")).outputs[-1]
    assert isinstance(seen, ResultOutput) and seen.data["text/plain"] == "2"


async def test_an_execution_id_that_is_not_a_plain_name_is_rejected(
    session: KernelSession,
) -> None:
    with pytest.raises(errors.InvalidRequestError, match="execution id"):
        await session.run_python("1", execution_id="../evil", timeout_s=5, max_output_length=10)


# ----------------------------------------------------------------------------- shell
async def test_the_shell_keeps_cwd_env_variables_functions_and_aliases(
    session: KernelSession, workdir: Path
) -> None:
    first = await sh(session, "pwd", "mkdir -p sub && cd sub", "export GREETING=hi; plain=1")
    assert first.shell_output is not None and first.shell_output[0].stdout == f"{workdir}\n"
    await sh(session, 'greet() { echo "$GREETING from $1"; }', "alias ll='echo aliased'")
    r = await sh(session, "pwd; echo $plain", "greet fn", "ll", "bash -c 'echo $GREETING'")
    assert r.shell_output is not None
    assert [c.stdout for c in r.shell_output] == [
        f"{workdir}/sub\n1\n",
        "hi from fn\n",
        "aliased\n",
        "hi\n",
    ]
    await sh(session, f"cd {workdir}; unset plain")


async def test_each_command_has_its_exit_code_and_separate_stderr(session: KernelSession) -> None:
    r = await sh(session, "echo out; echo err >&2; exit 3", "false", "echo ok")
    assert r.status == "completed" and r.shell_output is not None
    first = r.shell_output[0]
    assert (first.stdout, first.stderr) == ("out\n", "err\n")
    assert [c.outcome.model_dump() for c in r.shell_output] == [
        {"type": "exit", "exit_code": 3}, {"type": "exit", "exit_code": 1},
        {"type": "exit", "exit_code": 0},
    ]  # fmt: skip
    assert r.outputs == [
        LogsOutput(stream="stdout", text="out\n"),
        LogsOutput(stream="stderr", text="err\n"),
        LogsOutput(stream="stdout", text="ok\n"),
    ]


async def test_a_very_long_command_runs(session: KernelSession) -> None:
    body = "x" * 300_000  # more than one environment variable or argument may hold
    r = await sh(session, f"cat > long.txt <<'EOF'\n{body}\nEOF\nwc -c < long.txt; rm long.txt")
    assert r.shell_output is not None and r.shell_output[0].stdout == "300001\n"


async def test_stdin_is_closed_and_background_jobs_do_not_block_a_command(
    session: KernelSession,
) -> None:
    r = await sh(
        session, "read line; echo read=$?", "sleep 60 & echo $! > job.pid; echo started",
        timeout_s=10,
    )  # fmt: skip
    assert r.status == "completed" and r.shell_output is not None
    assert [c.stdout for c in r.shell_output] == ["read=1\n", "started\n"]
    await sh(session, "kill $(cat job.pid); rm job.pid")


async def test_a_shell_timeout_kills_the_process_group_and_the_shell_stays_usable(
    session: KernelSession,
) -> None:
    await sh(session, "before=kept")
    r = await sh(
        session, "after=lost; sleep 100 & echo $! > bg.pid; sleep 100", "echo next",
        timeout_s=1,
    )  # fmt: skip
    assert r.status == "timed_out" and r.shell_output is not None
    assert r.shell_output[0].outcome.type == "timeout"
    assert r.shell_output[1].stdout == "next\n"
    # killed (a zombie whose parent was killed too counts as gone)
    state = "s=$(cut -d' ' -f3 /proc/$(cat bg.pid)/stat 2>/dev/null)"
    gone = f'{state}; [ -z "$s" ] || [ "$s" = Z ] && echo gone || echo "alive $s"'
    check = await sh(session, gone, "echo ${before}-${after:-unset}")
    assert check.shell_output is not None
    assert [c.stdout for c in check.shell_output] == ["gone\n", "kept-unset\n"]


async def test_shell_output_streams_live_with_its_command_index(session: KernelSession) -> None:
    deltas: list[tuple[Output, int | None]] = []
    await sh(session, "echo one", "echo two >&2", on_output=lambda o, i: deltas.append((o, i)))
    assert deltas == [
        (LogsOutput(stream="stdout", text="one\n"), 0),
        (LogsOutput(stream="stderr", text="two\n"), 1),
    ]


async def test_long_shell_output_is_truncated_per_stream_with_the_full_file(
    session: KernelSession,
) -> None:
    r = await sh(session, "echo START; seq 1 200000; echo END", max_output_length=1000)
    assert r.truncated and r.full_output_file and r.shell_output is not None
    out = r.shell_output[0].stdout
    assert out.startswith("START\n") and out.endswith("200000\nEND\n")
    assert "characters truncated: full output in" in out and len(out) < 1200
    assert r.full_output_file.startswith("/mnt/data/.exec_output/")
    rel = r.full_output_file.removeprefix("/mnt/data/")
    full = (await session.read_file(rel)).decode()
    assert full.startswith("$ echo START") and full.endswith("199999\n200000\nEND\n")


# ----------------------------------------------------------------------------- files
async def test_files_can_be_written_listed_read_and_deleted(session: KernelSession) -> None:
    data = bytes(range(256)) * 10
    stat = await session.write_file("data/nested/blob.bin", data)
    assert (stat.path, stat.bytes) == ("data/nested/blob.bin", len(data))
    await session.write_file(".hidden", b"")
    files, capped = await session.list_files()
    listed = {f.path: f.bytes for f in files}
    assert not capped
    assert listed["data/nested/blob.bin"] == len(data) and listed[".hidden"] == 0
    assert await session.read_file("data/nested/blob.bin") == data
    written_by_code = await py(
        session, "open('data/nested/blob.bin','rb').read() == bytes(range(256))*10"
    )
    assert written_by_code.outputs == [ResultOutput(data={"text/plain": "True"})]
    await session.delete_file("data/nested/blob.bin")
    remaining, _ = await session.list_files()
    assert "data/nested/blob.bin" not in {f.path for f in remaining}


async def test_missing_files_raise_not_found_naming_the_path(session: KernelSession) -> None:
    with pytest.raises(errors.ContainerFileNotFoundError, match=r"nope\.txt"):
        await session.read_file("nope.txt")
    with pytest.raises(errors.ContainerFileNotFoundError, match=r"nope\.txt"):
        await session.delete_file("nope.txt")


@pytest.mark.parametrize("path", ["../escape.txt", "a/../../escape.txt", "/etc/passwd", "a\0b", ""])
async def test_paths_outside_the_workdir_are_rejected(session: KernelSession, path: str) -> None:
    with pytest.raises(errors.InvalidRequestError) as refused:
        await session.write_file(path, b"x")
    assert refused.value.param == "path"
    assert any(
        why in refused.value.message
        for why in ("escape the container directory", "is absolute", "NUL byte", "is empty")
    ), refused.value.message
    with pytest.raises(errors.InvalidRequestError):
        await session.read_file(path)


async def test_a_symlink_leaving_the_workdir_is_rejected_by_the_kernel(
    session: KernelSession,
) -> None:
    await sh(session, "ln -sfn / outside")
    with pytest.raises(errors.InvalidRequestError, match="outside the workdir"):
        await session.read_file("outside/etc/passwd")
    await sh(session, "rm outside")


async def test_the_helper_survives_reset_and_is_reinstalled_if_removed(
    session: KernelSession,
) -> None:
    await sh(session, "export KEEP=me")
    await py(session, "%reset -f")
    r = await sh(session, "echo $KEEP")
    assert r.shell_output is not None and r.shell_output[0].stdout == "me\n"
    for name in ("_jupyter_exec_sessions_kernel", "_jupyter_exec_sessions_kernel_shell"):
        await py(session, f"import sys; del sys.modules[{name!r}]")
        r = await sh(session, "echo again")  # reinstalled on the fly
        assert r.shell_output is not None and r.shell_output[0].stdout == "again\n"


async def test_another_client_of_the_same_manager_does_not_steal_replies(
    km: AsyncKernelManager, session: KernelSession
) -> None:
    other = km.client()  # shares the manager's Session (and so its zmq identity by default)
    other.start_channels()
    try:
        await other.wait_for_ready(timeout=30)
        await other.execute_interactive("0", output_hook=lambda m: None, timeout=30)
        r = await py(session, "'mine'", timeout_s=10)
        assert r.outputs == [ResultOutput(data={"text/plain": "'mine'"})]
    finally:
        other.stop_channels()


# ----------------------------------------------------------------------------- own kernels
async def test_a_prewarmed_kernel_given_a_new_workdir_starts_a_fresh_shell(
    own_km: AsyncKernelManager, tmp_path: Path
) -> None:
    warm = KernelSession(own_km, str(tmp_path / "pool"))
    await warm.start()
    await sh(warm, "export FROM_POOL=1; cd /")
    await warm.close()
    s = KernelSession(own_km, str(tmp_path / "w2"))
    await s.start(wait_setup=False)  # setup pipelined with the first request
    r = await py(s, "import os; os.getcwd()")
    assert r.outputs == [ResultOutput(data={"text/plain": repr(str(tmp_path / "w2"))})]
    r = await sh(s, "pwd; echo ${FROM_POOL:-fresh}")
    assert r.shell_output is not None
    assert r.shell_output[0].stdout == f"{tmp_path / 'w2'}\nfresh\n"
    await s.close()


async def test_arguments_travel_inline_when_the_payload_field_is_not_available(
    own_km: AsyncKernelManager, tmp_path: Path
) -> None:
    s = KernelSession(own_km, str(tmp_path / "w"))
    s._inline = True  # what a proxy that drops unknown content fields forces
    await s.start()
    r = await sh(s, "pwd")
    assert r.shell_output is not None and r.shell_output[0].stdout == f"{tmp_path / 'w'}\n"
    assert (await s.write_file("f.txt", b"ok")).bytes == 2
    assert await s.read_file("f.txt") == b"ok"
    await s.close()


async def test_code_that_ignores_interrupts_times_out_with_the_kernel_lost(
    own_km: AsyncKernelManager, tmp_path: Path
) -> None:
    s = KernelSession(own_km, str(tmp_path / "w"), interrupt_grace_s=1.0)
    await s.start()
    code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass"
    r = await py(s, code, timeout_s=0.5)
    assert r.status == "timed_out" and r.kernel_lost and s.kernel_lost
    assert isinstance(r.outputs[-1], ErrorOutput) and "restarted" in r.outputs[-1].value
    with pytest.raises(errors.KernelError):
        await py(s, "1")
    await s.close()


@pytest.mark.parametrize(
    "code", ["import os; os._exit(1)", "import ctypes; ctypes.string_at(0)"], ids=["exit", "segv"]
)
async def test_kernel_death_is_reported_quickly_as_KernelDiedError(
    own_km: AsyncKernelManager, tmp_path: Path, code: str
) -> None:
    s = KernelSession(own_km, str(tmp_path / "w"))
    await s.start()
    t0 = time.monotonic()
    deltas: list[Output] = []
    r = await py(s, f"print('x', flush=True)\n{code}", timeout_s=100,
                 on_output=lambda o, i: deltas.append(o))  # fmt: skip
    assert time.monotonic() - t0 < 20  # detected by polling, not by the 100 s timeout
    assert r.status == "failed" and r.kernel_lost
    assert text(r.outputs) == text(deltas) and r.outputs[-1] == deltas[-1]
    err = r.outputs[-1]
    assert isinstance(err, ErrorOutput) and err.name == "KernelDiedError"
    assert "files in the working directory are kept" in err.value
    await s.close()
