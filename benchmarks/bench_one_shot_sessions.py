"""Kernels and memory a server holds after many one-shot MCP sessions.

One-shot MCP clients (MCP Inspector's CLI, agent runs, CI jobs) open a session, make a call or
two and close it. This starts a server (``pool_size=2`` and a container quota of 200 so that
nothing is refused), runs ``--sessions`` such sessions (``--concurrency`` at a time) with the
official ``mcp`` client over streamable HTTP, each making ``--calls`` calls without naming a
container, closes them, waits up to ``--settle`` seconds for the count of kernels to stop
changing, and prints the kernels jupyter_server still runs and their memory (RSS and PSS summed
over the server's child processes, from /proc/<pid>/smaps_rollup).

The baseline is the same script against an older checkout (``PYTHONPATH=<checkout>``), where
every session's container outlived its session for ``default_expires_minutes``.

Run: ``python benchmarks/bench_one_shot_sessions.py [--sessions 100] [--concurrency 8]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path

import _server as b
import httpx2 as httpx
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (the server's kernels)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def held(srv: b.Server) -> tuple[int, int, float, float]:
    """(kernels per /api/kernels, child processes, RSS MiB, PSS MiB of the children)."""
    with srv.client() as c:
        count = len(b.kernels(c))
    pids = child_pids(srv.proc.pid)
    rss = pss = 0.0
    for pid in pids:
        r, p = b.memory_mib(pid)
        rss += r
        pss += p
    return count, len(pids), rss, pss


async def one_session(srv: b.Server, calls: int, errors: list[str]) -> None:
    async with (
        httpx.AsyncClient(headers=srv.headers, timeout=120) as http,
        Client(streamable_http_client(f"{srv.url}exec-sessions/mcp", http_client=http)) as mcp,
    ):
        for i in range(calls):
            result = await mcp.call_tool(
                "execute_python_code", {"code": f"data = list(range(10_000))\nlen(data) + {i}"}
            )
            if result.is_error:
                errors.append(str(result.content))


async def run_sessions(srv: b.Server, n: int, concurrency: int, calls: int) -> list[str]:
    errors: list[str] = []
    gate = asyncio.Semaphore(concurrency)

    async def gated() -> None:
        async with gate:
            await one_session(srv, calls, errors)

    await asyncio.gather(*(gated() for _ in range(n)))
    return errors


def settle(srv: b.Server, timeout: float) -> None:
    """Wait until the kernel count has not changed for 3 s (or ``timeout`` passes)."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        with srv.client() as c:
            count = len(b.kernels(c))
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= 3:
            return
        time.sleep(0.5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--calls", type=int, default=2)
    parser.add_argument("--settle", type=float, default=30.0)
    args = parser.parse_args()
    b.header(f"{args.sessions} one-shot MCP sessions, {args.calls} calls each")
    with b.running_server(pool_size=2, max_containers_per_user=200, max_containers=200) as srv:
        with srv.client() as c:
            b.wait_pool_full(srv, c, 2, set())
        before = held(srv)
        t0 = time.perf_counter()
        errors = asyncio.run(run_sessions(srv, args.sessions, args.concurrency, args.calls))
        elapsed = time.perf_counter() - t0
        settle(srv, args.settle)
        after = held(srv)
    print(f"sessions run: {args.sessions} in {elapsed:.1f} s, tool errors: {len(errors)}")
    print(f"{'':29}{'kernels':>8}{'processes':>10}{'RSS MiB':>10}{'PSS MiB':>10}")
    for name, (k, p, rss, pss) in (
        ("idle server (pool only)", before),
        ("after the sessions", after),
    ):
        print(f"{name:<29}{k:>8}{p:>10}{rss:>10.0f}{pss:>10.0f}")
    if errors:
        print("first error:", errors[0][:300])


if __name__ == "__main__":
    main()
