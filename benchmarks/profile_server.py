"""Profile the server process under one benchmark workload with py-spy; print where time goes.

Starts its own server, runs the workload for ``--seconds``, samples the server process with
``py-spy record --format raw`` (``pip install py-spy``; needs ptrace rights, e.g. root), and
prints the functions with the most samples (inclusive and leaf) and the server CPU per request.

Workloads: ``exec`` (REST ``1+1`` loop on one container), ``mcp`` (MCP ``execute_python_code``
``1+1`` loop over streamable HTTP with the official client, in its session's container),
``create`` (create → ``1+1`` → delete, pool settled before each), ``burst`` (64 new MCP
sessions at once, each calling ``1+1`` once, on the default pool; repeated), ``stream``
(streamed cell printing every 20 ms), ``throughput`` (8 concurrent loops on 8 containers).
``--idle-containers N`` creates N idle containers first. Prints the server's CPU per request
(/proc).

With ``--probe`` it does not sample: it loads ``_probe.py`` (a server extension that wraps the
handler, service, engine, pool, event bus and SQLite store methods with wall-clock timers) and
prints how many ms each layer takes per request.

Run: ``python benchmarks/profile_server.py --workload exec [--seconds 10] [--idle | --probe]
[--idle-containers 20]``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _server as b
import httpx2 as httpx


def _print_cpu(srv: b.Server, cpu0: float, n: int) -> None:
    cpu = (b.cpu_ms(srv.proc.pid) - cpu0) / max(n, 1)
    print(f"server CPU per request: {cpu:.2f} ms (/proc, {n} requests; {b.load()})")


def _mcp_loop(srv: b.Server, seconds: float) -> int:
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async def run() -> int:
        async with (
            httpx.AsyncClient(headers=srv.headers, timeout=60) as http,
            Client(streamable_http_client(f"{srv.url}exec-sessions/mcp", http_client=http)) as mc,
        ):

            async def call() -> None:
                result = await mc.call_tool("execute_python_code", {"code": "1+1"})
                assert not result.is_error, result

            for _ in range(10):
                await call()
            async with httpx.AsyncClient(base_url=srv.url, headers=srv.headers) as ac:
                await ac.delete("bench-probe")  # reset the probe's timers, if loaded
            end = time.monotonic() + seconds
            n = 0
            lat: list[float] = []
            cpu0 = b.cpu_ms(srv.proc.pid)
            while time.monotonic() < end:
                t0 = time.perf_counter()
                await call()
                lat.append((time.perf_counter() - t0) * 1000)
                n += 1
            _print_cpu(srv, cpu0, n)
            print(f"client-side MCP 1+1: p50 {b.pct(lat, 0.5):.3f} ms, p90 {b.pct(lat, 0.9):.3f}")
            return n

    return asyncio.run(run())


def _burst_loop(srv: b.Server, c: httpx.Client, seconds: float, mine: set[str]) -> int:
    """Bursts of 64 new MCP sessions (first call each) until ``seconds`` are spent."""
    end = time.monotonic() + seconds
    n = 0
    cpu0 = b.cpu_ms(srv.proc.pid)

    async def burst() -> None:
        await asyncio.gather(*(b.mcp_first_call(srv) for _ in range(64)))

    while time.monotonic() < end:
        asyncio.run(burst())
        n += 64
    _print_cpu(srv, cpu0, n)
    return n


def _workload(name: str, srv: b.Server, c: httpx.Client, seconds: float, idle: int = 0) -> int:
    """Run the workload for ``seconds``; the number of requests done."""
    b.wait_pool_full(srv, c, 2, set(), at_least=True)
    con = b.create_container(c, "profile")
    mine = {con["exec_sessions"]["kernel_id"]}
    for i in range(idle):
        b.wait_pool_full(srv, c, 2, mine, at_least=True)
        other = b.create_container(c, f"idle-{i}")
        mine.add(other["exec_sessions"]["kernel_id"])
    b.wait_pool_full(srv, c, 2, mine, at_least=True)
    if name == "mcp":
        return _mcp_loop(srv, seconds)
    if name == "burst":
        return _burst_loop(srv, c, seconds, mine)
    for _ in range(10):
        b.execute(c, con["id"], "1+1")
    c.delete("bench-probe")  # reset the probe's timers, if loaded
    end = time.monotonic() + seconds
    n = 0
    cpu0 = b.cpu_ms(srv.proc.pid)
    if name == "exec":
        lat: list[float] = []
        while time.monotonic() < end:
            t0 = time.perf_counter()
            ex = b.execute(c, con["id"], "1+1")
            lat.append((time.perf_counter() - t0) * 1000)
            b.check_two(ex)
            n += 1
        print(f"client-side REST 1+1: p50 {b.pct(lat, 0.5):.3f} ms, p90 {b.pct(lat, 0.9):.3f} ms")
    elif name == "create":
        while time.monotonic() < end:
            b.wait_pool_full(srv, c, 2, mine, at_least=True)
            new = b.create_container(c)
            b.check_two(b.execute(c, new["id"], "1+1"))
            b.delete_container(c, new["id"])
            b.wait_kernel_gone(c, new["exec_sessions"]["kernel_id"])
            n += 1
    elif name == "stream":
        code = (
            "import time\n"
            "for _ in range(50):\n"
            "    time.sleep(0.02)\n"
            "    print(time.time(), flush=True)\n"
        )
        body = {"type": "python", "code": code, "stream": True}
        while time.monotonic() < end:
            url = f"exec-sessions/v1/containers/{con['id']}/executions"
            with c.stream("POST", url, json=body) as r:
                for kind, _ in b.iter_sse(r.iter_lines()):
                    n += kind == "execution.output"
    elif name == "throughput":
        cids = [b.create_container(c, f"tp{i}")["id"] for i in range(8)]
        end = time.monotonic() + seconds  # the creates are not part of the workload

        async def run() -> int:
            async with srv.async_client() as ac:

                async def loop(cid: str) -> int:
                    k = 0
                    while time.monotonic() < end:
                        r = await ac.post(
                            f"exec-sessions/v1/containers/{cid}/executions",
                            json={"type": "python", "code": "1+1"},
                        )
                        b.check_two(r.json())
                        k += 1
                    return k

                return sum(await asyncio.gather(*(loop(cid) for cid in cids)))

        n = asyncio.run(run())
    else:
        raise SystemExit(f"unknown workload {name}")
    _print_cpu(srv, cpu0, n)
    return n


def _key(frame: str) -> str:
    # "func (path/to/file.py:123)" -> "func (file.py)"
    func, _, where = frame.partition(" (")
    return f"{func} ({where.split(':')[0].rsplit('/', 1)[-1]})" if where else func


def report(raw: Path, top: int, requests: int, rate: int) -> None:
    incl: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        for k in {_key(f) for f in frames}:
            incl[k] += n
        func, _, where = frames[-1].partition(" (")
        leaf[f"{func} ({where.rsplit('/', 1)[-1]}" if where else func] += n
    print(f"\n{total} samples at {rate} Hz over {requests} requests:")
    print(f"~{total / rate * 1000 / max(requests, 1):.2f} ms of server samples per request")
    print("\n--- inclusive (share of samples)")
    for k, v in incl.most_common(top):
        print(f"{v * 100 / total:6.1f}%  {k}")
    print("\n--- leaf")
    for k, v in leaf.most_common(top // 2):
        print(f"{v * 100 / total:6.1f}%  {k}")


def probe_report(stats: dict[str, list[float]], requests: int) -> None:
    print(f"\nwall time per layer over {requests} requests (nested layers overlap):")
    print(f"{'layer':<58}{'calls/req':>10}{'mean ms':>9}{'p50 ms':>8}{'ms/req':>8}")
    for label in sorted(stats):
        v = stats[label]
        print(
            f"{label:<58}{len(v) / requests:>10.2f}{sum(v) / len(v):>9.3f}"
            f"{b.pct(v, 0.5):>8.3f}{sum(v) / requests:>8.3f}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--workload",
        default="exec",
        choices=["exec", "mcp", "create", "burst", "stream", "throughput"],
    )
    ap.add_argument("--idle-containers", type=int, default=0, help="idle containers around")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rate", type=int, default=500, help="py-spy samples per second")
    ap.add_argument("--idle", action="store_true", help="also sample idle (waiting) threads")
    ap.add_argument("--top", type=int, default=50)
    ap.add_argument("--probe", action="store_true", help="per-layer wall-clock timers instead")
    args = ap.parse_args()
    b.header(f"profile_server: {args.workload}")
    limit = args.idle_containers + (100 if args.workload == "burst" else 20)
    limits = {"max_containers_per_user": limit, "max_containers": limit}
    if args.probe:
        here = str(Path(__file__).resolve().parent)
        env = {"PYTHONPATH": os.pathsep.join([here, os.environ.get("PYTHONPATH", "")])}
        with (
            b.running_server(pool_size=2, extensions=("_probe",), env=env, **limits) as srv,
            srv.client() as c,
        ):
            n = _workload(args.workload, srv, c, args.seconds, args.idle_containers)
            stats = c.get("bench-probe").json()
        probe_report(stats, n)
        return
    if shutil.which("py-spy") is None:
        raise SystemExit("py-spy not found: pip install py-spy")
    out = Path(tempfile.mkdtemp(prefix="exec-sessions-prof-")) / "server.txt"
    with b.running_server(pool_size=2, **limits) as srv, srv.client() as c:
        cmd = [
            "py-spy", "record", "--pid", str(srv.proc.pid), "--rate", str(args.rate),
            "--duration", str(int(args.seconds) + 2), "--format", "raw", "-o", str(out),
            "--nonblocking",
        ]  # fmt: skip
        if args.idle:
            cmd.append("--idle")
        spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)  # let py-spy attach before the workload starts
        n = _workload(args.workload, srv, c, args.seconds, args.idle_containers)
        spy.wait(timeout=60)
    if not out.exists():
        sys.exit("py-spy wrote nothing (ptrace permission?)")
    report(out, args.top, n, args.rate)
    print(f"\nraw stacks: {out}")


if __name__ == "__main__":
    main()
