"""Remote kernels: REST ``1+1`` and create → first result through Enterprise Gateway, side by side.

One run starts a real Jupyter Enterprise Gateway on loopback (``scripts/install-eg.sh``'s
``.venv-eg``, local process proxy), a server with local kernels and a server whose kernels are on
that gateway (``--GatewayClient.url``), both ``pool_size=2``, and measures, interleaved sample by
sample:

- REST ``1+1`` (persistent keep-alive client) on a container of each server, against raw
  ``jupyter_client`` ``execute_interactive`` on a local kernel and against a raw ``1+1`` over the
  gateway's own kernel websocket (TCP_NODELAY on our side) — the floor any gateway client pays;
- create → first ``1+1`` result (``POST /containers`` + ``POST /executions``) from a full,
  settled warm pool on each server, against the gateway's own ``POST /api/kernels`` → first
  ``1+1`` over its websocket (a cold kernel: what a client without a pool pays).

The pool is "settled" when the server lists ``pool_size`` kernels besides live containers and
then 2 s have passed (the pool kernel's setup and warm-up cell); a benchmark, not a test.

    python benchmarks/bench_gateway.py [--n 40] [--creates 8]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2 as httpx
from _server import (
    ROOT,
    RawKernel,
    check_two,
    compare,
    create_container,
    delete_container,
    execute,
    free_port,
    header,
    kernels,
    row_header,
    running_server,
    single,
)


@dataclass
class Gateway:
    url: str
    token: str
    proc: subprocess.Popen[bytes]

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"token {self.token}"}


@contextlib.contextmanager
def enterprise_gateway() -> Iterator[Gateway]:
    """Enterprise Gateway on loopback, as the tests start it (see tests/conftest.py)."""
    subprocess.run(["bash", str(ROOT / "scripts" / "install-eg.sh")], check=True)
    venv = ROOT / ".venv-eg" / "bin"
    tmp = Path(tempfile.mkdtemp(prefix="exec-sessions-bench-eg-"))
    port, token = free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "PATH": f"{venv}{os.pathsep}{os.environ.get('PATH', '')}",
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "JUPYTER_DATA_DIR": str(tmp / "data"),
        "JUPYTER_CONFIG_DIR": str(tmp / "config"),
        "EG_UNAUTHORIZED_USERS": "nobody-unauthorized",
    }
    env.pop("VIRTUAL_ENV", None)
    args = [
        str(venv / "jupyter-enterprisegateway"),
        "--ip=127.0.0.1",
        f"--port={port}",
        f"--EnterpriseGatewayApp.auth_token={token}",
        "--EnterpriseGatewayApp.list_kernels=True",
    ]
    with (tmp / "eg.log").open("wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    eg = Gateway(f"http://127.0.0.1:{port}", token, proc)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{eg.url}/api", headers=eg.headers, timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline or proc.poll() is not None:
                raise RuntimeError((tmp / "eg.log").read_text())
            time.sleep(0.1)
        yield eg
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


@dataclass
class _WsTarget:
    """What ``KernelWebsocket`` needs of a server: its websocket base URL and auth headers."""

    ws_url: str
    headers: dict[str, str]


class GatewayWebsocket:
    """A raw client of the gateway's kernel websocket (its REST + websocket, nothing of ours)."""

    def __init__(self, eg: Gateway) -> None:
        self.eg = eg
        self.kernel_id = ""
        self.ws: object = None

    async def start(self) -> None:
        from _server import KernelWebsocket

        async with httpx.AsyncClient(timeout=60) as c:
            r = await c.post(f"{self.eg.url}/api/kernels", headers=self.eg.headers, json={})
            self.kernel_id = r.json()["id"]
        target = _WsTarget(self.eg.url.replace("http", "ws", 1) + "/", self.eg.headers)
        ws = KernelWebsocket(target, self.kernel_id)  # type: ignore[arg-type]
        await ws.connect()
        await ws.kernel_info()
        self.ws = ws

    async def one_plus_one(self) -> None:
        msg = await self.ws.execute("1+1")  # type: ignore[attr-defined]
        assert msg["content"]["data"]["text/plain"] == "2"

    async def stop(self) -> None:
        if self.ws is not None:
            self.ws.close()  # type: ignore[attr-defined]
        async with httpx.AsyncClient(timeout=60) as c:
            await c.delete(f"{self.eg.url}/api/kernels/{self.kernel_id}", headers=self.eg.headers)


