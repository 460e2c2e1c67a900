"""The cost of confinement: the same server with ``sandbox=none`` and with ``sandbox=bwrap``.

Two servers run side by side in one run (same machine, same load), sampled alternately:

* create → first ``1+1`` result from the warm pool (``POST /containers`` then
  ``POST /containers/{id}/executions``; each sample confirmed warm by its ``container.created``
  event), goal with the sandbox **≤ 20 ms p50**;
* REST ``1+1`` on an existing container (persistent keep-alive client).

The "base" columns are the unconfined server, "ours" the confined one. Also printed: kernel
start to ready for each (how long the pool takes to refill). Run:
``python benchmarks/bench_sandbox.py [--n 20] [--pool-size 2]``.
"""

from __future__ import annotations

import argparse
import time

import _server as b
from bench_containers import Bench


def rest_1_plus_1(c: b.httpx.Client, cid: str) -> float:
    t0 = time.perf_counter()
    ex = b.execute(c, cid, "1+1")
    dt = (time.perf_counter() - t0) * 1000
    b.check_two(ex)
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20, help="samples per measurement (default 20)")
    ap.add_argument("--pool-size", type=int, default=2)
    ap.add_argument("--rest-n", type=int, default=200, help="REST 1+1 samples per server")
    args = ap.parse_args()

    b.header("bench_sandbox: sandbox=bwrap vs sandbox=none, same run")
    traits = {"pool_size": args.pool_size, "max_containers_per_user": 50}
    with (
        b.running_server(sandbox="none", **traits) as plain,
        b.running_server(sandbox="bwrap", **traits) as boxed,
        plain.client() as pc,
        boxed.client() as bc,
    ):
        benches = {
            "none": Bench(plain, pc, args.pool_size),
            "bwrap": Bench(boxed, bc, args.pool_size),
        }
        for bench in benches.values():  # warm-up, not recorded
            bench.settle()
            bench.warm_first_result()
        first: dict[str, list[float]] = {"none": [], "bwrap": []}
        for _ in range(args.n):
            for mode, bench in benches.items():
                if (dt := bench.warm_first_result()) is not None:
                    first[mode].append(dt)
        for bench in benches.values():
            bench.settle()
        cids = {"none": b.create_container(pc)["id"], "bwrap": b.create_container(bc)["id"]}
        clients = {"none": pc, "bwrap": bc}
        rest: dict[str, list[float]] = {"none": [], "bwrap": []}
        for mode in ("none", "bwrap"):
            for _ in range(30):
                rest_1_plus_1(clients[mode], cids[mode])
        for _ in range(args.rest_n):
            for mode in ("none", "bwrap"):
                rest[mode].append(rest_1_plus_1(clients[mode], cids[mode]))
        for bench in benches.values():
            bench.loop.close()
        not_warm = {m: bench.not_from_pool for m, bench in benches.items()}

    print(f"\npool_size={args.pool_size}; samples not from the pool (discarded): {not_warm}")
    b.row_header()
    b.compare("create→1+1 bwrap (ours) vs none (base)", first["bwrap"], first["none"])
    b.compare("REST 1+1 bwrap (ours) vs none (base)", rest["bwrap"], rest["none"])
    print(f"  {b.load()} at the end")
    p50 = b.pct(first["bwrap"], 0.5)
    print(f"\ngoal: create → first 1+1 with the sandbox ≤ 20 ms p50: {p50:.2f} ms", end=" ")
    print(b.verdict(p50 <= 20))


if __name__ == "__main__":
    main()
