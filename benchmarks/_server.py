"""Shared helpers for the benchmarks: a real server subprocess, raw kernels, stats, output.

Not a benchmark itself. Each ``bench_*.py`` imports it (``python benchmarks/bench_x.py`` puts
this directory first on ``sys.path``). Servers are started by the test suite's launcher
(``tests/helpers.py``, ``launch``): ``python -m jupyter_server`` on loopback with a random token,
the extension enabled, every ``ExecSessionsApp`` trait passed on the command line, and private
Jupyter dirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx2 as httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from helpers import RunningServer, launch, sse_events  # noqa: E402 - the tests' launcher


# ---------------------------------------------------------------------------- stats / output
def pct(samples: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) with linear interpolation; NaN when empty."""
    if not samples:
        return math.nan
    s = sorted(samples)
    pos = (len(s) - 1) * q
    lo, hi = math.floor(pos), math.ceil(pos)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def load() -> str:
    """The 1-minute load average: other work on the machine skews every figure."""
    return f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


def header(title: str) -> None:
    print(f"\n=== {title}")
    print(
        f"    {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores,"
        f" Python {platform.python_version()}, {platform.machine()}, {load()}"
    )


def row_header() -> None:
    print(
        f"{'measurement':<44}{'n':>5} {'ours p50':>9} {'p90':>8} {'base p50':>9} {'p90':>8}"
        f" {'ratio':>7}  goal"
    )


def compare(
    name: str,
    ours: list[float],
    base: list[float],
    *,
    goal: str = "",
    higher_is_better: bool = False,
) -> float:
    """Print one line: our p50/p90 (ms), the baseline's, and the p50 ratio ours/base."""
    o50, o90, b50, b90 = pct(ours, 0.5), pct(ours, 0.9), pct(base, 0.5), pct(base, 0.9)
    ratio = o50 / b50 if b50 else math.nan
    n = min(len(ours), len(base)) if base else len(ours)
    print(
        f"{name:<44}{n:>5} {o50:>9.2f} {o90:>8.2f} {b50:>9.2f} {b90:>8.2f} {ratio:>6.2f}x  {goal}"
    )
    return ratio


def single(name: str, ours: list[float], *, goal: str = "") -> float:
    """Print one line without a baseline."""
    o50, o90 = pct(ours, 0.5), pct(ours, 0.9)
    print(f"{name:<44}{len(ours):>5} {o50:>9.2f} {o90:>8.2f} {'':>9} {'':>8} {'':>7}  {goal}")
    return o50


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


# ---------------------------------------------------------------------------- server
#: The server type and launcher of the tests (``tests/helpers.py``): one launcher for both.
Server = RunningServer


def _on_sigterm(*_: Any) -> None:
    print("SIGTERM: stopping the server and its kernels", file=sys.stderr)
    sys.exit(143)


@contextlib.contextmanager
def running_server(
    *,
    ready_timeout: float = 90,
    extra_args: list[str] | None = None,
    extensions: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    **traits: Any,
) -> Iterator[Server]:
    """Start a server (``ExecSessionsApp`` traits as keywords), yield it, stop it, clean up.

    The test suite's ``helpers.launch`` starts it; ``extensions``: more server extension
    modules to enable (e.g. a profiling probe).
    """
    if threading.current_thread() is threading.main_thread():
        # `kill <pid>` unwinds (and so stops the server and its kernels) like Ctrl-C does
        signal.signal(signal.SIGTERM, _on_sigterm)
    tmp = Path(tempfile.mkdtemp(prefix="exec-sessions-bench-"))
    srv: Server | None = None
    try:
        srv = launch(
            tmp,
            extensions=extensions,
            extra_args=extra_args,
            env=env,
            ready_timeout=ready_timeout,
            **traits,
        )
        yield srv
    except BaseException:
        if srv is not None and srv.proc.poll() is None:
            print(f"--- server log tail ({srv.log_path}):\n{srv.log_tail(30)}", file=sys.stderr)
        raise
    finally:
        if srv is not None:
            srv.stop(signal.SIGINT)
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------- containers API
def create_container(c: httpx.Client, name: str = "bench") -> dict[str, Any]:
    r = c.post("exec-sessions/v1/containers", json={"name": name})
    if r.status_code != 200:
        raise RuntimeError(f"create failed: {r.status_code} {r.text}")
    return dict(r.json())