def settle(c: httpx.Client, pool_size: int, live: set[str]) -> None:
    deadline = time.monotonic() + 120
    while True:
        ids = {k["id"] for k in kernels(c)}
        if len(ids - live) == pool_size and live <= ids:
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"pool did not fill: {ids}")
        time.sleep(0.05)
    time.sleep(2.0)  # the newest pool kernel's setup + warm-up cell


def create_first(c: httpx.Client) -> tuple[float, str, str]:
    t0 = time.perf_counter()
    cont = create_container(c)
    check_two(execute(c, cont["id"], "1+1"))
    return (time.perf_counter() - t0) * 1000, cont["id"], cont["exec_sessions"]["kernel_id"]


async def main(n: int, creates: int) -> None:
    header("Remote kernels: Enterprise Gateway vs local kernels vs raw")
    with (
        enterprise_gateway() as eg,
        running_server(pool_size=2) as local,
        running_server(
            pool_size=2,
            extra_args=[f"--GatewayClient.url={eg.url}", f"--GatewayClient.auth_token={eg.token}"],
        ) as remote,
        local.client() as lc,
        remote.client() as rc,
    ):
        raw = RawKernel(Path(tempfile.mkdtemp(prefix="exec-sessions-bench-raw-")))
        gws = GatewayWebsocket(eg)
        await raw.start()
        await gws.start()
        try:
            lcid, rcid = create_container(lc)["id"], create_container(rc)["id"]
            samples: dict[str, list[float]] = {"local": [], "gateway": [], "raw": [], "egws": []}
            for i in range(n + 10):
                order = ("local", "gateway", "raw", "egws")
                for side in order if i % 2 == 0 else order[::-1]:
                    t0 = time.perf_counter()
                    if side == "local":
                        check_two(execute(lc, lcid, "1+1"))
                    elif side == "gateway":
                        check_two(execute(rc, rcid, "1+1"))
                    elif side == "raw":
                        await raw.run("1+1")
                    else:
                        await gws.one_plus_one()
                    if i >= 10:  # warm-up
                        samples[side].append((time.perf_counter() - t0) * 1000)
            print("\n-- REST 1+1 (ms)")
            row_header()
            compare("REST 1+1, local kernels vs raw", samples["local"], samples["raw"])
            compare("REST 1+1, gateway kernels vs raw", samples["gateway"], samples["raw"])
            compare("REST 1+1, gateway vs local kernels", samples["gateway"], samples["local"])
            compare("gateway websocket 1+1 (no server) vs raw", samples["egws"], samples["raw"])
            compare("REST 1+1 gateway vs gateway websocket", samples["gateway"], samples["egws"])
            delete_container(lc, lcid)
            delete_container(rc, rcid)

            made: dict[str, list[float]] = {"local": [], "gateway": [], "cold": []}
            for _ in range(creates):
                for side, c in (("local", lc), ("gateway", rc)):
                    settle(c, 2, set())
                    ms, cid, _kid = create_first(c)
                    made[side].append(ms)
                    delete_container(c, cid)
                t0 = time.perf_counter()
                cold = GatewayWebsocket(eg)
                await cold.start()
                await cold.one_plus_one()
                made["cold"].append((time.perf_counter() - t0) * 1000)
                await cold.stop()
            print("\n-- create -> first 1+1 result (ms)")
            row_header()
            single("create->1+1, local kernels (warm pool)", made["local"])
            compare("create->1+1, gateway kernels (warm pool)", made["gateway"], made["local"])
            single("gateway POST /api/kernels -> 1+1 (cold)", made["cold"])
            compare("create->1+1 gateway pool vs gateway cold", made["gateway"], made["cold"])
        finally:
            await raw.stop()
            await gws.stop()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--n", type=int, default=40)
    p.add_argument("--creates", type=int, default=8)
    a = p.parse_args()
    asyncio.run(main(a.n, a.creates))
