"""Reliability suite: hostile clients and operators, each finding reproduced and answered.

Bodies are read only after authentication and within limits; hostile JSON is a 400 naming
the field (REST and MCP), never a 500; tokens stay out of the log; one server per registry.
Every loop is bounded; everything runs on loopback.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from helpers import RunningServer, launch
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_types import TextContent

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server with small limits: 1 MiB uploads, 64 KiB JSON bodies, 5 shell commands."""
    srv = launch(
        tmp_path_factory.mktemp("small"),
        pool_size=1,
        max_upload_bytes=MiB,
        max_body_bytes=64 * 1024,
        max_shell_commands=5,
    )
    yield srv
    srv.stop()


def is_openai_error(body: Any) -> bool:
    err = body.get("error") if isinstance(body, dict) else None
    return isinstance(err, dict) and {"message", "type", "param", "code"} <= set(err)


# ------------------------------------------------------------------ raw HTTP helpers
def open_request(
    server: RunningServer, method: str, path: str, headers: dict[str, str]
) -> socket.socket:
    """Send a request line and headers (no body yet) on a fresh loopback connection."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def read_response(sock: socket.socket, timeout: float = 30) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP response (status, headers, body) within ``timeout`` seconds."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a response: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(status_line.split()[1]), headers, body


def upload_path(server: RunningServer, container_id: str = "cntr_x") -> str:
    return f"/exec-sessions/v1/containers/{container_id}/files"


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


# ------------------------------------------------------------------ bodies before auth/limits
def test_an_unauthenticated_upload_gets_its_401_before_the_body_is_sent(
    small: RunningServer,
) -> None:
    sock = open_request(
        small,
        "POST",
        upload_path(small),
        {"Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(400 * MiB)},
    )
    with sock:
        sock.sendall(b"x" * 1024)  # 1 KiB of the announced 400 MiB
        status, _, body = read_response(sock)
    assert status == 401
    assert is_openai_error(json.loads(body))


def test_an_unauthenticated_over_limit_upload_is_a_401_not_a_413(small: RunningServer) -> None:
    r = httpx.post(
        f"{small.api_base}/containers/cntr_x/files",
        files={"file": ("a.bin", b"x" * (2 * MiB))},
        headers={"Authorization": "Bearer wrong"},
        timeout=30,
    )
    assert r.status_code == 401
    assert r.json()["error"]["type"] == "authentication_error"


def test_an_oversized_upload_is_a_413_from_content_length_before_the_body(
    small: RunningServer,
) -> None:
    sock = open_request(
        small,
        "POST",
        upload_path(small),
        {
            **small.headers,
            "Content-Type": "multipart/form-data; boundary=x",
            "Content-Length": str(150 * MiB),
        },
    )
    with sock:
        status, _, body = read_response(sock)  # nothing of the body was sent
    assert status == 413
    err = json.loads(body)["error"]
    assert "max_upload_bytes" in err["message"] and err["param"] == "file"


def test_a_chunked_upload_is_refused_with_413_as_soon_as_it_passes_the_limit(
    small: RunningServer,
) -> None:
    sock = open_request(
        small,
        "POST",
        upload_path(small),
        {
            **small.headers,
            "Content-Type": "multipart/form-data; boundary=x",
            "Transfer-Encoding": "chunked",
        },
    )
    chunk = b"y" * (256 * 1024)
    status = 0
    with sock:
        with contextlib.suppress(OSError):
            for _ in range(64):  # up to 16 MiB offered; the limit is 1 MiB
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        status, _, body = read_response(sock)
    assert status == 413
    assert "max_upload_bytes" in json.loads(body)["error"]["message"]


def test_a_json_body_over_max_body_bytes_is_a_413_before_it_is_read(small: RunningServer) -> None:
    sock = open_request(
        small,
        "POST",
        "/exec-sessions/v1/containers",
        {**small.headers, "Content-Type": "application/json", "Content-Length": str(5 * MiB)},
    )
    with sock:
        status, _, body = read_response(sock)
    assert status == 413
    assert "max_body_bytes" in json.loads(body)["error"]["message"]


def test_memory_stays_flat_while_an_unauthenticated_client_sends_400_mib(
    small: RunningServer,
) -> None:
    pid = small.proc.pid
    before = rss_kib(pid)
    total, target, connections = 0, 400 * MiB, 0
    chunk = b"z" * MiB
    while total < target and connections < 2000:
        connections += 1
        sock = open_request(
            small,
            "POST",
            "/exec-sessions/v1/containers",
            {"Content-Type": "application/json", "Content-Length": str(target - total)},
        )
        with sock, contextlib.suppress(OSError):
            sock.settimeout(10)
            while total < target:
                sock.sendall(chunk)
                total += len(chunk)
    assert total >= target
    peak_growth_mib = (rss_kib(pid, "VmHWM") - before) / 1024
    sent = f"sent {total / MiB:.0f} MiB over {connections} connections"
    print(f"{sent}; peak RSS +{peak_growth_mib:.1f} MiB")
    assert peak_growth_mib < 64
    r = httpx.get(f"{small.api_base}/containers", headers=small.headers, timeout=30)
    assert r.status_code == 200  # and the server still serves


# ------------------------------------------------------------------ hostile JSON
def deep(n: int) -> str:
    return "[" * n + "]" * n


@pytest.mark.parametrize(
    ("path", "depth"),
    [
        ("/containers", 50_000),
        ("/containers/cntr_x/executions", 50_000),
        ("/containers/cntr_x/resolutions", 2_000),  # within that route's 4 KiB body limit
    ],
)
def test_json_nested_50000_deep_is_a_400_not_a_500(
    server: RunningServer, path: str, depth: int
) -> None:
    body = '{"name": ' + deep(depth) + "}"
    r = httpx.post(server.api_base + path, content=body, headers=server.headers, timeout=30)
    assert r.status_code == 400, r.text
    assert "nested too deeply" in r.json()["error"]["message"]


def test_json_nested_a_hundred_deep_in_metadata_is_a_400_naming_the_field(
    server: RunningServer,
) -> None:
    cid = server.http().post("containers", json={"name": "deep"}).json()["id"]
    body = {"code": "1", "metadata": {"x": json.loads(deep(100))}}
    r = server.http().post(f"containers/{cid}/executions", json=body)
    assert r.status_code == 400
    assert r.json()["error"]["param"].startswith("metadata.x")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"type": "python", "code": "\ud800"}, "code"),
        ({"type": "shell", "commands": ["echo ok", "echo \udfff"]}, "commands.1"),
    ],
)
def test_a_lone_surrogate_in_code_or_a_command_is_a_400_naming_the_field(
    server: RunningServer, body: dict[str, Any], param: str
) -> None:
    cid = server.http().post("containers", json={"name": "sur"}).json()["id"]
    r = server.http().post(
        f"containers/{cid}/executions",
        content=json.dumps(body),  # ASCII JSON with a \\ud800 escape
        headers={"Content-Type": "application/json"},
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


@pytest.mark.parametrize(
    ("path", "body", "param"),
    [
        ("executions", {"code": "1", "stream": "yes"}, "stream"),
        ("executions", {"code": "1", "timeout_ms": True}, "timeout_ms"),
        ("executions", {"code": "1", "timeout_ms": "5"}, "timeout_ms"),
        ("executions", {"commands": ["true"], "max_output_length": 1.5}, "max_output_length"),
    ],
)
def test_lax_types_are_400s_naming_the_field(
    server: RunningServer, path: str, body: dict[str, Any], param: str
) -> None:
    cid = server.http().post("containers", json={"name": "strict"}).json()["id"]
    r = server.http().post(f"containers/{cid}/{path}", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


def test_expiry_minutes_as_a_string_is_a_400_naming_the_field(server: RunningServer) -> None:
    r = server.http().post(
        "containers",
        json={"name": "m", "expires_after": {"anchor": "last_active_at", "minutes": "5"}},
    )
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "expires_after.minutes"


@pytest.mark.parametrize("after", ["99999999999999999999999", "-1", "1e3"])
def test_events_after_a_seq_out_of_range_is_a_400(server: RunningServer, after: str) -> None:
    r = httpx.get(f"{server.api_base}/events?after={after}", headers=server.headers, timeout=10)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "after"
    r = httpx.get(
        f"{server.api_base}/events", headers={**server.headers, "Last-Event-ID": after}, timeout=10
    )
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "Last-Event-ID"


def test_resolutions_are_typed_and_bounded(small: RunningServer) -> None:
    http = small.http()
    cid = http.post("containers", json={"name": "res"}).json()["id"]
    try:
        ok = http.post(f"containers/{cid}/resolutions", json={"origin": "created"})
        assert ok.status_code == 200 and ok.json() == {"ok": True}
        extra = http.post(f"containers/{cid}/resolutions", json={"origin": "created", "x": 1})
        assert extra.status_code == 400 and extra.json()["error"]["param"] == "x"
        long = http.post(
            f"containers/{cid}/resolutions", json={"origin": "created", "session_id": "s" * 600}
        )
        assert long.status_code == 400 and long.json()["error"]["param"] == "session_id"
        huge = http.post(
            f"containers/{cid}/resolutions",
            json={"origin": "created", "session_id": "s" * (5 * MiB)},
        )
        assert huge.status_code == 413
    finally:
        http.delete(f"containers/{cid}")


def test_a_shell_request_with_more_commands_than_the_cap_is_a_400(small: RunningServer) -> None:
    http = small.http()
    cid = http.post("containers", json={"name": "cap"}).json()["id"]
    try:
        r = http.post(f"containers/{cid}/executions", json={"commands": ["true"] * 6})
        assert r.status_code == 400
        err = r.json()["error"]
        assert err["param"] == "commands" and "max_shell_commands" in err["message"]
        ok = http.post(f"containers/{cid}/executions", json={"commands": ["true"] * 5})
        assert ok.status_code == 200 and ok.json()["status"] == "completed"
    finally:
        http.delete(f"containers/{cid}")


# ------------------------------------------------------------------ MCP
MCP_HEADERS = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def test_mcp_json_nested_50000_deep_is_a_400_not_a_500(server: RunningServer) -> None:
    body = '{"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": ' + deep(50_000) + "}"
    r = httpx.post(
        server.mcp_url, content=body, headers={**server.headers, **MCP_HEADERS}, timeout=30
    )
    assert r.status_code == 400, r.text
    assert "nested too deeply" in r.json()["error"]["message"]


def test_mcp_without_credentials_is_a_401_before_the_body(server: RunningServer) -> None:
    sock = open_request(
        server,
        "POST",
        "/exec-sessions/mcp",
        {**MCP_HEADERS, "Content-Length": str(100 * MiB)},
    )
    with sock:
        status, _, _ = read_response(sock)
    assert status == 401


@pytest.mark.parametrize(
    "path", ["/exec-sessions/mcp", "/exec-sessions/v1/containers"], ids=["mcp", "rest"]
)
def test_a_small_unauthenticated_body_is_refused_on_a_connection_that_stays_open(
    server: RunningServer, path: str
) -> None:
    # An MCP client that probes first (server/discover) and falls back to initialize sends its
    # second request on the same keep-alive connection: a server that closed it after the
    # first 401 with the body unread made that client see a bare ReadError instead of the 401.
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize"}).encode()
    headers = {**MCP_HEADERS, "Authorization": "Bearer wrong", "Content-Length": str(len(body))}
    head = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + body
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        for _ in range(2):  # the same connection, twice
            sock.sendall(request)
            status, answer_headers, answer = read_response(sock)
            assert status == 401, answer
            assert answer_headers.get("connection", "").lower() != "close"


async def test_mcp_timeout_seconds_1e306_is_a_clear_tool_error(server: RunningServer) -> None:
    headers = {"Authorization": f"Bearer {server.token}"}
    async with httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(30, read=90)) as http:
        transport = streamable_http_client(server.mcp_url, http_client=http)
        async with Client(transport, read_timeout_seconds=90) as client:
            result = await client.call_tool(
                "execute_python_code", {"code": "1", "timeout_seconds": 1e306}
            )
    assert result.is_error
    message = "\n".join(c.text for c in result.content if isinstance(c, TextContent))
    assert "timeout_seconds" in message and "86400" in message


# ------------------------------------------------------------------ logs
def test_a_token_in_the_query_string_never_reaches_the_log(server: RunningServer) -> None:
    start = len(server.log())
    for url in (
        f"{server.api_base}/no-such-route?token={server.token}",
        f"{server.api_base}/containers/cntr_missing?token={server.token}",
        f"{server.api_base}/containers?token=wrong-{server.token}",
    ):
        httpx.get(url, timeout=10)
    deadline = time.monotonic() + 10
    while "no-such-route" not in server.log()[start:] and time.monotonic() < deadline:
        time.sleep(0.05)
    new = server.log()[start:]
    assert "no-such-route" in new  # the requests were logged ...
    assert server.token not in new  # ... without the token


# ------------------------------------------------------------------ one registry per server
def test_two_servers_on_the_default_data_dir_do_not_collide(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    env = {"JUPYTER_DATA_DIR": str(tmp_path / "shared-jupyter-data")}
    first = start_server(data_dir="default", env=env)
    second = start_server(data_dir="default", env=env)
    a = first.http().post("containers", json={"name": "first"}).json()["id"]
    b = second.http().post("containers", json={"name": "second"}).json()["id"]
    assert [c["id"] for c in first.http().get("containers").json()["data"]] == [a]
    assert [c["id"] for c in second.http().get("containers").json()["data"]] == [b]
    run = first.http().post(f"containers/{a}/executions", json={"code": "import os; os.getcwd()"})
    assert run.json()["status"] == "completed", run.text
    roots = sorted(p.name for p in (tmp_path / "shared-jupyter-data").iterdir())
    assert roots == ["exec_sessions", "exec_sessions-2"]
    assert "exec_sessions-2" in second.log()


def test_a_data_dir_held_by_another_server_is_refused_naming_the_option(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    first = start_server(data_dir=tmp_path / "shared")
    with pytest.raises(RuntimeError) as info:
        start_server(data_dir=tmp_path / "shared")
    assert "--ExecSessionsApp.data_dir" in str(info.value)
    assert first.http().get("containers").status_code == 200


@pytest.mark.timeout(420)
def test_two_simultaneous_start_ups_both_end_well(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    env = {"JUPYTER_DATA_DIR": str(tmp_path / "jd")}
    results: list[RunningServer | BaseException] = []

    def start() -> None:
        try:
            # two start-ups at once on a shared 2-core machine: allow for slow imports
            results.append(start_server(data_dir="default", env=env, ready_timeout=240))
        except BaseException as e:
            results.append(e)

    threads = [threading.Thread(target=start) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    servers = [r for r in results if isinstance(r, RunningServer)]
    assert len(servers) == 2, results
    for srv in servers:
        assert srv.http().post("containers", json={"name": "x"}).status_code == 200
    for srv in servers:
        t0 = time.monotonic()
        srv.stop()
        assert srv.proc.returncode is not None
        assert time.monotonic() - t0 < 30
        assert "database is locked" not in srv.log()


def test_the_data_dir_lock_is_released_when_the_server_dies(tmp_path: Path) -> None:
    code = (
        "import sys, time; from pathlib import Path\n"
        "from jupyter_exec_sessions.extension.datadir import claim_data_dir\n"
        "claim_data_dir(sys.argv[1], Path('/nonexistent'))\n"
        "print('locked', flush=True); time.sleep(60)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "d")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        from jupyter_exec_sessions.extension.datadir import DataDirBusyError, claim_data_dir

        with pytest.raises(DataDirBusyError):
            claim_data_dir(str(tmp_path / "d"), tmp_path)
        holder.kill()
        holder.wait(timeout=10)
        claim_data_dir(str(tmp_path / "d"), tmp_path).release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=10)


# ------------------------------------------------------------------ files
def test_an_upload_under_an_existing_file_is_a_400_without_server_paths(
    server: RunningServer,
) -> None:
    http = server.http()
    cid = http.post("containers", json={"name": "parent-file"}).json()["id"]
    try:
        ok = http.post(f"containers/{cid}/files", files={"file": ("a", b"i am a file")})
        assert ok.status_code == 200 and ok.json()["path"] == "/mnt/data/a"
        r = http.post(
            f"containers/{cid}/files", files={"file": ("x", b"y")}, data={"path": "a/b.txt"}
        )
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == "path"
        assert str(server.data_dir) not in r.text and "/containers/" not in r.text
        listed = http.get(f"containers/{cid}/files").text
        assert str(server.data_dir) not in listed
    finally:
        http.delete(f"containers/{cid}")


@pytest.mark.timeout(600)
def test_a_directory_of_10001_files_keeps_every_uploaded_id(server: RunningServer) -> None:
    http = httpx.Client(base_url=server.api_base + "/", headers=server.headers, timeout=300)
    cid = http.post("containers", json={"name": "many"}).json()["id"]
    try:
        up = http.post(
            f"containers/{cid}/files",
            files={"file": ("u", b"uploaded")},
            data={"path": "zz/uploaded.txt"},  # walked after aa/: past the cap
        ).json()
        made = http.post(
            f"containers/{cid}/executions",
            json={
                "code": "import os\nos.makedirs('aa')\n"
                "for i in range(10_001):\n    open(f'aa/{i:05d}', 'w').close()"
            },
        )
        assert made.json()["status"] == "completed", made.text
        first = http.get(f"containers/{cid}/files?limit=100&order=asc").json()
        assert first["capped"] is True  # the walk stopped at its cap, and says so
        for _ in range(2):  # listing again (a new walk) forgets nothing either
            got = http.get(f"containers/{cid}/files/{up['id']}")
            assert got.status_code == 200, got.text
            assert (
                got.json()["source"] == "user" and got.json()["path"] == "/mnt/data/zz/uploaded.txt"
            )
            content = http.get(f"containers/{cid}/files/{up['id']}/content")
            assert content.content == b"uploaded"
            http.get(f"containers/{cid}/files?limit=1")
        # Paging goes through the registry the first page filled, not a new walk per page: a
        # file written between pages shows up only in the next listing.
        run = http.post(f"containers/{cid}/executions", json={"code": "open('new.txt','w')"})
        assert run.json()["status"] == "completed"
        ids: list[str] = []
        page = http.get(f"containers/{cid}/files?limit=100&order=asc").json()
        pages = 1
        while True:
            ids += [f["id"] for f in page["data"]]
            if not page["has_more"]:
                break
            page = http.get(
                f"containers/{cid}/files?limit=100&order=asc&after={page['last_id']}"
            ).json()
            pages += 1
            assert pages < 200  # bounded
        assert up["id"] in ids
        assert len(ids) == len(set(ids)) >= 10_000
    finally:
        http.delete(f"containers/{cid}")


_FIRST_START_FAILS = """
import os, sys
if not os.path.exists(sys.argv[2]):  # the first start dies, as one whose port was taken would
    open(sys.argv[2], "w").close()
    sys.exit(1)
os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", "-f", sys.argv[1]])
"""


def test_a_kernel_that_dies_while_starting_is_started_again_before_a_create_fails(
    start_server: Callable[..., RunningServer], tmp_path: Path
) -> None:
    spec = tmp_path / "jdata" / "kernels" / "flaky"
    spec.mkdir(parents=True)
    marker = tmp_path / "first-start-happened"
    argv = [sys.executable, "-c", _FIRST_START_FAILS, "{connection_file}", str(marker)]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "flaky", "language": "python"})
    )
    server = start_server(tmp=tmp_path, kernel_name="flaky", pool_size=0)
    with server.http() as http:
        created = http.post("containers", json={"name": "after-a-failed-start"})
        assert created.status_code == 200, created.text
        cid = created.json()["id"]
        ran = http.post(f"containers/{cid}/executions", json={"code": "1+1"})
    assert ran.status_code == 200 and ran.json()["status"] == "completed", ran.text
    assert marker.exists()  # the first start really failed
    assert "starting another kernel" in server.log()