def delete_container(c: httpx.Client, cid: str) -> None:
    r = c.delete(f"exec-sessions/v1/containers/{cid}")
    if r.status_code != 200:
        raise RuntimeError(f"delete failed: {r.status_code} {r.text}")


def execute(c: httpx.Client, cid: str, code: str) -> dict[str, Any]:
    r = c.post(
        f"exec-sessions/v1/containers/{cid}/executions", json={"type": "python", "code": code}
    )
    if r.status_code != 200:
        raise RuntimeError(f"execution failed: {r.status_code} {r.text}")
    return dict(r.json())


def result_text(execution: dict[str, Any]) -> str | None:
    for out in execution.get("outputs", []):
        if out.get("type") == "result":
            return str(out["data"].get("text/plain"))
    return None


def check_two(execution: dict[str, Any]) -> None:
    if execution.get("status") != "completed" or result_text(execution) != "2":
        raise RuntimeError(f"unexpected execution: {execution}")


def kernels(c: httpx.Client) -> list[dict[str, Any]]:
    """``GET /api/kernels``, retried while it answers 500.

    jupyter_server 2.21 answers 500 while a kernel is half-started (its ``last_activity`` is
    still None), which happens whenever the pool refills.
    """
    for _ in range(500):
        r = c.get("api/kernels")
        if r.status_code < 500:
            r.raise_for_status()
            return list(r.json())
        time.sleep(0.01)
    r.raise_for_status()
    return []


