"""Sandboxed containers (sandbox=bwrap), tried from inside a container as an attacker would.

Every test runs code in a real container of a real server whose kernels are confined by
bubblewrap. There is no skip: on a machine without a working bwrap the server refuses to start
with ``sandbox=bwrap`` and these tests fail (``.ci/install-sandbox.sh`` installs it).
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from helpers import RunningServer, launch

HOSTS = {"allowed.test": "127.0.0.1", "denied.test": "127.0.0.1", "sub.allowed.test": "127.0.0.1"}


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"hello from {self.headers.get('Host')}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def web_port() -> Iterator[int]:
    """A plain HTTP server on the host's loopback (the names in HOSTS map to it)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield int(httpd.server_address[1])
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def sandboxed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server whose container kernels run under bubblewrap."""
    srv = launch(
        tmp_path_factory.mktemp("sbx"),
        sandbox="bwrap",
        pool_size=1,
        max_containers_per_user=50,
        sandbox_proxy_resolve=json.dumps(HOSTS),
    )
    yield srv
    srv.stop()


def create(server: RunningServer, **body: Any) -> dict[str, Any]:
    r = httpx.post(
        f"{server.api_base}/containers",
        headers=server.headers,
        json={"name": "sbx", **body},
        timeout=120,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def run(server: RunningServer, cid: str, **body: Any) -> dict[str, Any]:
    body.setdefault("type", "python")
    r = httpx.post(
        f"{server.api_base}/containers/{cid}/executions",
        headers=server.headers,
        json=body,
        timeout=180,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def stdout(execution: dict[str, Any]) -> str:
    assert execution["status"] == "completed", execution
    return "".join(o["text"] for o in execution["outputs"] if o.get("stream") == "stdout")


def probe(server: RunningServer, cid: str, code: str) -> Any:
    """Run ``code`` that prints one JSON value; return it."""
    return json.loads(stdout(run(server, cid, code=code)).strip().splitlines()[-1])


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for: {what}")
        time.sleep(0.1)


def host_pids_with(marker: str) -> list[int]:
    """Host pids of processes whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if marker.encode() in cmd and b"/proc/" not in cmd:
                found.append(int(entry))
    return found


def ancestors(pid: int) -> list[int]:
    out = []
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        out.append(pid)
    return out


def start_background_sleep(server: RunningServer, cid: str) -> tuple[str, int]:
    marker = f"{4000 + uuid.uuid4().int % 1000}.{uuid.uuid4().int % 10**6}"
    ex = run(server, cid, type="shell", commands=[f"sleep {marker} > /dev/null 2>&1 &"])
    assert ex["status"] == "completed", ex
    wait_until(lambda: bool(host_pids_with(f"sleep {marker}")), 30, "the background sleep")
    [pid] = host_pids_with(f"sleep {marker}")
    return marker, pid


# --------------------------------------------------------------------------- filesystem


def test_mnt_data_is_the_cwd_and_holds_the_uploaded_files(sandboxed: RunningServer) -> None:
    c = create(sandboxed)
    up = httpx.post(
        f"{sandboxed.api_base}/containers/{c['id']}/files",
        headers=sandboxed.headers,
        files={"file": ("data.csv", b"a,b\n1,2\n")},
        timeout=60,
    )
    assert up.status_code == 200, up.text
    assert up.json()["path"] == "/mnt/data/data.csv"
    seen = probe(
        sandboxed,
        c["id"],
        "import os, json; print(json.dumps([os.getcwd(), sorted(os.listdir('.')),"
        " open('data.csv').read()]))",
    )
    assert seen == ["/mnt/data", ["data.csv"], "a,b\n1,2\n"]
    info = c["exec_sessions"]["sandbox"]
    assert info["mode"] == "bwrap" and info["network"] == "disabled"
    assert info["memory"] in ("cgroup-v1", "cgroup-v2", "rlimit")


