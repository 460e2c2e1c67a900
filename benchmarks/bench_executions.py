"""Executions: REST latency, live output latency, throughput and scale, against raw kernels.

Side by side in one run (each part prints our figures, the raw baseline and the ratio):

a. REST ``1+1`` (``POST /containers/{id}/executions``, persistent keep-alive client) vs raw
   ``jupyter_client`` ``execute_interactive("1+1")`` on a kernel started by
   ``AsyncKernelManager`` in this process; interleaved sample by sample, after a warm-up.
b. Live output latency: a running cell prints ``time.time()`` every 20 ms (then every 1 ms, a
   burst); the client takes its own ``time.time()`` when the line arrives (``execution.output``
   SSE event vs the raw client's IOPub ``stream`` message). Same machine, same clock.
c. Throughput: executions per second with 8 containers busy (8 concurrent client loops, one per
   container) vs 8 raw kernel clients in parallel; rounds alternate.
d. Scale: ``1+1`` p50 with 100 live containers vs the same server with one lone container
   (a second server with ``max_containers=200``).

(a) also times the project's own sync ``Client.execute`` (typed request and answer) and prints
the server's CPU per REST execution (/proc, over the REST samples only). ``--idle N`` creates N
more containers that stay idle on the server during (a)-(c).

Run: ``python benchmarks/bench_executions.py [--n 200] [--parts abcd] [--idle 20]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import _server as b
import httpx2 as httpx

from jupyter_exec_sessions.client import Client
from jupyter_exec_sessions.models import PythonExecutionRequest


def print_cell(k: int, period_s: float) -> str:
    return (
        "import time\n"
        f"for _ in range({k}):\n"
        f"    time.sleep({period_s})\n"
        "    print(repr(time.time()), flush=True)\n"
    )


def _lines_latency_ms(text: str, now: float) -> list[float]:
    return [(now - float(line)) * 1000 for line in text.splitlines() if line.strip()]


# ---------------------------------------------------------------------------- a. latency
def part_a(
    srv: b.Server,
    c: httpx.Client,
    cid: str,
    raw: b.RawKernel,
    loop: asyncio.AbstractEventLoop,
    n: int,
) -> dict[str, list[float]]:
    request = PythonExecutionRequest(code="1+1")
    ours = Client(srv.url, srv.token)

    async def raw_once() -> float:
        t0 = time.perf_counter()
        value = await raw.run("1+1")
        dt = (time.perf_counter() - t0) * 1000
        if value != "2":
            raise RuntimeError(f"raw result {value!r}")
        return dt

    engine: list[float] = []
    server_cpu: list[float] = []

    def rest_once() -> float:
        cpu0 = b.cpu_ms(srv.proc.pid)
        t0 = time.perf_counter()
        ex = b.execute(c, cid, "1+1")
        dt = (time.perf_counter() - t0) * 1000
        server_cpu.append(b.cpu_ms(srv.proc.pid) - cpu0)
        b.check_two(ex)
        engine.append(float(ex["duration_ms"]))
        return dt

    def client_once() -> float:
        t0 = time.perf_counter()
        ex = ours.execute(cid, request)
        dt = (time.perf_counter() - t0) * 1000
        if b.result_text(ex.model_dump()) != "2":
            raise RuntimeError(f"client result {ex!r}")
        return dt

    sides = {"raw": lambda: loop.run_until_complete(raw_once()), "rest": rest_once}
    sides["client"] = client_once
    for _ in range(30):  # warm-up
        for once in sides.values():
            once()
    engine.clear()
    server_cpu.clear()
    samples: dict[str, list[float]] = {k: [] for k in sides}
    names = list(sides)
    with ours:
        for i in range(n):
            # rotate which side goes first so that none always follows another
            for k in names[i % 3 :] + names[: i % 3]:
                samples[k].append(sides[k]())
    samples["engine"] = engine
    samples["server_cpu"] = server_cpu
    return samples


# ---------------------------------------------------------------------------- b. live output
def part_b(
    c: httpx.Client,
    cid: str,
    raw: b.RawKernel,
    loop: asyncio.AbstractEventLoop,
    n: int,
    period_s: float,
) -> tuple[list[float], list[float]]:
    per_cell = 50
    rounds = max(1, n // per_cell)
    code = print_cell(per_cell, period_s)
    rest: list[float] = []
    base: list[float] = []

    def rest_cell() -> list[float]:
        got: list[float] = []
        body = {"type": "python", "code": code, "stream": True}
        with c.stream("POST", f"exec-sessions/v1/containers/{cid}/executions", json=body) as r:
            r.raise_for_status()
            for kind, data in b.iter_sse(r.iter_lines()):
                if kind == "execution.output":
                    now = time.time()
                    out = data["output"]
                    if out["type"] == "logs" and out["stream"] == "stdout":
                        got += _lines_latency_ms(out["text"], now)
                elif kind == "execution.completed":
                    if data["execution"]["status"] != "completed":
                        raise RuntimeError(f"print cell: {data}")
                    break
        return got

    async def raw_cell() -> list[float]:
        got: list[float] = []

        def hook(msg: dict[str, Any]) -> None:
            if msg["msg_type"] == "stream" and msg["content"]["name"] == "stdout":
                got.extend(_lines_latency_ms(msg["content"]["text"], time.time()))

        await raw.run(code, hook)
        return got

    rest_cell()  # warm-up
    loop.run_until_complete(raw_cell())
    for _ in range(rounds):
        rest += rest_cell()
        base += loop.run_until_complete(raw_cell())
    return rest, base


# ---------------------------------------------------------------------------- c. throughput
async def _rest_phase(srv: b.Server, cids: list[str], per_worker: int) -> float:
    async with srv.async_client() as ac:

        async def worker(cid: str, count: int) -> None:
            url = f"exec-sessions/v1/containers/{cid}/executions"
            for _ in range(count):
                r = await ac.post(url, json={"type": "python", "code": "1+1"})
                if r.status_code != 200:
                    raise RuntimeError(f"{r.status_code} {r.text}")
                b.check_two(r.json())

        await asyncio.gather(*(worker(cid, 3) for cid in cids))  # connections + warm-up
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(cid, per_worker) for cid in cids))
        return len(cids) * per_worker / (time.perf_counter() - t0)


def _rest_phase_threads(srv: b.Server, cids: list[str], per_worker: int) -> float:
    clients = [srv.client() for _ in cids]
    for cl, cid in zip(clients, cids, strict=True):
        for _ in range(3):
            b.check_two(b.execute(cl, cid, "1+1"))
    barrier = threading.Barrier(len(cids) + 1)
    errors: list[BaseException] = []

    def worker(cl: httpx.Client, cid: str) -> None:
        barrier.wait()
        try:
            for _ in range(per_worker):
                b.check_two(b.execute(cl, cid, "1+1"))
        except BaseException as e:
            errors.append(e)

    threads = [
        threading.Thread(target=worker, args=(cl, cid))
        for cl, cid in zip(clients, cids, strict=True)
    ]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join(timeout=600)
    rate = len(cids) * per_worker / (time.perf_counter() - t0)
    for cl in clients:
        cl.close()
    if errors:
        raise errors[0]
    return rate


async def _raw_phase(raws: list[b.RawKernel], per_worker: int) -> float:
    async def worker(raw: b.RawKernel, count: int) -> None:
        for _ in range(count):
            if await raw.run("1+1") != "2":
                raise RuntimeError("raw result")

    await asyncio.gather(*(worker(r, 3) for r in raws))
    t0 = time.perf_counter()
    await asyncio.gather(*(worker(r, per_worker) for r in raws))
    return len(raws) * per_worker / (time.perf_counter() - t0)


class CpuMeter:
    """CPU ms per execution of each process class during one phase (Linux /proc)."""

    def __init__(self, server_pid: int) -> None:
        self.server_pid = server_pid
        self.me = os.getpid()

    def snapshot(self) -> dict[str, float]:
        return {
            "server": b.cpu_ms(self.server_pid),
            "server kernels": b.descendants_cpu_ms(self.server_pid),
            "bench client": b.cpu_ms(self.me),
            "raw kernels": b.descendants_cpu_ms(self.me, exclude=(self.server_pid,)),
        }

    @staticmethod
    def per_exec(before: dict[str, float], after: dict[str, float], n: int) -> dict[str, float]:
        return {k: (after[k] - before[k]) / n for k in before}


def part_c(
    srv: b.Server,
    c: httpx.Client,
    raws: list[b.RawKernel],
    loop: asyncio.AbstractEventLoop,
    per_worker: int,
    rounds: int,
    client_kind: str,
) -> tuple[list[float], list[float], dict[str, float], dict[str, float]]:
    cids = [b.create_container(c, f"tp-{i}")["id"] for i in range(len(raws))]
    meter = CpuMeter(srv.proc.pid)
    total = len(raws) * per_worker
    rest: list[float] = []
    base: list[float] = []
    cpu_rest: dict[str, float] = {}
    cpu_base: dict[str, float] = {}
    for _ in range(rounds):
        s0 = meter.snapshot()
        if client_kind == "threads":
            rest.append(_rest_phase_threads(srv, cids, per_worker))
        else:
            rest.append(loop.run_until_complete(_rest_phase(srv, cids, per_worker)))
        s1 = meter.snapshot()
        base.append(loop.run_until_complete(_raw_phase(raws, per_worker)))
        s2 = meter.snapshot()
        # warm-up executions (3 per loop) are included: a small, equal share on both sides
        for acc, d in (
            (cpu_rest, meter.per_exec(s0, s1, total)),
            (cpu_base, meter.per_exec(s1, s2, total)),
        ):
            for k, v in d.items():
                acc[k] = acc.get(k, 0.0) + v / rounds
    for cid in cids:
        b.delete_container(c, cid)
    return rest, base, cpu_rest, cpu_base


# ---------------------------------------------------------------------------- d. scale
def part_d(n: int, live: int) -> None:
    pool = 2
    with (
        b.running_server(
            pool_size=pool, max_containers_per_user=live + 10, max_containers=live + 10
        ) as srv,
        srv.client() as c,
    ):

        def measure(cids: list[str]) -> list[float]:
            out: list[float] = []
            for i in range(n):
                t0 = time.perf_counter()
                ex = b.execute(c, cids[i % len(cids)], "1+1")
                out.append((time.perf_counter() - t0) * 1000)
                b.check_two(ex)
            return out

        b.wait_pool_full(srv, c, pool, set())
        first = b.create_container(c, "lone")
        kernels = {first["exec_sessions"]["kernel_id"]}
        b.wait_pool_full(srv, c, pool, kernels)
        for _ in range(30):
            b.execute(c, first["id"], "1+1")
        lone = measure([first["id"]])
        t0 = time.perf_counter()
        cids = [first["id"]]
        for i in range(live - 1):
            # one at a time from a full pool: every create is warm, the refill keeps up
            b.wait_pool_full(srv, c, pool, kernels, timeout=300)
            con = b.create_container(c, f"scale-{i}")
            cids.append(con["id"])
            kernels.add(con["exec_sessions"]["kernel_id"])
        b.wait_pool_full(srv, c, pool, kernels, timeout=300)
        made = time.perf_counter() - t0
        kernel_pids = list(b.children_cpu_ticks(srv.proc.pid))
        mem = [b.memory_mib(pid) for pid in kernel_pids]
        server_mem = b.memory_mib(srv.proc.pid)
        for cid in cids:  # every container has run code once (warm, like the lone one)
            b.check_two(b.execute(c, cid, "1+1"))
        same = measure([first["id"]])
        spread = measure(cids)
        for cid in cids[1:]:
            b.delete_container(c, cid)
        for k in kernels - {first["exec_sessions"]["kernel_id"]}:
            b.wait_kernel_gone(c, k, timeout=120)
        b.wait_pool_full(srv, c, pool, {first["exec_sessions"]["kernel_id"]}, timeout=120)
        lone2 = measure([first["id"]])
    print(f"\n(d) {live} live containers (created in {made:.1f} s), pool_size={pool}")
    print(
        f"    memory: {len(mem)} kernels, per kernel RSS {b.pct([m[0] for m in mem], 0.5):.1f} MiB,"
        f" PSS {b.pct([m[1] for m in mem], 0.5):.1f} MiB (p50); server RSS {server_mem[0]:.0f} MiB"
    )
    b.row_header()
    r1 = b.compare(f"1+1, {live} live, same container vs lone", same, lone)
    r2 = b.compare(f"1+1, {live} live, round-robin vs lone", spread, lone)
    b.compare("1+1, lone again after deleting the rest", lone2, lone)
    worst = max(r1, r2)
    print(f"goal: {live} live containers 1+1 p50 ≤ 2× lone: {worst:.2f}x {b.verdict(worst <= 2)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="samples per latency measurement")
    ap.add_argument("--parts", default="abcd", help="which parts to run (default abcd)")
    ap.add_argument("--per-worker", type=int, default=100, help="(c) executions per loop")
    ap.add_argument("--rounds", type=int, default=3, help="(c) alternating rounds")
    ap.add_argument("--client", choices=["async", "threads"], default="async", help="(c) REST")
    ap.add_argument("--live", type=int, default=100, help="(d) live containers")
    ap.add_argument("--idle", type=int, default=0, help="(a-c) idle containers around")
    args = ap.parse_args()
    parts = set(args.parts)

    b.header("bench_executions: REST / streaming / throughput / scale vs raw jupyter_client")
    results: dict[str, Any] = {}
    if parts & set("abc"):
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        tmp = Path(tempfile.mkdtemp(prefix="raw-kernels-"))
        raws = [b.RawKernel(tmp / f"k{i}") for i in range(8 if "c" in parts else 1)]
        try:
            limit = args.idle + 20
            with (
                b.running_server(
                    pool_size=2, max_containers_per_user=limit, max_containers=limit
                ) as srv,
                srv.client() as c,
            ):
                loop.run_until_complete(asyncio.gather(*(r.start() for r in raws)))
                b.wait_pool_full(srv, c, 2, set(), at_least=True)
                con = b.create_container(c, "latency")
                cid = con["id"]
                mine = {con["exec_sessions"]["kernel_id"]}
                for i in range(args.idle):
                    b.wait_pool_full(srv, c, 2, mine, at_least=True)
                    idle = b.create_container(c, f"idle-{i}")
                    b.check_two(b.execute(c, idle["id"], "1+1"))
                    mine.add(idle["exec_sessions"]["kernel_id"])
                b.wait_pool_full(srv, c, 2, mine, at_least=True)
                if args.idle:
                    print(f"    {args.idle} idle containers on the server; {b.load()}")
                if "a" in parts:
                    results["a"] = part_a(srv, c, cid, raws[0], loop, args.n)
                if "b" in parts:
                    results["b"] = part_b(c, cid, raws[0], loop, args.n, 0.02)
                    results["b1"] = part_b(c, cid, raws[0], loop, args.n, 0.001)
                if "c" in parts:
                    results["c"] = part_c(
                        srv, c, raws, loop, args.per_worker, args.rounds, args.client
                    )
        finally:
            loop.run_until_complete(asyncio.gather(*(r.stop() for r in raws)))
            loop.close()
            shutil.rmtree(tmp, ignore_errors=True)

    if results:
        b.row_header()
    if "a" in results:
        a = results["a"]
        rest, base, engine = a["rest"], a["raw"], a["engine"]
        ratio = b.compare("(a) REST 1+1 (httpx2) vs execute_interactive", rest, base)
        print(f"    goal ≤ 1.3× p50: {ratio:.2f}x {b.verdict(ratio <= 1.3)}")
        ratio = b.compare("    REST 1+1, our sync Client vs raw", a["client"], base)
        print(f"    goal ≤ 1.3× p50: {ratio:.2f}x {b.verdict(ratio <= 1.3)}")
        b.compare("    server's duration_ms (engine) vs raw", engine, base)
        over = [r - e for r, e in zip(rest, engine, strict=True)]
        b.single("    REST minus duration_ms (HTTP+service)", over)
        cpu = a["server_cpu"]
        print(
            f"    server CPU per REST execution: {sum(cpu) / len(cpu):.2f} ms"
            f" (/proc, {len(cpu)} executions; goal ≤ 1.2)"
        )
    if "b" in results:
        b.compare("(b) print every 20 ms → SSE vs → IOPub", *results["b"])
        b.compare("(b) print every 1 ms → SSE vs → IOPub", *results["b1"])
        print("    (no numeric goal: latency from print() to the client, same clock)")
    if "c" in results:
        rest, base, cpu_rest, cpu_base = results["c"]
        print(
            f"(c) 8 busy: ours {', '.join(f'{x:.0f}' for x in rest)} exec/s;"
            f" raw {', '.join(f'{x:.0f}' for x in base)} exec/s (per round)"
        )
        ratio = sum(rest) / sum(base)
        print(
            f"    total ours {sum(rest) / len(rest):.0f}/s vs raw {sum(base) / len(base):.0f}/s:"
            f" {ratio:.2f}x; goal ≥ 0.85×: {b.verdict(ratio >= 0.85)}"
        )
        print("    CPU ms per execution (2 cores = 2000 ms of CPU per second):")
        for name, cpu in (("ours", cpu_rest), ("raw", cpu_base)):
            shares = ", ".join(f"{k} {v:.2f}" for k, v in cpu.items() if v >= 0.005)
            print(f"      {name:<5} total {sum(cpu.values()):.2f} = {shares}")
    print(b.load())
    if "d" in parts:
        part_d(args.n, args.live)


if __name__ == "__main__":
    main()
