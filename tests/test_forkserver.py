"""Kernels forked from the template: isolated from each other, launched instead on failure,
and nothing outlives a shutdown or the server."""

from __future__ import annotations

import asyncio
import json
import os
import select
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from helpers import RunningServer
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager

from jupyter_exec_sessions import forkserver

pytestmark = pytest.mark.skipif(
    not forkserver.template_supported(), reason="fork server needs Linux pidfds"
)


def _provisioner(km: AsyncKernelManager) -> forkserver.ForkProvisioner:
    assert isinstance(km.provisioner, forkserver.ForkProvisioner)
    return km.provisioner


def _gone(pid: int, timeout: float = 20.0) -> bool:
    """Whether process ``pid`` exits within ``timeout`` seconds (waits on a pidfd)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return True
    try:
        readable, _, _ = select.select([fd], [], [], timeout)
        return bool(readable)
    finally:
        os.close(fd)


def _execute(server: RunningServer, cid: str, code: str) -> str:
    r = httpx.post(
        f"{server.api_base}/containers/{cid}/executions",
        headers=server.headers,
        json={"type": "python", "code": code},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "completed", body
    return "".join(o.get("text", "") for o in body["outputs"] if o["type"] == "logs")


def _create(server: RunningServer) -> str:
    r = httpx.post(
        f"{server.api_base}/containers", headers=server.headers, json={"name": "f"}, timeout=60
    )
    assert r.status_code == 200, r.text
    return str(r.json()["id"])


PROBE = textwrap.dedent(
    """
    import json, os, random, signal, sys, tempfile
    helper = sys.modules["_jupyter_exec_sessions_kernel"]
    print(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(),
                      "random": [random.random() for _ in range(4)],
                      "urandom": os.urandom(8).hex(), "tmp": tempfile.mkdtemp(),
                      "fds": sorted(int(f) for f in os.listdir("/proc/self/fd")),
                      "sigpipe": int(signal.getsignal(signal.SIGPIPE)),
                      "dh": [str(d) for d in _dh], "inputs": list(In),
                      "history_session": get_ipython().history_manager.session_number,
                      "kernel_is_parent": get_ipython().kernel is get_ipython().parent,
                      "helper_frozen": not any(
                          o is helper.__dict__
                          for o in __import__("gc").get_objects()),
                      "helper_workdir": helper._state["workdir"],
                      "connection": json.loads(
                          __import__("ipykernel").get_connection_info()),
                      "parent": open(f"/proc/{os.getppid()}/cmdline").read()}))
    """
)


def test_two_forked_containers_share_no_python_state_and_draw_different_random_numbers(
    start_server: Any,
) -> None:
    server: RunningServer = start_server(kernel_start="fork", pool_size=0)
    a, b = _create(server), _create(server)
    _execute(server, a, "secret = 41")
    assert _execute(server, b, "print('secret' in globals())").strip() == "False"
    pa, pb = (json.loads(_execute(server, cid, PROBE)) for cid in (a, b))
    # both came from the template process, not from the server
    assert "_template.py" in pa["parent"] and pa["ppid"] == pb["ppid"]
    assert pa["pid"] != pb["pid"]
    assert pa["random"] != pb["random"]
    # the shell both adopted from the template is each kernel's own: history, kernel
    assert not any("secret = 41" in line for line in pb["inputs"])
    assert any("secret = 41" in line for line in pa["inputs"])
    assert len(pa["dh"]) == 1 and len(pb["dh"]) == 1
    assert pa["kernel_is_parent"] and pb["kernel_is_parent"]
    assert pa["urandom"] != pb["urandom"]
    assert pa["tmp"] != pb["tmp"]
    assert pa["cwd"].endswith(a) and pb["cwd"].endswith(b)
    # the in-kernel helper came with the template (not compiled by each kernel); its state
    # is each kernel's own
    assert pa["helper_frozen"] and pb["helper_frozen"]
    assert pa["helper_workdir"] != pb["helper_workdir"]
    # signal dispositions are a fresh Python's (SIGPIPE ignored), not the template's
    assert pa["sigpipe"] == int(signal.SIG_IGN)
    # the template's socket to the server is not inherited by its kernels
    template_args = Path(f"/proc/{pa['ppid']}/cmdline").read_bytes().split(b"\0")
    template_sock = os.readlink(f"/proc/{pa['ppid']}/fd/{int(template_args[2])}")
    for probe in (pa, pb):
        links = {
            os.readlink(f"/proc/{probe['pid']}/fd/{fd}")
            for fd in probe["fds"]
            if os.path.exists(f"/proc/{probe['pid']}/fd/{fd}")
        }
        assert template_sock not in links
    assert "kernels from exec-sessions-fork-python3" in server.log()
    # each listens on its own unix sockets in the server's runtime dir: no TCP port to race for
    runtime = str(server.root_dir.parent / "runtime")
    for probe in (pa, pb):
        assert probe["connection"]["transport"] == "ipc"
        assert probe["connection"]["ip"].startswith(runtime + "/kernel-")
    assert pa["connection"]["ip"] != pb["connection"]["ip"]


def test_deleting_a_forked_container_ends_its_kernel_and_stopping_the_server_ends_the_template(
    start_server: Any,
) -> None:
    server: RunningServer = start_server(kernel_start="fork", pool_size=1)
    cid = _create(server)
    probe = json.loads(_execute(server, cid, PROBE))
    # a process the kernel started belongs to the kernel's process group
    child = int(
        _execute(server, cid, "import subprocess\nprint(subprocess.Popen(['sleep', '300']).pid)")
    )
    r = httpx.delete(f"{server.api_base}/containers/{cid}", headers=server.headers, timeout=60)
    assert r.status_code == 200
    assert _gone(probe["pid"]) and _gone(child)
    template = probe["ppid"]
    server.stop()
    assert _gone(template)


def _write_spec(
    tmp: Path, python: str, extra: list[str] | None = None
) -> tuple[KernelSpecManager, str]:
    ksm = KernelSpecManager()
    spec_dir = tmp / "kernels" / "k"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [
                    python,
                    "-m",
                    "ipykernel_launcher",
                    "-f",
                    "{connection_file}",
                    *(extra or []),
                ],
                "display_name": "k",
                "language": "python",
            }
        )
    )
    ksm.kernel_dirs = [str(tmp / "kernels")]
    return ksm, forkserver.write_kernelspec(ksm, "k", tmp / "forked")


async def _started(ksm: KernelSpecManager, name: str, cwd: Path) -> AsyncIterator[Any]:
    km = AsyncKernelManager(kernel_name=name, kernel_spec_manager=ksm)
    await km.start_kernel(cwd=str(cwd))
    try:
        kc = km.client()
        kc.start_channels()
        try:
            await kc.wait_for_ready(timeout=60)
            reply = await kc.execute_interactive("import os; x = os.getpid()", timeout=30)
            assert reply["content"]["status"] == "ok"
        finally:
            kc.stop_channels()
        yield km
    finally:
        await km.shutdown_kernel(now=True)


def test_a_template_that_cannot_start_falls_back_to_a_launched_kernel(tmp_path: Path) -> None:
    # an interpreter wrapper that refuses to run the template but runs kernels
    wrapper = tmp_path / "python"
    wrapper.write_text(
        f'#!/bin/sh\ncase "$1" in *_template.py) exit 3;; esac\nexec {sys.executable} "$@"\n'
    )
    wrapper.chmod(0o755)
    ksm, name = _write_spec(tmp_path, str(wrapper))

    async def run() -> tuple[bool, int]:
        async for km in _started(ksm, name, tmp_path):
            return _provisioner(km).forked, int(_provisioner(km).pid or 0)
        raise AssertionError("no kernel")

    forked, pid = asyncio.run(run())
    assert forked is False
    assert _gone(pid)


def test_a_killed_template_is_replaced_by_launches_and_its_kernels_die_with_it(
    tmp_path: Path,
) -> None:
    ksm, name = _write_spec(tmp_path, sys.executable)

    async def run() -> None:
        km = AsyncKernelManager(kernel_name=name, kernel_spec_manager=ksm)
        await km.start_kernel(cwd=str(tmp_path))
        try:
            assert _provisioner(km).forked is True
            server = forkserver.fork_server(sys.executable)
            template = server.template_pid
            assert template is not None
            os.kill(template, signal.SIGKILL)
            assert _gone(template)
            assert _gone(int(_provisioner(km).pid or 0))  # the forked kernel died with its template
            async for km2 in _started(ksm, name, tmp_path):
                assert _provisioner(km2).forked is False
        finally:
            await km.shutdown_kernel(now=True)
            forkserver.close_all()

    asyncio.run(run())


def test_a_crashed_server_takes_the_template_and_its_kernels_with_it(tmp_path: Path) -> None:
    # a stand-in server process: forks one kernel, reports pids, then is SIGKILLed
    script = tmp_path / "srv.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import asyncio, json, sys, tempfile
            from jupyter_client.connect import write_connection_file
            from jupyter_exec_sessions import forkserver

            async def main():
                conn, _ = write_connection_file(tempfile.mktemp(suffix=".json"))
                server = forkserver.fork_server({sys.executable!r})
                proc = await server.fork(["-f", conn], {str(tmp_path)!r}, {{}})
                print(json.dumps([server.template_pid, proc.pid]), flush=True)
                await asyncio.sleep(300)

            asyncio.run(main())
            """
        )
    )
    srv = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE)
    try:
        assert srv.stdout is not None
        template, kernel = json.loads(srv.stdout.readline())
    finally:
        srv.kill()
        srv.wait(timeout=20)
    assert _gone(template)
    assert _gone(kernel)


