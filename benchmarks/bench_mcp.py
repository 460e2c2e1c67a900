"""MCP ``execute_python_code("1+1")`` round trips vs raw ``jupyter_client``, side by side.

One server subprocess (``_server.running_server``) and one raw kernel in this process; the paths
are interleaved sample by sample after a warm-up, so load on the machine hits them alike:

* raw        ``AsyncKernelClient.execute_interactive("1+1")`` (the baseline, ≈5.6 ms);
* mcp-http   the official ``mcp`` client, ``call_tool("execute_python_code")`` over streamable
             HTTP at ``{base_url}exec-sessions/mcp`` in its MCP session's own container
             (goal: p50 ≤ 1.6× raw);
* mcp-stdio  the same through ``jupyter-exec-sessions mcp`` (stdio → typed HTTP client → REST);
* rest       ``POST /containers/{id}/executions`` with our ``AsyncClient`` (context: where the
             MCP layer's cost ends and the execution path's begins);
* mcp-list   ``tools/list`` over streamable HTTP (the transport alone, no kernel).

After the interleaved samples, the server's CPU per call (/proc) is measured over ``--n`` more
calls of ``mcp-http`` and of ``rest`` each. ``--idle N`` creates N more containers that stay idle
on the server during the run.

Run: ``python benchmarks/bench_mcp.py [--n 300] [--idle 20]``.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import _server as b
import httpx2 as httpx
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from jupyter_exec_sessions.client import AsyncClient
from jupyter_exec_sessions.models import PythonExecutionRequest

CODE = "1+1"


async def main(n: int, idle: int) -> None:
    b.header("bench_mcp: MCP execute_python_code('1+1') vs raw jupyter_client")
    script = shutil.which("jupyter-exec-sessions", path=str(Path(sys.executable).parent))
    assert script, "install the package (pip install -e .) to get the console script"
    limit = idle + 20
    cpu: dict[str, float] = {}
    with b.running_server(pool_size=2, max_containers_per_user=limit, max_containers=limit) as srv:
        if idle:
            with srv.client() as c:
                b.wait_pool_full(srv, c, 2, set(), at_least=True)
                mine: set[str] = set()
                for i in range(idle):
                    con = b.create_container(c, f"idle-{i}")
                    b.check_two(b.execute(c, con["id"], "1+1"))
                    mine.add(con["exec_sessions"]["kernel_id"])
                    b.wait_pool_full(srv, c, 2, mine, at_least=True)
            print(f"    {idle} idle containers on the server; {b.load()}")
        raw = b.RawKernel(Path(tempfile.mkdtemp(prefix="bench-mcp-raw-")))
        await raw.start()
        stdio_params = StdioServerParameters(
            command=script, args=["mcp", "--url", srv.url, "--token", srv.token]
        )
        try:
            async with (
                httpx.AsyncClient(headers=srv.headers, timeout=60) as http,
                AsyncClient(srv.url, srv.token) as rest,
                Client(
                    streamable_http_client(f"{srv.url}exec-sessions/mcp", http_client=http)
                ) as mcp_http,
                Client(stdio_params) as mcp_stdio,
            ):
                box = await rest.create_container(name="bench-mcp-rest")
                request = PythonExecutionRequest(code=CODE)

                async def check(client: Client) -> None:
                    result = await client.call_tool("execute_python_code", {"code": CODE})
                    assert not result.is_error, result
                    assert result.content[0].text == "Out: 2", result  # type: ignore[union-attr]

                async def raw_call() -> None:
                    assert await raw.run(CODE) == "2"

                async def rest_call() -> None:
                    await rest.execute(box.id, request)

                async def list_call() -> None:
                    await mcp_http.session.list_tools()

                paths: dict[str, Callable[[], Awaitable[None]]] = {
                    "raw": raw_call,
                    "mcp-http": lambda: check(mcp_http),
                    "mcp-stdio": lambda: check(mcp_stdio),
                    "rest": rest_call,
                    "mcp-list": list_call,
                }
                samples: dict[str, list[float]] = {name: [] for name in paths}
                for _ in range(30):  # warm-up: session containers, connections, caches
                    for call in paths.values():
                        await call()
                for _ in range(n):
                    for name, call in paths.items():
                        t0 = time.perf_counter()
                        await call()
                        samples[name].append((time.perf_counter() - t0) * 1000)
                for name in ("mcp-http", "rest"):
                    cpu0 = b.cpu_ms(srv.proc.pid)
                    for _ in range(n):
                        await paths[name]()
                    cpu[name] = (b.cpu_ms(srv.proc.pid) - cpu0) / n
                await rest.delete_container(box.id)
        finally:
            await raw.stop()

    base = samples["raw"]
    print()
    b.row_header()
    ratio = b.compare(
        "MCP execute_python_code 1+1, streamable HTTP", samples["mcp-http"], base, goal="≤ 1.6x"
    )
    b.compare("MCP execute_python_code 1+1, stdio", samples["mcp-stdio"], base)
    b.compare("REST executions 1+1 (context)", samples["rest"], base)
    b.single("MCP tools/list, streamable HTTP (transport)", samples["mcp-list"])
    b.single("raw jupyter_client execute_interactive 1+1", base)
    for name, ms in cpu.items():
        print(f"server CPU per {name} call: {ms:.2f} ms (/proc, {n} calls in a row)")
    print(f"\nMCP over streamable HTTP p50 = {ratio:.2f}x raw: {b.verdict(ratio <= 1.6)}")
    print(b.load())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="interleaved samples per path")
    parser.add_argument("--idle", type=int, default=0, help="idle containers around")
    args = parser.parse_args()
    asyncio.run(main(args.n, args.idle))