def _process_table() -> dict[int, tuple[int, int]]:
    """Every live process: pid -> (parent pid, utime+stime in clock ticks), from /proc."""
    table: dict[int, tuple[int, int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        # after "(comm)": state ppid ... utime is field 14, stime 15 (1-based, whole line)
        table[int(stat.parent.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    return table


def children_cpu_ticks(pid: int) -> dict[int, int]:
    """utime+stime (clock ticks) of every direct child process of ``pid`` (Linux /proc)."""
    return {child: t for child, (ppid, t) in _process_table().items() if ppid == pid}


def descendants_cpu_ms(pid: int, exclude: tuple[int, ...] = ()) -> float:
    """CPU time used so far by the live descendants of ``pid`` (kernels forked from a
    template are its grandchildren), in ms; the subtrees of ``exclude`` are left out."""
    table = _process_table()
    total = 0
    for child, (p, t) in table.items():
        while p not in (0, 1, pid) and p not in exclude:
            p = table.get(p, (0, 0))[0]
        if p == pid and child not in exclude:
            total += t
    return total * 1000 / os.sysconf("SC_CLK_TCK")


def cpu_ms(pid: int) -> float:
    """CPU time (user + system) used so far by process ``pid``, in ms."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def children_cpu_ms(pid: int, exclude: tuple[int, ...] = ()) -> float:
    """CPU time used so far by the live direct children of ``pid`` (kernels), in ms."""
    ticks = children_cpu_ticks(pid)
    return sum(v for k, v in ticks.items() if k not in exclude) * 1000 / os.sysconf("SC_CLK_TCK")


def memory_mib(pid: int) -> tuple[float, float]:
    """(RSS, PSS) of process ``pid`` in MiB, from /proc/<pid>/smaps_rollup (0 if unreadable)."""
    values = {"Rss:": 0.0, "Pss:": 0.0}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, *rest = line.split()
            if key in values:
                values[key] = int(rest[0]) / 1024
    return values["Rss:"], values["Pss:"]


def wait_pool_full(
    srv: Server,
    c: httpx.Client,
    pool_size: int,
    container_kernels: set[str],
    *,
    quiet_s: float = 0.15,
    timeout: float = 180,
    at_least: bool = False,
) -> None:
    """Wait until the warm pool is full and settled; a polled state check, not a blind sleep.

    Pool kernels are ordinary kernels of the server's kernel manager that belong to no
    container (``GET /api/kernels``). Settled means: exactly ``pool_size`` of them, every
    container kernel present and every deleted container's kernel gone, and no kernel process
    of the server used any CPU for ``quiet_s`` (a kernel still booting or running its setup
    burns CPU; jupyter_server's ``execution_state`` cannot tell, as it may stay ``starting``).
    Each sample's ``container.created`` event then confirms ``from_pool`` (see callers).
    ``at_least``: a pool that grew past ``pool_size`` (it follows demand) also counts as full.
    """
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    while True:
        ks = kernels(c)
        ids = {k["id"] for k in ks}
        pool = [k for k in ks if k["id"] not in container_kernels]
        before = children_cpu_ticks(srv.proc.pid)
        time.sleep(quiet_s)
        quiet = children_cpu_ticks(srv.proc.pid) == before
        full = len(pool) >= pool_size if at_least else len(pool) == pool_size
        if full and container_kernels <= ids and quiet:
            return
        now = time.monotonic()
        if len(pool) < pool_size and quiet:
            # Nothing is starting, yet the pool is short: the refill is not running.
            quiet_since = quiet_since or now
            if now - quiet_since > 10:
                raise RuntimeError(
                    f"the pool stays at {len(pool)} < pool_size={pool_size} kernels with no"
                    " kernel starting: the refill loop is stuck (see benchmarks/README.md,"
                    " 'pool refill race')"
                )
        else:
            quiet_since = None
        if now > deadline:
            raise TimeoutError(f"pool did not settle: {ks}\n{srv.log_tail(20)}")


def wait_kernel_gone(c: httpx.Client, kernel_id: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while kernel_id in {k["id"] for k in kernels(c)}:
        if time.monotonic() > deadline:
            raise TimeoutError(f"kernel {kernel_id} was not shut down")
        time.sleep(0.02)


def last_event_seq(c: httpx.Client) -> int:
    """The newest event seq visible to us (reads the feed's backlog until it goes quiet)."""
    seq = 0
    for ev in read_events(c, after=0, until=lambda evs: False, quiet=0.3):
        seq = max(seq, int(ev["seq"]))
    return seq


def read_events(
    c: httpx.Client,
    *,
    after: int,
    until: Callable[[list[dict[str, Any]]], bool],
    quiet: float = 5.0,
) -> list[dict[str, Any]]:
    """Events after ``after`` until ``until(events)`` or ``quiet`` seconds of silence."""
    events: list[dict[str, Any]] = []
    timeout = httpx.Timeout(30, read=quiet)
    with (
        contextlib.suppress(httpx.ReadTimeout),
        c.stream(
            "GET", "exec-sessions/v1/events", headers={"Last-Event-ID": str(after)}, timeout=timeout
        ) as r,
    ):
        r.raise_for_status()
        for sse in sse_events(r.iter_lines()):
            events.append(json.loads(sse.data))
            if until(events):
                break
    return events


def iter_sse(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(event type, JSON data) pairs from server-sent-event lines (the package's decoder)."""
    for sse in sse_events(lines):
        yield sse.event, json.loads(sse.data)


# ---------------------------------------------------------------------------- raw kernels
class RawKernel:
    """A kernel started by ``jupyter_client.manager.AsyncKernelManager`` in this process."""

    def __init__(self, cwd: Path) -> None:
        from jupyter_client.manager import AsyncKernelManager

        self.cwd = cwd
        self.km = AsyncKernelManager(kernel_name="python3")
        self.kc: Any = None

    async def start(self) -> None:
        self.cwd.mkdir(parents=True, exist_ok=True)
        await self.km.start_kernel(cwd=str(self.cwd), stderr=subprocess.DEVNULL)
        self.kc = self.km.client()
        self.kc.start_channels()
        await self.kc.wait_for_ready(timeout=60)

    async def run(self, code: str, hook: Callable[[dict[str, Any]], None] | None = None) -> Any:
        """``execute_interactive`` (output to ``hook``); returns the execute_result text/plain."""
        result: list[Any] = []

        def output_hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "execute_result":
                result.append(msg["content"]["data"].get("text/plain"))
            if hook is not None:
                hook(msg)

        reply = await self.kc.execute_interactive(code, output_hook=output_hook, timeout=60)
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"raw execution failed: {reply['content']}")
        return result[0] if result else None

    async def stop(self) -> None:
        if self.kc is not None:
            self.kc.stop_channels()
        with contextlib.suppress(Exception):
            await self.km.shutdown_kernel(now=True)


# ---------------------------------------------------------------------------- kernel websocket
class KernelWebsocket:
    """jupyter_server's kernel websocket (``/api/kernels/{id}/channels``), JSON protocol."""

    def __init__(self, srv: Server, kernel_id: str) -> None:
        self.srv = srv
        self.kernel_id = kernel_id
        self.session = uuid.uuid4().hex
        self.conn: Any = None

    async def connect(self) -> None:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        url = f"{self.srv.ws_url}api/kernels/{self.kernel_id}/channels?session_id={self.session}"
        self.conn = await websocket_connect(HTTPRequest(url, headers=self.srv.headers))
        # Our side never waits on Nagle; the server side is jupyter_server's own choice.
        self.conn.protocol.stream.set_nodelay(True)

    def send(self, msg_type: str, content: dict[str, Any], channel: str = "shell") -> str:
        msg_id = uuid.uuid4().hex
        msg = {
            "header": {
                "msg_id": msg_id,
                "msg_type": msg_type,
                "username": "bench",
                "session": self.session,
                "date": datetime.now(timezone.utc).isoformat(),
                "version": "5.3",
            },
            "parent_header": {},
            "metadata": {},
            "content": content,
            "channel": channel,
            "buffers": [],
        }
        self.conn.write_message(json.dumps(msg))
        return msg_id

    async def wait_for(self, parent: str, msg_type: str, timeout: float = 60) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no {msg_type} for {parent}")
            raw = await asyncio.wait_for(self.conn.read_message(), remaining)
            if raw is None:
                raise RuntimeError("kernel websocket closed")
            msg = json.loads(raw)
            if msg.get("parent_header", {}).get("msg_id") == parent and (
                msg["header"]["msg_type"] == msg_type
            ):
                return dict(msg)

    async def kernel_info(self) -> dict[str, Any]:
        return await self.wait_for(self.send("kernel_info_request", {}), "kernel_info_reply")

    async def execute(self, code: str) -> dict[str, Any]:
        content = {"code": code, "silent": False, "store_history": True, "allow_stdin": False}
        return await self.wait_for(self.send("execute_request", content), "execute_result")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


async def mcp_first_call(srv: Server) -> float:
    """Open a new MCP session, call ``execute_python_code("1+1")``: ms to the first result."""
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    t0 = time.perf_counter()
    async with (
        httpx.AsyncClient(headers=srv.headers, timeout=600) as http,
        Client(streamable_http_client(f"{srv.url}exec-sessions/mcp", http_client=http)) as mcp,
    ):
        result = await mcp.call_tool("execute_python_code", {"code": "1+1"})
        elapsed = (time.perf_counter() - t0) * 1000
        text = " ".join(getattr(c, "text", "") for c in result.content)
        if result.is_error or "2" not in text:
            raise RuntimeError(f"unexpected result: {text[:200]}")
    return elapsed