def test_a_kernel_whose_command_line_sets_shell_options_builds_its_own_shell_with_them(
    tmp_path: Path,
) -> None:
    ksm, name = _write_spec(tmp_path, sys.executable, ["--InteractiveShell.colors=nocolor"])

    async def run() -> str:
        async for km in _started(ksm, name, tmp_path):
            assert _provisioner(km).forked is True
            kc = km.client()
            kc.start_channels()
            try:
                await kc.wait_for_ready(timeout=60)
                out: list[str] = []

                def hook(msg: dict[str, Any], out: list[str] = out) -> None:
                    out.append(msg["content"].get("text", ""))

                reply = await kc.execute_interactive(
                    "print(get_ipython().colors, list(In))", timeout=30, output_hook=hook
                )
                assert reply["content"]["status"] == "ok"
                return "".join(out)
            finally:
                kc.stop_channels()
        raise AssertionError("no kernel")

    try:
        text = asyncio.run(run())
    finally:
        forkserver.close_all()
    assert text.startswith("nocolor")
    assert "import os; x = os.getpid()" in text  # its history is its own


def test_a_forked_kernel_that_cannot_initialise_is_reported_failed_not_ready(
    tmp_path: Path,
) -> None:
    broken = tmp_path / "kernel.json"
    broken.write_text("{not json")

    async def run() -> None:
        server = forkserver.fork_server(sys.executable)
        process = await server.fork(["-f", str(broken)], str(tmp_path), dict(os.environ))
        with pytest.raises(RuntimeError, match="forked kernel"):
            await server.wait_ready(process, timeout=60)
        assert _gone(process.pid)

    try:
        asyncio.run(run())
    finally:
        forkserver.close_all()
