"""Server CPU and latency per REST ``1+1`` of any installed version of the package.

Self-contained on purpose (standard library only on the client side): it starts
``<python> -m jupyter_server`` with the extension of *that* Python's environment, so two
checkouts (each with its own virtual environment) can be compared on one machine, in one
sitting, with the same client::

    python benchmarks/bench_server_cpu.py /path/to/old/.venv/bin/python
    python benchmarks/bench_server_cpu.py .venv/bin/python

It creates one container, runs 50 warm-up executions, then 3 rounds of 300 ``1+1`` over one
keep-alive ``http.client`` connection, and prints per round the server process's CPU per
execution (/proc utime+stime) and the p50 latency. Extra arguments go to the server
(``--ExecSessionsApp.sandbox=none``).

With ``--creates N`` (first, after the Python) it measures instead create → first ``1+1``
result, N times (each container deleted after, 1 s apart), and prints p50 and p90; with
``--ExecSessionsApp.pool_size=0`` every create starts a kernel (the "pool empty" case)::

    python benchmarks/bench_server_cpu.py .venv/bin/python --creates 12 \
        --ExecSessionsApp.pool_size=0
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

OFF = ["jupyterlab", "notebook_shim", "jupyter_lsp", "jupyter_server_terminals"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu_ms(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) * 1000 / os.sysconf("SC_CLK_TCK")


def _creates(call: Any, n: int, python: str) -> None:
    """Create → first ``1+1`` result, ``n`` times; print p50 and p90."""
    latencies = []
    for i in range(n + 1):
        t = time.perf_counter()
        status, body = call("POST", "/exec-sessions/v1/containers", {"name": f"c{i}"})
        assert status == 200, body
        cid = json.loads(body)["id"]
        status, body = call(
            "POST", f"/exec-sessions/v1/containers/{cid}/executions", {"code": "1+1"}
        )
        assert status == 200 and b'"2"' in body, body
        if i:  # the first one also warms the server up
            latencies.append((time.perf_counter() - t) * 1000)
        assert call("DELETE", f"/exec-sessions/v1/containers/{cid}")[0] == 200
        time.sleep(1)  # the kernel's shutdown is not part of the next create
    latencies.sort()
    p50, p90 = latencies[len(latencies) // 2], latencies[int(0.9 * (len(latencies) - 1))]
    print(f"{python}: create -> first 1+1 p50 {p50:.1f} ms, p90 {p90:.1f} ms over {n}", end="")
    print(f" (load {os.getloadavg()[0]:.2f})")


def main() -> None:
    python, extra = os.path.abspath(sys.argv[1]), sys.argv[2:]  # the server runs elsewhere
    creates = 0
    if extra[:1] == ["--creates"]:
        creates, extra = int(extra[1]), extra[2:]
    tmp = tempfile.mkdtemp(prefix="exec-sessions-cpu-")
    for d in ("root", "runtime", "config", "data", "jdata"):
        os.makedirs(f"{tmp}/{d}")
    port, token = _free_port(), secrets.token_hex(8)
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": f"{tmp}/runtime",
        "JUPYTER_CONFIG_DIR": f"{tmp}/config",
        "JUPYTER_DATA_DIR": f"{tmp}/jdata",
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    enabled = {"jupyter_exec_sessions": True, **dict.fromkeys(OFF, False)}
    args = [
        python,
        "-m",
        "jupyter_server",
        "--no-browser",
        "--allow-root",
        f"--port={port}",
        "--ip=127.0.0.1",
        f"--ServerApp.root_dir={tmp}/root",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.jpserver_extensions={enabled!r}",
        f"--ExecSessionsApp.data_dir={tmp}/data",
        *(
            []
            if any(a.startswith("--ExecSessionsApp.pool_size=") for a in extra)
            else ["--ExecSessionsApp.pool_size=2"]
        ),
        *extra,
    ]
    with open(f"{tmp}/server.log", "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp)
    headers = {"Authorization": f"token {token}", "Content-Type": "application/json"}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(method: str, path: str, body: object = None) -> tuple[int, bytes]:
        payload = json.dumps(body) if body is not None else None
        conn.request(method, path, body=payload, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()

    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if call("GET", "/exec-sessions/v1/containers")[0] == 200:
                    break
            except OSError:
                conn.close()
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"server did not start; see {tmp}/server.log")
            time.sleep(0.2)
        time.sleep(3)  # the pool fills
        if creates:
            _creates(call, creates, python)
            return
        status, body = call("POST", "/exec-sessions/v1/containers", {"name": "cpu"})
        assert status == 200, body
        cid = json.loads(body)["id"]
        path = f"/exec-sessions/v1/containers/{cid}/executions"

        def execute() -> None:
            status, body = call("POST", path, {"code": "1+1"})
            assert status == 200, body

        for _ in range(50):
            execute()
        time.sleep(2)
        rounds = []
        for _ in range(3):
            cpu0, latencies = _cpu_ms(proc.pid), []
            for _ in range(300):
                t = time.perf_counter()
                execute()
                latencies.append(time.perf_counter() - t)
            cpu = (_cpu_ms(proc.pid) - cpu0) / 300
            latencies.sort()
            rounds.append(f"server CPU {cpu:.2f} ms/exec, p50 {latencies[150] * 1000:.2f} ms")
        print(f"{python}: " + "; ".join(rounds) + f" (load {os.getloadavg()[0]:.2f})")
    finally:
        proc.terminate()
        proc.wait(30)


if __name__ == "__main__":
    main()
