"""Forked vs launched kernels: create → first result on an empty pool, memory, a burst.

Two servers side by side in one run — ``kernel_start=fork`` and ``kernel_start=launch`` — and
raw ``jupyter_client`` (``AsyncKernelManager`` start + ``1+1``) as the baseline, interleaved
sample by sample:

a. create → first ``1+1`` result with ``pool_size=0`` (every create starts a kernel), plus
   the CPU the kernel process itself used to get there (load-independent);
b. PSS per idle container over ``--live`` containers, every process of a container counted
   (kernel and its children; for fork, the template's PSS shared out over the containers);
c. ``--burst`` concurrent new MCP sessions (the official ``mcp`` client over streamable HTTP),
   each calling ``execute_python_code("1+1")`` once, on the default pool (quota raised): p50/p99
   from opening the session to the first result, and errors (``--burst-via rest``: concurrent
   ``POST /containers`` + first ``1+1`` instead).

s. where a forked kernel's first use goes (no server): ``AsyncKernelManager`` on the forked
   kernel spec, then what the pool does (connect + ``kernel_info``, helper set-up, warm-up
   cell) and a first ``1+1``; wall time and the kernel's CPU (all its threads, from
   ``/proc/<pid>/task/*/schedstat``) after each stage, p50 over ``--n``.

Run: ``python benchmarks/bench_kernel_start.py [--n 8] [--live 20] [--burst 64] [--parts abc]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import _server as b
import httpx2 as httpx

PID = "import os; print(os.getpid(), os.getppid())"


def _pids(c: httpx.Client, cid: str) -> tuple[int, int]:
    ex = b.execute(c, cid, PID)
    text = "".join(o.get("text", "") for o in ex["outputs"] if o["type"] == "logs")
    pid, ppid = text.split()
    return int(pid), int(ppid)


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def part_a(servers: dict[str, b.Server], n: int) -> None:
    print("\n(a) create -> first 1+1 result, pool empty (every create starts a kernel)")
    lat: dict[str, list[float]] = {k: [] for k in (*servers, "raw")}
    cpu: dict[str, list[float]] = {k: [] for k in servers}
    loop = asyncio.new_event_loop()
    clients = {k: s.client(timeout=300) for k, s in servers.items()}
    for _ in range(n):
        for name, c in clients.items():
            t0 = time.perf_counter()
            con = b.create_container(c)
            b.check_two(b.execute(c, con["id"], "1+1"))
            lat[name].append((time.perf_counter() - t0) * 1000)
            pid, _ = _pids(c, con["id"])
            cpu[name].append(b.cpu_ms(pid))
            b.delete_container(c, con["id"])
            b.wait_kernel_gone(c, con["exec_sessions"]["kernel_id"])
        raw = b.RawKernel(Path(tempfile.mkdtemp()))
        t0 = time.perf_counter()
        loop.run_until_complete(raw.start())
        assert loop.run_until_complete(raw.run("1+1")) == "2"
        lat["raw"].append((time.perf_counter() - t0) * 1000)
        loop.run_until_complete(raw.stop())
    b.row_header()
    for name in servers:
        b.compare(f"{name}: create -> first result vs raw start", lat[name], lat["raw"], goal="")
    if {"fork", "launch"} <= set(servers):
        b.compare("fork: create -> first result vs launch", lat["fork"], lat["launch"], goal="")
        b.compare("kernel CPU ms to first result: fork/launch", cpu["fork"], cpu["launch"])
    for name in servers:
        print(f"    {name}: kernel CPU ms to first result p50 {b.pct(cpu[name], 0.5):.0f}")
    if "fork" in servers:
        print(f"    goal: fork p50 <= 100 ms (p50 {b.pct(lat['fork'], 0.5):.0f} ms); {b.load()}")
    for c in clients.values():
        c.close()
    loop.close()


def part_b(servers: dict[str, b.Server], live: int) -> None:
    print(f"\n(b) PSS per idle container over {live} containers (every process counted)")
    for name, srv in servers.items():
        with srv.client(timeout=300) as c:
            cons = [b.create_container(c, f"idle-{i}") for i in range(live)]
            parents: set[int] = set()
            pss = 0.0
            for con in cons:
                b.check_two(b.execute(c, con["id"], "1+1"))
                pid, ppid = _pids(c, con["id"])
                if name == "fork":
                    parents.add(ppid)
                pss += sum(b.memory_mib(p)[1] for p in _tree(pid))
            shared = sum(b.memory_mib(p)[1] for p in parents)  # the template, shared out
            per = (pss + shared) / live
            print(
                f"    {name:<7} {per:6.1f} MiB PSS per container"
                f" (kernels {pss / live:.1f} + template {shared / live:.1f}); {b.load()}"
            )
            for con in cons:
                b.delete_container(c, con["id"])
    print("    goal: <= 20 MiB per container")


def _burst_mcp(srv: b.Server, name: str, burst: int) -> list[float | None]:
    async def one() -> float | None:
        try:
            return await b.mcp_first_call(srv)
        except Exception as e:
            print(f"    {name}: error {e!r}")
            return None

    async def run() -> list[float | None]:
        return list(await asyncio.gather(*(one() for _ in range(burst))))

    return asyncio.run(run())


def _burst_rest(srv: b.Server, name: str, burst: int) -> list[float | None]:
    def one(i: int) -> float | None:
        with srv.client(timeout=600) as c:
            t0 = time.perf_counter()
            try:
                con = b.create_container(c, f"burst-{i}")
                b.check_two(b.execute(c, con["id"], "1+1"))
            except Exception as e:
                print(f"    {name}: error {e!r}")
                return None
            return (time.perf_counter() - t0) * 1000

    with ThreadPoolExecutor(burst) as ex:
        return list(ex.map(one, range(burst)))


def part_c(servers: dict[str, b.Server], burst: int, via: str) -> None:
    what = "new MCP sessions + first call" if via == "mcp" else "creates + first 1+1 (REST)"
    print(f"\n(c) {burst} concurrent {what}, default pool (2)")
    b.row_header()
    res: dict[str, list[float]] = {}
    for name, srv in servers.items():
        with srv.client(timeout=300) as c:
            b.wait_pool_full(srv, c, 2, set())
        cpu0 = (b.cpu_ms(srv.proc.pid), b.descendants_cpu_ms(srv.proc.pid), b.cpu_ms(os.getpid()))
        out = _burst_mcp(srv, name, burst) if via == "mcp" else _burst_rest(srv, name, burst)
        cpu1 = (b.cpu_ms(srv.proc.pid), b.descendants_cpu_ms(srv.proc.pid), b.cpu_ms(os.getpid()))
        res[name] = [x for x in out if x is not None]
        errors = burst - len(res[name])
        print(
            f"    {name:<7} p50 {b.pct(res[name], 0.5):8.0f} ms  p99 {b.pct(res[name], 0.99):8.0f}"
            f" ms  errors {errors}; {b.load()}"
        )
        spent = [(after - before) / burst for before, after in zip(cpu0, cpu1, strict=True)]
        server, kernels, client = spent
        print(
            f"    {name:<7} CPU ms per session: server {server:.0f}, its kernels and fork"
            f" server {kernels:.0f}, this benchmark's clients {client:.0f}"
        )
        with srv.client(timeout=300) as c:
            while True:
                page = c.get("exec-sessions/v1/containers", params={"limit": 100}).json()["data"]
                if not page:
                    break
                for con in page:
                    b.delete_container(c, con["id"])
    if {"fork", "launch"} <= set(res):
        b.compare("burst first result: fork vs launch", res["fork"], res["launch"], goal="")
    print("    goal: p99 <= 2 s, 0 errors")


def _kernel_cpu_ms(pid: int) -> float:
    """CPU time of every thread of ``pid`` so far, in ms (nanosecond schedstat)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        total += int((task / "schedstat").read_text().split()[0])
    return total / 1e6