def test_code_cannot_reach_other_containers_registry_runtime_home_or_tokens(
    sandboxed: RunningServer,
) -> None:
    a = create(sandboxed, name="victim")
    httpx.post(
        f"{sandboxed.api_base}/containers/{a['id']}/files",
        headers=sandboxed.headers,
        files={"file": ("secret.txt", b"alice's secret")},
        timeout=60,
    ).raise_for_status()
    b = create(sandboxed, name="attacker")
    data_dir = sandboxed.data_dir
    runtime_dir = data_dir.parent / "runtime"
    home = os.path.expanduser("~")
    targets = {
        "other_container": str(data_dir / "containers" / a["id"] / "secret.txt"),
        "containers_dir": str(data_dir / "containers"),
        "registry": str(data_dir / "exec_sessions.sqlite"),
        "runtime_dir": str(runtime_dir),
        "data_dir": str(data_dir),
    }
    code = f"""
import glob, json, os
targets = {targets!r}
token = {sandboxed.token!r}
kernel_a = {a["exec_sessions"]["kernel_id"]!r}
found = {{name: os.path.exists(path) for name, path in targets.items()}}
leaks = []
for proc in glob.glob('/proc/[0-9]*'):
    for part in ('environ', 'cmdline'):
        try:
            if token.encode() in open(f'{{proc}}/{{part}}', 'rb').read():
                leaks.append(proc + '/' + part)
        except OSError:
            pass
conn = [p for p in glob.glob('/run/kernel/*.json') + glob.glob('/tmp/**/*.json', recursive=True)]
home_entries = sorted(os.listdir({home!r})) if os.path.isdir({home!r}) else []
print(json.dumps({{"found": found, "leaks": leaks, "conn": conn,
                   "env_token": any(token in v for v in os.environ.values()),
                   "home": os.path.expanduser('~'), "home_entries": home_entries,
                   "kernel_a": any(kernel_a in p for p in conn)}}))
"""
    seen = probe(sandboxed, b["id"], code)
    assert seen["found"] == dict.fromkeys(targets, False)
    assert seen["leaks"] == [] and seen["env_token"] is False
    assert seen["conn"] == ["/run/kernel/kernel.json"] and seen["kernel_a"] is False
    assert seen["home"] == "/tmp"
    # the server's home shows at most the directories leading to the Python environment
    assert set(seen["home_entries"]) <= {".pyenv", ".local", ".venv"}, seen["home_entries"]
    denied = run(
        sandboxed,
        b["id"],
        code=f"open({targets['registry']!r}, 'w').write('x')",
    )
    assert denied["status"] == "failed"


# --------------------------------------------------------------------------- network


def test_network_disabled_cannot_reach_a_listener_on_the_host_loopback(
    sandboxed: RunningServer, web_port: int
) -> None:
    c = create(sandboxed, network_policy={"type": "disabled"})
    assert c["exec_sessions"]["sandbox"]["network"] == "disabled"
    seen = probe(
        sandboxed,
        c["id"],
        f"""
import json, socket, urllib.request
out = {{}}
try:
    socket.create_connection(("127.0.0.1", {web_port}), timeout=3).close()
    out["direct"] = "connected"
except OSError as e:
    out["direct"] = type(e).__name__
try:
    urllib.request.urlopen("http://allowed.test:{web_port}/", timeout=5).read()
    out["proxy"] = "answered"
except Exception as e:
    out["proxy"] = type(e).__name__
print(json.dumps(out))
""",
    )
    assert seen["direct"] != "connected" and seen["proxy"] != "answered", seen


def test_allowlist_lets_allowed_hosts_through_the_proxy_and_refuses_others(
    sandboxed: RunningServer, web_port: int
) -> None:
    c = create(sandboxed, network_policy={"type": "allowlist", "allowed_domains": ["allowed.test"]})
    assert c["exec_sessions"]["sandbox"]["network"] == "allowlist"
    seen = probe(
        sandboxed,
        c["id"],
        f"""
import http.client, json, socket, urllib.error, urllib.request
out = {{}}
def get(url):
    try:
        return urllib.request.urlopen(url, timeout=10).read().decode()
    except urllib.error.HTTPError as e:
        return e.code
    except Exception as e:
        return type(e).__name__
out["allowed"] = get("http://allowed.test:{web_port}/")
out["subdomain"] = get("http://sub.allowed.test:{web_port}/")
out["denied"] = get("http://denied.test:{web_port}/")
def tunnel(host):
    conn = http.client.HTTPConnection("127.0.0.1", 3128, timeout=10)
    conn.set_tunnel(host, {web_port})
    try:
        conn.request("GET", "/")
        return conn.getresponse().read().decode()
    except OSError as e:
        return str(e)
out["connect_allowed"] = tunnel("allowed.test")
out["connect_denied"] = tunnel("denied.test")
try:
    socket.create_connection(("127.0.0.1", {web_port}), timeout=3).close()
    out["direct"] = "connected"
except OSError as e:
    out["direct"] = type(e).__name__
print(json.dumps(out))
""",
    )
    assert seen["allowed"] == f"hello from allowed.test:{web_port}"
    assert seen["subdomain"] == f"hello from sub.allowed.test:{web_port}"
    assert seen["denied"] == 403
    assert seen["connect_allowed"] == f"hello from allowed.test:{web_port}"
    assert "403" in seen["connect_denied"]
    assert seen["direct"] != "connected"


# --------------------------------------------------------------------------- memory


