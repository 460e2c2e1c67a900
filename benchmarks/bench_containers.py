"""Container create latency from the warm pool vs a cold kernel through jupyter_server.

Side by side in one run, interleaved sample by sample, on one server:

* ours  ``POST /exec-sessions/v1/containers`` with the pool full (verified per sample by the
  ``container.created`` event's ``from_pool``), and create → first ``1+1`` result;
* base  jupyter_server's own ``POST /api/kernels`` + first ``kernel_info_reply`` over the kernel
  websocket ``/api/kernels/{id}/channels``, and ``POST /api/kernels`` → first ``1+1``
  ``execute_result`` over that websocket.

Before every sample the pool is full and quiet (``GET /api/kernels``), and the previous
sample's kernel is gone. Run: ``python benchmarks/bench_containers.py [--n 20] [--pool-size 2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import _server as b
import httpx2 as httpx


class Bench:
    def __init__(self, srv: b.Server, c: httpx.Client, pool_size: int) -> None:
        self.srv = srv
        self.c = c
        self.pool_size = pool_size
        self.loop = asyncio.new_event_loop()
        self.seq = b.last_event_seq(c)
        self.not_from_pool = 0

    def settle(self) -> None:
        b.wait_pool_full(self.srv, self.c, self.pool_size, set())

    def _confirm_from_pool(self, cid: str) -> bool:
        def seen(evs: list[dict[str, Any]]) -> bool:
            return any(e["type"] == "container.created" and e["container_id"] == cid for e in evs)

        evs = b.read_events(self.c, after=self.seq, until=seen)
        self.seq = max([self.seq, *(int(e["seq"]) for e in evs)])
        created = [e for e in evs if e["type"] == "container.created" and e["container_id"] == cid]
        ok = bool(created) and created[0]["data"].get("from_pool") is True
        if not ok:
            self.not_from_pool += 1
        return ok

    def _drop_container(self, con: dict[str, Any]) -> None:
        b.delete_container(self.c, con["id"])
        b.wait_kernel_gone(self.c, con["exec_sessions"]["kernel_id"])

    # ------------------------------------------------------------------ ours
    def warm_create(self) -> float | None:
        self.settle()
        t0 = time.perf_counter()
        con = b.create_container(self.c)
        dt = (time.perf_counter() - t0) * 1000
        ok = self._confirm_from_pool(con["id"])
        self._drop_container(con)
        return dt if ok else None

    def warm_first_result(self) -> float | None:
        self.settle()
        t0 = time.perf_counter()
        con = b.create_container(self.c)
        ex = b.execute(self.c, con["id"], "1+1")
        dt = (time.perf_counter() - t0) * 1000
        b.check_two(ex)
        ok = self._confirm_from_pool(con["id"])
        self._drop_container(con)
        return dt if ok else None

    def first_exec_settled(self) -> tuple[float, float]:
        """Diagnostic: first and second ``1+1`` of a new container once the refill is done."""
        self.settle()
        con = b.create_container(self.c)
        b.wait_pool_full(self.srv, self.c, self.pool_size, {con["exec_sessions"]["kernel_id"]})
        times = []
        for _ in range(2):
            t0 = time.perf_counter()
            ex = b.execute(self.c, con["id"], "1+1")
            times.append((time.perf_counter() - t0) * 1000)
            b.check_two(ex)
        self._confirm_from_pool(con["id"])
        self._drop_container(con)
        return times[0], times[1]

    # ------------------------------------------------------------------ jupyter_server cold
    async def _cold(self, first_result: bool) -> tuple[float, str]:
        t0 = time.perf_counter()
        r = self.c.post("api/kernels", json={"name": "python3"})
        r.raise_for_status()
        kernel_id = r.json()["id"]
        ws = b.KernelWebsocket(self.srv, kernel_id)
        await ws.connect()
        try:
            if first_result:
                msg = await ws.execute("1+1")
                if msg["content"]["data"]["text/plain"] != "2":
                    raise RuntimeError(f"unexpected result {msg}")
            else:
                await ws.kernel_info()
            dt = (time.perf_counter() - t0) * 1000
        finally:
            ws.close()
        return dt, kernel_id

    def cold(self, first_result: bool) -> float:
        self.settle()
        dt, kernel_id = self.loop.run_until_complete(self._cold(first_result))
        self.c.delete(f"api/kernels/{kernel_id}").raise_for_status()
        b.wait_kernel_gone(self.c, kernel_id)
        return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="samples per measurement (default 20)")
    ap.add_argument("--pool-size", type=int, default=2)
    args = ap.parse_args()

    b.header("bench_containers: warm-pool create vs jupyter_server cold kernel start")
    with (
        b.running_server(pool_size=args.pool_size, max_containers_per_user=50) as srv,
        srv.client() as c,
    ):
        bench = Bench(srv, c, args.pool_size)
        bench.settle()
        # warm-up (not recorded): imports, first SQLite writes, first websocket
        bench.warm_create()
        bench.warm_first_result()
        bench.cold(False)
        bench.cold(True)
        create: list[float] = []
        first: list[float] = []
        cold_info: list[float] = []
        cold_first: list[float] = []
        settled_first: list[float] = []
        settled_second: list[float] = []
        for _ in range(args.n):
            if (dt := bench.warm_create()) is not None:
                create.append(dt)
            cold_info.append(bench.cold(False))
            if (dt := bench.warm_first_result()) is not None:
                first.append(dt)
            cold_first.append(bench.cold(True))
            first_dt, second_dt = bench.first_exec_settled()
            settled_first.append(first_dt)
            settled_second.append(second_dt)
        bench.loop.close()

    print(f"\npool_size={args.pool_size}; samples not from the pool (discarded):", end=" ")
    print(bench.not_from_pool)
    b.row_header()
    r1 = b.compare(
        "create (ours) vs POST /api/kernels+kernel_info", create, cold_info, goal="lower is better"
    )
    r2 = b.compare("create→1+1 (ours) vs POST /api/kernels→1+1", first, cold_first)
    print("diagnostics (where create→1+1 goes):")
    b.single("  first 1+1 of a new container, refill done", settled_first)
    b.single("  second 1+1 of that container", settled_second)
    print(f"  {b.load()} at the end")
    p50 = b.pct(first, 0.5)
    print(f"\ngoal: create → first 1+1 from the warm pool ≤ 15 ms p50: {p50:.2f} ms", end=" ")
    print(b.verdict(p50 <= 15))
    print(f"speed-up vs cold: create {1 / r1:.0f}x, create→1+1 {1 / r2:.0f}x")


if __name__ == "__main__":
    main()