def part_s(n: int) -> None:
    import json
    import sys

    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    from jupyter_exec_sessions import forkserver
    from jupyter_exec_sessions.engine import KernelSession
    from jupyter_exec_sessions.engine.channel import preload_source

    print("\n(s) a forked kernel's first use, stage by stage (no server), p50 cumulative")
    tmp = Path(tempfile.mkdtemp())
    spec = tmp / "kernels" / "k"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "k"}))
    ksm = KernelSpecManager()
    ksm.kernel_dirs = [str(tmp / "kernels")]
    name = forkserver.write_kernelspec(ksm, "k", tmp / "forked", preload=preload_source())

    async def one(i: int) -> list[tuple[str, float, float]]:
        km = AsyncKernelManager(kernel_name=name, kernel_spec_manager=ksm)
        workdir = tmp / f"w{i}"
        workdir.mkdir()
        marks: list[tuple[str, float, float]] = []
        t0 = time.perf_counter()

        def mark(stage: str) -> None:
            pid = int(km.provisioner.pid or 0)  # type: ignore[union-attr]
            marks.append((stage, (time.perf_counter() - t0) * 1000, _kernel_cpu_ms(pid)))

        await km.start_kernel(cwd=str(workdir))
        mark("start_kernel (fork, initialise, ready)")
        session = KernelSession(km, str(workdir))
        await session.start(wait_setup=False)
        mark("+ channels, kernel_info")
        await session.setup(30)
        mark("+ helper set-up")
        await session.warm_up()
        mark("+ warm-up cell")
        await session.run_python("1+1", execution_id="e1", timeout_s=30, max_output_length=1000)
        mark("+ first 1+1")
        await session.close()
        await km.shutdown_kernel(now=True)
        return marks

    async def run() -> list[list[tuple[str, float, float]]]:
        return [await one(i) for i in range(n + 1)]

    try:
        rows = asyncio.run(run())[1:]  # the first also starts the template
    finally:
        forkserver.close_all()
    for k, (stage, _, _) in enumerate(rows[0]):
        wall = b.pct([r[k][1] for r in rows], 0.5)
        cpu = b.pct([r[k][2] for r in rows], 0.5)
        print(f"    {stage:<40} wall {wall:7.1f} ms   kernel CPU {cpu:6.1f} ms")
    print(f"    {b.load()}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--live", type=int, default=20)
    ap.add_argument("--burst", type=int, default=64)
    ap.add_argument("--parts", default="abc")
    ap.add_argument("--burst-via", choices=("mcp", "rest"), default="mcp")
    ap.add_argument("--sides", default="fork,launch", help="servers to run (fork, launch)")
    ap.add_argument("--max-starts", type=int, default=0, help="max_kernel_starts (0: default)")
    args = ap.parse_args()
    b.header("bench_kernel_start: forked vs launched kernels (and raw jupyter_client)")
    print(f"    {b.load()}")
    quota: dict[str, Any] = {"max_containers_per_user": 500, "max_containers": 500}
    if args.max_starts:
        quota["max_kernel_starts"] = args.max_starts
    sides = [s for s in args.sides.split(",") if s]
    # each part on fresh servers: (a) without a pool, (b) and (c) with the default one, which
    # an earlier part would have grown
    for part in args.parts:
        if part == "s":
            part_s(args.n)
            continue
        pool = 0 if part == "a" else 2
        with contextlib.ExitStack() as stack:
            servers = {
                side: stack.enter_context(
                    b.running_server(kernel_start=side, pool_size=pool, ready_timeout=300, **quota)
                )
                for side in sides
            }
            if part == "a":
                part_a(servers, args.n)
            elif part == "b":
                part_b(servers, args.live)
            elif part == "c":
                part_c(servers, args.burst, args.burst_via)
    print(f"    {b.load()}")


if __name__ == "__main__":
    main()