def test_exceeding_memory_limit_fails_with_a_named_error_then_state_reset(
    sandboxed: RunningServer,
) -> None:
    c = create(sandboxed, memory_limit="1g")
    assert c["memory_limit"] == "1g"
    assert c["exec_sessions"]["sandbox"]["memory"] in ("cgroup-v1", "cgroup-v2")
    run(sandboxed, c["id"], code="kept = 41")
    boom = run(
        sandboxed, c["id"], code="x = bytearray(2 * 1024**3)\nx[::4096] = b'1' * len(x[::4096])"
    )
    assert boom["status"] == "failed", boom
    [err] = [o for o in boom["outputs"] if o["type"] == "error"]
    assert err["name"] == "KernelDiedError"
    assert "memory limit 1g exceeded" in err["value"]
    after = run(sandboxed, c["id"], code="print('kept' in globals())")
    assert after["state_reset"] is True
    assert stdout(after).strip() == "False"
    again = run(sandboxed, c["id"], code="print(1 + 1)")
    assert stdout(again).strip() == "2" and again["state_reset"] is False


def test_other_containers_are_untouched_by_one_exceeding_its_memory_limit(
    sandboxed: RunningServer,
) -> None:
    calm = create(sandboxed)
    run(sandboxed, calm["id"], code="state = 'still here'")
    greedy = create(sandboxed, memory_limit="1g")
    boom = run(sandboxed, greedy["id"], code="x = bytearray(3 * 1024**3)")
    assert boom["status"] == "failed"
    after = run(sandboxed, calm["id"], code="print(state)")
    assert stdout(after).strip() == "still here" and after["state_reset"] is False


# --------------------------------------------------------------------------- processes


def test_a_background_shell_process_dies_with_its_killed_kernel(sandboxed: RunningServer) -> None:
    c = create(sandboxed)
    marker, sleep_pid = start_background_sleep(sandboxed, c["id"])
    kernel_pids = [
        p
        for p in ancestors(sleep_pid)
        if b"ipykernel_launcher" in Path(f"/proc/{p}/cmdline").read_bytes()
    ]
    assert kernel_pids, "the sleep runs below the kernel"
    os.kill(kernel_pids[0], signal.SIGKILL)
    wait_until(lambda: not host_pids_with(f"sleep {marker}"), 30, "the sleep to die")
    after = run(sandboxed, c["id"], code="print('back')")
    assert stdout(after).strip() == "back" and after["state_reset"] is True


@pytest.mark.timeout(600)  # two server starts in a row
def test_a_background_shell_process_is_gone_after_a_server_sigkill_and_restart(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    tmp = tmp_path_factory.mktemp("crash")
    # two server starts in a row: generous start-up bounds for a busy machine
    first = launch(tmp, sandbox="bwrap", pool_size=0, ready_timeout=240)
    try:
        c = create(first)
        marker, _ = start_background_sleep(first, c["id"])
        first.proc.send_signal(signal.SIGKILL)
        first.proc.wait(timeout=30)
    finally:
        first.stop()
    second = launch(
        tmp,
        sandbox="bwrap",
        pool_size=0,
        data_dir=first.data_dir,
        token=first.token,
        ready_timeout=240,
    )
    try:
        wait_until(lambda: not host_pids_with(f"sleep {marker}"), 30, "the sleep to be gone")
        after = run(second, c["id"], code="print('again')")
        assert stdout(after).strip() == "again" and after["state_reset"] is True
    finally:
        second.stop()


# --------------------------------------------------------------------------- requests


def test_an_invalid_network_policy_is_a_400(sandboxed: RunningServer) -> None:
    for bad in (
        {"type": "open"},
        {"type": "allowlist"},
        {"type": "allowlist", "allowed_domains": []},
    ):
        r = httpx.post(
            f"{sandboxed.api_base}/containers",
            headers=sandboxed.headers,
            json={"name": "x", "network_policy": bad},
        )
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"].startswith("network_policy")


def test_a_network_policy_without_a_sandbox_is_refused_clearly(
    start_server: Callable[..., RunningServer],
) -> None:
    plain = start_server(sandbox="none", pool_size=0)
    r = httpx.post(
        f"{plain.api_base}/containers",
        headers=plain.headers,
        json={"name": "x", "network_policy": {"type": "disabled"}},
    )
    assert r.status_code == 400
    assert "sandbox=none" in r.json()["error"]["message"]
    ok = httpx.post(
        f"{plain.api_base}/containers",
        headers=plain.headers,
        json={"name": "x", "memory_limit": "4g"},
        timeout=120,
    )
    assert ok.status_code == 200
    assert ok.json()["exec_sessions"]["sandbox"] == {
        "mode": "none",
        "memory": None,
        "network": "host",
    }
