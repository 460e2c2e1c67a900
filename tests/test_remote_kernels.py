"""Remote kernels on a real Jupyter Enterprise Gateway: nothing leaks, nothing is local.

The feature tests (executions, shell, files, timeouts, interrupts, kernel death, delete) run
against the gateway through ``@pytest.mark.kernels("local", "gateway")`` in their own modules.
Here: the gateway session hook with MCP tool calls on remote kernels, and what only remote
kernels have. Tests that count the gateway's kernels get their
own gateway (``own_gateway``), so that its ``/api/kernels`` shows exactly this test's kernels.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from helpers import EnterpriseGateway, RunningServer, launch_enterprise_gateway

from jupyter_exec_sessions.hook import (
    ContainersAPIBackend,
    MCPClientPool,
    MCPServerConfig,
    RequestToolContext,
    SessionResolver,
)
from jupyter_exec_sessions.mcp_server import RESULT_META_EXECUTION
from jupyter_exec_sessions.models import Execution

pytestmark = pytest.mark.kernels("gateway")


@pytest.fixture(scope="module")
def own_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EnterpriseGateway]:
    """A gateway for the tests that count its kernels (each ends with none left)."""
    eg = launch_enterprise_gateway(tmp_path_factory.mktemp("own-eg"))
    yield eg
    eg.stop()


def wait_for(what: str, check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(0.1)


def new_container(srv: RunningServer, **body: Any) -> dict[str, Any]:
    r = httpx.post(
        f"{srv.api_base}/containers",
        headers=srv.headers,
        json={"name": "remote", **body},
        timeout=60,  # an empty pool means a cold kernel start on the gateway
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def run(srv: RunningServer, cid: str, code: str) -> dict[str, Any]:
    r = httpx.post(
        f"{srv.api_base}/containers/{cid}/executions",
        headers=srv.headers,
        json={"code": code},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def local_container_dirs(srv: RunningServer) -> list[str]:
    local = srv.data_dir / "containers"
    return sorted(p.name for p in local.iterdir()) if local.exists() else []


@pytest.mark.timeout(300)  # several servers and kernel starts
def test_no_kernel_is_left_on_the_gateway_after_delete_expiry_and_shutdown(
    own_gateway: EnterpriseGateway, start_server: Callable[..., RunningServer]
) -> None:
    srv = start_server(gateway=own_gateway, pool_size=1, minute_seconds=0.5, reaper_interval=0.2)
    deleted = new_container(srv, expires_after={"anchor": "last_active_at", "minutes": 600})
    assert run(srv, deleted["id"], "x = 1")["status"] == "completed"
    deleted_kernel = deleted["exec_sessions"]["kernel_id"]
    assert deleted_kernel in own_gateway.kernel_ids()
    # the container's directory exists on the kernels' side only
    assert (srv.containers_root / deleted["id"]).is_dir()
    assert local_container_dirs(srv) == []
    httpx.delete(f"{srv.api_base}/containers/{deleted['id']}", headers=srv.headers)
    wait_for(
        "the deleted container's kernel and directory to go",
        lambda: (
            deleted_kernel not in own_gateway.kernel_ids()
            and not (srv.containers_root / deleted["id"]).exists()
        ),
        timeout=60,
    )

    # idle for 12 "minutes" of 0.5 s: expires 6 s after its creation
    expiring = new_container(srv, expires_after={"anchor": "last_active_at", "minutes": 12})
    expiring_kernel = expiring["exec_sessions"]["kernel_id"]
    assert expiring_kernel in own_gateway.kernel_ids()
    wait_for(
        "the expired container's kernel to go",
        lambda: expiring_kernel not in own_gateway.kernel_ids(),
        timeout=60,
    )
    info = httpx.get(f"{srv.api_base}/containers/{expiring['id']}", headers=srv.headers).json()
    assert info["status"] == "expired"

    assert own_gateway.kernel_ids()  # the warm pool's kernel
    srv.stop()
    assert srv.proc.returncode == 0
    assert own_gateway.kernel_ids() == set()


@pytest.mark.timeout(300)  # several servers and kernel starts
def test_a_restart_after_a_crash_shuts_down_the_remote_kernels_it_left_and_says_state_reset(
    own_gateway: EnterpriseGateway, start_server: Callable[..., RunningServer]
) -> None:
    # a pool that never grows: exactly the container's kernel and one pool kernel are left
    first = start_server(gateway=own_gateway, pool_size=1, pool_max_size=1)
    c = new_container(first)
    run(first, c["id"], "x = 1\nopen('kept.txt', 'w').write('files stay')")
    # the container's kernel + the pool's refill (started a moment after the create)
    wait_for("the pool to refill", lambda: len(own_gateway.kernel_ids()) == 2)
    left = own_gateway.kernel_ids()
    assert c["exec_sessions"]["kernel_id"] in left
    orphan_dir = first.containers_root / ("cntr_" + "0" * 32)  # as a crashed pool leaves one
    orphan_dir.mkdir()
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    assert own_gateway.kernel_ids() == left  # the crash left them running

    second = start_server(
        gateway=own_gateway,
        pool_size=1,
        pool_max_size=1,
        data_dir=first.data_dir,
        token=first.token,
        remote_workdir_root=first.config["remote_workdir_root"],
    )
    wait_for(
        "the crashed run's kernels to go", lambda: not own_gateway.kernel_ids() & left, timeout=90
    )
    nxt = run(second, c["id"], "print(open('kept.txt').read()); 'x' in globals()")
    assert nxt["state_reset"] is True
    assert nxt["outputs"][0]["text"] == "files stay\n"
    assert nxt["outputs"][-1]["data"]["text/plain"] == "False"
    wait_for("the orphaned directory to be swept", lambda: not orphan_dir.exists())
    second.stop()
    assert own_gateway.kernel_ids() == set()


@pytest.mark.timeout(300)
def test_a_server_whose_gateway_is_gone_still_stops_cleanly(
    tmp_path: Path, start_server: Callable[..., RunningServer]
) -> None:
    eg = launch_enterprise_gateway(tmp_path / "eg")
    try:
        srv = start_server(gateway=eg, pool_size=1, pool_max_size=1)
        c = new_container(srv)
        assert run(srv, c["id"], "1 + 1")["status"] == "completed"
    finally:
        eg.stop()  # the gateway (and its kernels) go first: it now refuses connections
    assert eg.proc.poll() is not None
    srv.stop()  # SIGTERM; a server still running after 20 s is killed (-9)
    assert srv.proc.returncode == 0, srv.log()[-3000:]
    assert "could not shut down the gateway's kernels" in srv.log()


def test_a_kernel_killed_under_the_gateway_fails_fast_and_the_next_run_says_state_reset(
    server: RunningServer,
) -> None:
    srv, eg = server, server.gateway
    assert eg is not None
    c = new_container(srv)
    run(srv, c["id"], "doomed = 1")
    died = run(srv, c["id"], "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    assert died["status"] == "failed"
    assert died["outputs"][-1]["name"] == "KernelDiedError"
    # idle, and killed from outside: the gateway restarts it; the next run must say so
    run(srv, c["id"], "again = 1")
    pid = run(srv, c["id"], "import os; os.getpid()")["outputs"][-1]["data"]["text/plain"]
    info = httpx.get(f"{srv.api_base}/containers/{c['id']}", headers=srv.headers).json()
    kernel_id = info["exec_sessions"]["kernel_id"]
    os.kill(int(pid), signal.SIGKILL)
    restarted = f"kernel {kernel_id} restarted"  # what the gateway logs as it tells us
    wait_for("the gateway to restart the kernel", lambda: restarted in eg.log())
    nxt = run(srv, c["id"], "'again' in globals()")
    if nxt["status"] == "failed":  # the gateway's news arrived while this one was on its way
        assert nxt["outputs"][-1]["name"] == "KernelDiedError"
        nxt = run(srv, c["id"], "'again' in globals()")
    assert nxt["state_reset"] is True
    assert nxt["outputs"][-1]["data"]["text/plain"] == "False"


async def test_the_session_hook_and_mcp_tool_calls_keep_state_on_remote_kernels(
    server: RunningServer,
) -> None:
    auto = {"type": "code_interpreter", "container": {"type": "auto"}}
    mcp = MCPServerConfig(url=server.mcp_url, token=server.token, call_timeout=60)
    backend = ContainersAPIBackend(server.api_base, server.token)
    pool = MCPClientPool()
    try:
        resolver = SessionResolver(backend)
        first = RequestToolContext(resolver, [], tools=[auto], session_id="s-eg", turn_id="1")
        res1 = await first.resolve("code_interpreter")
        assert res1.origin == "created"
        await pool.call_tool(
            mcp, "execute_python_code", {"code": "x = 41"}, meta=await first.meta(auto)
        )
        history = [{"type": "code_interpreter_call", "id": "ci_1", "container_id": res1.id}]
        second = RequestToolContext(resolver, history, tools=[auto], turn_id="2")
        res2 = await second.resolve("code_interpreter")
        assert (res2.id, res2.origin, res2.state_lost) == (res1.id, "history", False)
        out = await pool.call_tool(
            mcp, "execute_python_code", {"code": "print(x + 1)"}, meta=await second.meta(auto)
        )
        assert not out.is_error, out.content
        assert out.meta is not None, out.content
        execution = Execution.model_validate(out.meta[RESULT_META_EXECUTION])
        assert "".join(o.text for o in execution.outputs if o.type == "logs").strip() == "42"
    finally:
        await pool.aclose()
        await backend.aclose()
