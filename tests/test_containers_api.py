"""The OpenAI-compatible containers API, driven by the official openai SDK."""

from __future__ import annotations

import functools
import io
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx2 as httpx
import openai
import pytest
from helpers import (
    RunningServer,
    ServerLauncher,
    list_kernel_ids,
    list_kernels,
    read_events,
    wait_until,
)


def kernel_ids(server: RunningServer) -> set[str]:
    """Ids of the server's kernels (``GET /api/kernels``): containers' and the pool's."""
    return list_kernel_ids(f"{server.url}api/kernels", server.headers)


def prepared_pool_kernels(server: RunningServer, besides: str) -> set[str]:
    """Kernels other than ``besides`` that are idle with nothing on their channels for 1 s.

    A pool kernel being started and prepared (``kernel_info``, helper set-up, warm-up cell)
    reports activity every few ms; one that is ready in the pool is quiet. Being listed alone
    does not make it ready: a create that comes then waits for it, and is not from the pool.
    """
    listing = list_kernels(f"{server.url}api/kernels", server.headers)
    now = datetime.now(timezone.utc)
    return {
        k["id"]
        for k in listing
        if k["id"] != besides
        and k["execution_state"] == "idle"
        and now - datetime.fromisoformat(k["last_activity"].replace("Z", "+00:00"))
        > timedelta(seconds=1)
    }


def mentions(container_id: str) -> Callable[[list[dict[str, Any]]], bool]:
    """A ``read_events`` condition: some event is about ``container_id``."""
    return lambda events: any(e["container_id"] == container_id for e in events)


def sdk(server: RunningServer, token: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api_base, api_key=token or server.token, max_retries=0)


@pytest.mark.kernels("local", "gateway")
def test_openai_sdk_drives_the_whole_container_lifecycle(server: RunningServer) -> None:
    client = sdk(server)
    tag = f"life-{time.monotonic_ns()}"
    created = client.containers.create(
        name=tag, expires_after={"anchor": "last_active_at", "minutes": 30}, memory_limit="4g"
    )
    assert created.id.startswith("cntr_") and len(created.id) >= 5 + 32
    assert created.object == "container"
    assert created.status == "running"
    assert created.name == tag
    assert created.expires_after is not None and created.expires_after.minutes == 30
    assert created.memory_limit == "4g"
    extra = created.model_extra or {}
    assert extra["exec_sessions"]["kernel_id"]

    got = client.containers.retrieve(created.id)
    assert got.id == created.id and got.last_active_at is not None
    assert got.last_active_at >= created.created_at

    listed = client.containers.list(name=tag)
    assert [c.id for c in listed.data] == [created.id]

    client.containers.delete(created.id)  # the SDK returns None for a delete
    with pytest.raises(openai.NotFoundError):
        client.containers.retrieve(created.id)


def test_listing_pages_through_every_container_with_cursors(server: RunningServer) -> None:
    client = sdk(server)
    tag = f"page-{time.monotonic_ns()}"
    ids = [client.containers.create(name=tag).id for _ in range(5)]

    first = client.containers.list(name=tag, limit=2)
    assert [c.id for c in first.data] == ids[::-1][:2]  # default order: newest first
    assert first.has_more is True
    seen = [c.id for c in client.containers.list(name=tag, limit=2)]  # SDK auto-paginates
    assert seen == ids[::-1]

    asc = client.containers.list(name=tag, limit=2, order="asc")
    assert [c.id for c in asc.data] == ids[:2]
    after = client.containers.list(name=tag, limit=100, order="asc", after=ids[1])
    assert [c.id for c in after.data] == ids[2:]
    assert after.has_more is False

    raw = httpx.get(f"{server.api_base}/containers?name={tag}&limit=1", headers=server.headers)
    body = raw.json()
    assert body["object"] == "list"
    assert body["first_id"] == body["last_id"] == ids[-1]
    assert body["has_more"] is True
    for cid in ids:
        client.containers.delete(cid)


@pytest.mark.parametrize("limit", ["0", "101", "-1", "abc"])
def test_a_limit_outside_1_to_100_is_a_400_naming_limit(server: RunningServer, limit: str) -> None:
    r = httpx.get(f"{server.api_base}/containers?limit={limit}", headers=server.headers)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "limit"
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_limit_100_is_accepted(server: RunningServer) -> None:
    r = httpx.get(f"{server.api_base}/containers?limit=100", headers=server.headers)
    assert r.status_code == 200


@pytest.mark.kernels("local", "gateway")
def test_files_round_trip_through_the_openai_sdk(server: RunningServer) -> None:
    client = sdk(server)
    c = client.containers.create(name="files")
    payload = b"a,b\n1,2\n" + bytes(range(256))
    f = client.containers.files.create(c.id, file=("data.csv", io.BytesIO(payload)))
    assert f.id.startswith("cfile_")
    assert f.object == "container.file"
    assert f.container_id == c.id
    assert f.bytes == len(payload)
    assert f.source == "user"
    assert f.path.endswith("/data.csv") and f.path.startswith("/")

    listed = client.containers.files.list(c.id)
    assert [x.id for x in listed.data] == [f.id]
    assert client.containers.files.retrieve(f.id, container_id=c.id).path == f.path
    content = client.containers.files.content.retrieve(f.id, container_id=c.id)
    assert content.read() == payload

    client.containers.files.delete(f.id, container_id=c.id)
    assert client.containers.files.list(c.id).data == []
    with pytest.raises(openai.NotFoundError):
        client.containers.files.retrieve(f.id, container_id=c.id)
    client.containers.delete(c.id)


@pytest.mark.kernels("local", "gateway")
def test_files_written_by_code_are_listed_with_source_assistant(server: RunningServer) -> None:
    client = sdk(server)
    c = client.containers.create(name="assistant-files")
    r = httpx.post(
        f"{server.api_base}/containers/{c.id}/executions",
        headers=server.headers,
        json={
            "code": "import os\nos.makedirs('out', exist_ok=True)\n"
            "open('out/result.txt','w').write('hello')"
        },
        timeout=60,
    )
    assert r.status_code == 200, r.text
    files = client.containers.files.list(c.id).data
    by_path = {x.path.removeprefix("/mnt/data/"): x for x in files}
    assert by_path["out/result.txt"].source == "assistant"
    assert by_path["out/result.txt"].bytes == 5
    fid = by_path["out/result.txt"].id
    assert client.containers.files.content.retrieve(fid, container_id=c.id).read() == b"hello"
    client.containers.delete(c.id)


@pytest.mark.kernels("local", "gateway")
def test_deleting_a_container_shuts_its_kernel_and_removes_its_directory(
    server: RunningServer,
) -> None:
    client = sdk(server)
    c = client.containers.create(name="gone")
    kernel_id = (c.model_extra or {})["exec_sessions"]["kernel_id"]
    client.containers.files.create(c.id, file=("x.txt", io.BytesIO(b"x")))
    workdir = server.containers_root / c.id
    assert (workdir / "x.txt").read_bytes() == b"x"
    client.containers.delete(c.id)
    wait_until(
        lambda: kernel_id not in kernel_ids(server) and not workdir.exists(),
        60,  # remote kernels: removed through a pool kernel, which may need a cold start
        "the kernel and the directory to go",
    )


def test_pool_kernels_make_create_warm_and_are_not_containers(start_server: ServerLauncher) -> None:
    srv = start_server(pool_size=1)
    client = sdk(srv)
    # the pool's kernel exists before any container does, and is not a container
    wait_until(lambda: kernel_ids(srv), 30, "the pool to start a kernel")
    assert client.containers.list().data == []
    # once the pool is warm, a create takes its kernel: retried until the pool has refilled
    seen: list[dict[str, Any]] = []
    last = 0
    for _ in range(10):
        c = client.containers.create(name=f"warm-{len(seen)}")
        events = read_events(
            srv.api_base,
            srv.headers,
            last_event_id=last,
            until=mentions(c.id),
        )
        last = events[-1]["seq"]
        created = next(e for e in events if e["container_id"] == c.id)
        assert created["type"] == "container.created"
        seen.append(created["data"])
        cold_kernel = (c.model_extra or {})["exec_sessions"]["kernel_id"]
        client.containers.delete(c.id)
        if created["data"]["from_pool"]:
            break
        wait_until(
            functools.partial(prepared_pool_kernels, srv, cold_kernel), 60, "the pool refill"
        )
    assert seen[-1]["from_pool"] is True, seen
    assert float(seen[-1]["latency_ms"]) > 0  # measured (its size is for benchmarks/)
    # the pool refills (after its short delay) with a kernel that is still not a container
    wait_until(lambda: kernel_ids(srv), 30, "the pool to refill")
    assert client.containers.list().data == []


# --------------------------------------------------------------------------- errors
def test_missing_or_wrong_token_is_a_401_in_openai_shape(server: RunningServer) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        r = httpx.get(f"{server.api_base}/containers", headers=headers)
        assert r.status_code == 401
        assert r.json()["error"]["type"] == "authentication_error"
    with pytest.raises(openai.AuthenticationError):
        sdk(server, token="wrong").containers.list()


def test_jupyter_token_forms_work_as_well_as_bearer(server: RunningServer) -> None:
    r = httpx.get(
        f"{server.api_base}/containers", headers={"Authorization": f"token {server.token}"}
    )
    assert r.status_code == 200
    r = httpx.get(f"{server.api_base}/containers?token={server.token}")
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x", "memory_limit": "3g"}, "memory_limit"),
        (
            {"name": "x", "expires_after": {"anchor": "created_at", "minutes": 5}},
            "expires_after.anchor",
        ),
        (
            {"name": "x", "expires_after": {"anchor": "last_active_at", "minutes": 0}},
            "expires_after.minutes",
        ),
        ({"name": "x", "bogus": 1}, "bogus"),
        ({"name": "x", "file_ids": "file-123"}, "file_ids"),
        ({"name": 5}, "name"),
    ],
)
def test_bad_create_bodies_are_400s_naming_the_field(
    server: RunningServer, body: dict[str, object], param: str
) -> None:
    r = httpx.post(f"{server.api_base}/containers", headers=server.headers, json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error"
    assert err["param"] == param
    assert err["message"]


def test_a_body_that_is_not_json_is_a_400(server: RunningServer) -> None:
    r = httpx.post(
        f"{server.api_base}/containers",
        headers={**server.headers, "Content-Type": "application/json"},
        content=b"{not json",
    )
    assert r.status_code == 400
    assert "JSON" in r.json()["error"]["message"]


def test_unknown_ids_are_404s_in_openai_shape(server: RunningServer) -> None:
    client = sdk(server)
    with pytest.raises(openai.NotFoundError) as e:
        client.containers.retrieve("cntr_doesnotexist")
    assert "cntr_doesnotexist" in str(e.value)
    c = client.containers.create(name="nf")
    with pytest.raises(openai.NotFoundError):
        client.containers.files.retrieve("cfile_nope", container_id=c.id)
    with pytest.raises(openai.NotFoundError):
        client.containers.files.content.retrieve("cfile_nope", container_id=c.id)
    with pytest.raises(openai.NotFoundError):
        client.containers.files.delete("cfile_nope", container_id=c.id)
    r = httpx.get(f"{server.api_base}/no/such/route", headers=server.headers)
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    client.containers.delete(c.id)


@pytest.mark.parametrize("name", ["../../x", "/etc/passwd", "a/../../b", "bad\x00name", "..", ""])
def test_upload_names_cannot_escape_the_container_directory(
    server: RunningServer, name: str
) -> None:
    c = sdk(server).containers.create(name="traversal")
    r = httpx.post(
        f"{server.api_base}/containers/{c.id}/files",
        headers=server.headers,
        files={"file": ("placeholder", b"data")},
        data={"path": name} if name else {"path": " "},
    )
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "file"
    assert not (server.containers_root / "x").exists()
    assert not (server.root_dir.parent / "x").exists()
    sdk(server).containers.delete(c.id)


def test_upload_via_multipart_filename_with_traversal_is_refused(server: RunningServer) -> None:
    c = sdk(server).containers.create(name="traversal2")
    r = httpx.post(
        f"{server.api_base}/containers/{c.id}/files",
        headers=server.headers,
        files={"file": ("../../escape.txt", b"data")},
    )
    assert r.status_code == 400
    assert "escape" in r.json()["error"]["message"]
    sdk(server).containers.delete(c.id)


def test_upload_without_a_file_part_is_a_400_and_an_unknown_file_id_a_404(
    server: RunningServer,
) -> None:
    c = sdk(server).containers.create(name="nofile")
    r = httpx.post(f"{server.api_base}/containers/{c.id}/files", headers=server.headers)
    assert r.status_code == 400 and r.json()["error"]["param"] == "file"
    r = httpx.post(
        f"{server.api_base}/containers/{c.id}/files",
        headers=server.headers,
        json={"file_id": "file-abc"},
    )
    assert r.status_code == 404 and r.json()["error"]["param"] == "file_id"
    sdk(server).containers.delete(c.id)


# --------------------------------------------------------------------------- limits
def test_limits_answer_429_with_retry_after_and_413_naming_the_limit(
    start_server: ServerLauncher,
) -> None:
    srv = start_server(pool_size=1, max_containers_per_user=2, max_upload_bytes=1024)
    client = sdk(srv)
    a = client.containers.create(name="a")
    client.containers.create(name="b")
    r = httpx.post(f"{srv.api_base}/containers", headers=srv.headers, json={"name": "c"})
    assert r.status_code == 429
    assert int(r.headers["retry-after"]) >= 1
    assert "max_containers_per_user" in r.json()["error"]["message"]
    assert r.json()["error"]["type"] == "rate_limit_error"

    r = httpx.post(
        f"{srv.api_base}/containers/{a.id}/files",
        headers=srv.headers,
        files={"file": ("big.bin", b"x" * 2048)},
    )
    assert r.status_code == 413
    assert "max_upload_bytes" in r.json()["error"]["message"]
    r = httpx.post(
        f"{srv.api_base}/containers/{a.id}/files",
        headers=srv.headers,
        files={"file": ("huge.bin", b"x" * 200_000)},
    )
    assert r.status_code == 413
    client.containers.delete(a.id)
    assert client.containers.create(name="c").name == "c"  # freed by the delete


# --------------------------------------------------------------------------- users
def test_another_users_container_is_a_404_and_invisible(start_server: ServerLauncher) -> None:
    srv = start_server(
        pool_size=1,
        extra_args=["--ServerApp.identity_provider_class=idp.MultiUserIdentityProvider"],
    )
    alice, bob = sdk(srv, "alice-secret"), sdk(srv, "bob-secret")
    mine = alice.containers.create(name="alice-box")
    f = alice.containers.files.create(mine.id, file=("secret.txt", io.BytesIO(b"s3cret")))
    assert [c.id for c in alice.containers.list().data] == [mine.id]
    assert bob.containers.list().data == []
    with pytest.raises(openai.NotFoundError):
        bob.containers.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        bob.containers.files.list(mine.id)
    with pytest.raises(openai.NotFoundError):
        bob.containers.files.content.retrieve(f.id, container_id=mine.id)
    with pytest.raises(openai.NotFoundError):
        bob.containers.delete(mine.id)
    r = httpx.post(
        f"{srv.api_base}/containers/{mine.id}/executions",
        headers={"Authorization": "Bearer bob-secret"},
        json={"code": "1+1"},
    )
    assert r.status_code == 404
    assert alice.containers.retrieve(mine.id).id == mine.id


def test_a_user_sees_only_their_own_events(start_server: ServerLauncher) -> None:
    srv = start_server(
        pool_size=1,
        extra_args=["--ServerApp.identity_provider_class=idp.MultiUserIdentityProvider"],
    )
    alice_h = {"Authorization": "Bearer alice-secret"}
    bob_h = {"Authorization": "Bearer bob-secret"}
    a = sdk(srv, "alice-secret").containers.create(name="a")
    b = sdk(srv, "bob-secret").containers.create(name="b")
    ev_b = read_events(
        srv.api_base, bob_h, until=lambda ev: any(e["container_id"] == b.id for e in ev)
    )
    assert {e["container_id"] for e in ev_b} == {b.id}
    ev_a = read_events(
        srv.api_base, alice_h, until=lambda ev: any(e["container_id"] == a.id for e in ev)
    )
    assert {e["container_id"] for e in ev_a} == {a.id}


# --------------------------------------------------------------------------- expiry
def test_expired_containers_stay_visible_and_refuse_use(start_server: ServerLauncher) -> None:
    srv = start_server(pool_size=1, minute_seconds=0.5, reaper_interval=0.2)
    client = sdk(srv)
    c = client.containers.create(
        name="short", expires_after={"anchor": "last_active_at", "minutes": 4}
    )
    kernel_id = (c.model_extra or {})["exec_sessions"]["kernel_id"]
    client.containers.files.create(c.id, file=("keep.txt", io.BytesIO(b"k")))
    events = read_events(
        srv.api_base,
        srv.headers,
        until=lambda ev: any(e["type"] == "container.expired" for e in ev),
        timeout=20,
    )
    assert [e["container_id"] for e in events if e["type"] == "container.expired"] == [c.id]
    # the reaper expired it: retrieve and list still work and say so, without reviving it
    assert client.containers.retrieve(c.id).status == "expired"
    assert client.containers.retrieve(c.id).status == "expired"
    assert [x.status for x in client.containers.list(name="short").data] == ["expired"]
    for call in (
        lambda: client.containers.files.list(c.id),
        lambda: client.containers.files.create(c.id, file=("y.txt", io.BytesIO(b"y"))),
    ):
        with pytest.raises(openai.BadRequestError) as e:
            call()
        assert e.value.body["message"] == "Container is expired."  # type: ignore[index]
    r = httpx.post(
        f"{srv.api_base}/containers/{c.id}/executions", headers=srv.headers, json={"code": "1"}
    )
    assert r.status_code == 400 and r.json()["error"]["message"] == "Container is expired."
    wait_until(lambda: kernel_id not in kernel_ids(srv), 20, "the reaper to stop the kernel")
    client.containers.delete(c.id)
    with pytest.raises(openai.NotFoundError):
        client.containers.retrieve(c.id)


def test_activity_postpones_expiry(start_server: ServerLauncher) -> None:
    srv = start_server(pool_size=1, minute_seconds=0.5, reaper_interval=0.1)
    client = sdk(srv)
    c = client.containers.create(
        name="busy", expires_after={"anchor": "last_active_at", "minutes": 2}
    )
    start = time.monotonic()
    while time.monotonic() - start < 2.5:  # 2.5 s > 1 s lifetime, but touched every 0.2 s
        assert client.containers.retrieve(c.id).status == "running"
        time.sleep(0.2)  # the pace of the activity under test, not a synchronisation


# --------------------------------------------------------------------------- restart
def test_containers_and_files_survive_a_server_restart(start_server: ServerLauncher) -> None:
    first = start_server(pool_size=1)
    client = sdk(first)
    boxes = [client.containers.create(name=f"durable-{i}") for i in range(3)]
    uploaded = client.containers.files.create(boxes[0].id, file=("keep.csv", io.BytesIO(b"1,2")))
    r = httpx.post(
        f"{first.api_base}/containers/{boxes[1].id}/executions",
        headers=first.headers,
        json={
            "code": "x = 42\nopen('made.txt', 'w').write('by code')",
            "metadata": {"session_id": "s1", "turn_id": "t1"},
        },
        timeout=60,
    )
    assert r.status_code == 200
    data_dir: Path = first.data_dir
    first.stop()

    second = start_server(pool_size=1, data_dir=data_dir, token=first.token)
    client2 = sdk(second)
    listed = {c.id: c for c in client2.containers.list(limit=100)}
    assert set(listed) == {b.id for b in boxes}
    assert all(c.status == "running" for c in listed.values())
    info = (listed[boxes[1].id].model_extra or {})["exec_sessions"]
    assert info["executions"] == 1 and info["sessions"] == 1 and info["turns"] == 1
    files = client2.containers.files.list(boxes[0].id).data
    assert [f.id for f in files] == [uploaded.id]
    assert (
        client2.containers.files.content.retrieve(uploaded.id, container_id=boxes[0].id).read()
        == b"1,2"
    )
    # the interpreter state did not survive; the first use says so
    r = httpx.post(
        f"{second.api_base}/containers/{boxes[1].id}/executions",
        headers=second.headers,
        json={"code": "print(open('made.txt').read()); 'x' in globals()"},
        timeout=60,
    )
    body = r.json()
    assert body["state_reset"] is True
    assert body["outputs"][0]["text"] == "by code\n"
    assert body["outputs"][-1]["data"]["text/plain"] == "False"
    again = httpx.post(
        f"{second.api_base}/containers/{boxes[1].id}/executions",
        headers=second.headers,
        json={"code": "1"},
        timeout=60,
    ).json()
    assert again["state_reset"] is False
    events = read_events(
        second.api_base,
        second.headers,
        until=lambda ev: any(e["type"] == "kernel.restarted" for e in ev),
    )
    restarted = [e for e in events if e["type"] == "kernel.restarted"]
    assert restarted[0]["data"]["reason"] == "server_restart"
    # seq keeps growing across the restart, so Last-Event-ID resumes correctly
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


# --------------------------------------------------------------------------- events
def test_events_feed_is_resumable_with_last_event_id(server: RunningServer) -> None:
    client = sdk(server)
    c1 = client.containers.create(name="ev1")
    all_events = read_events(
        server.api_base,
        server.headers,
        until=lambda ev: any(e["container_id"] == c1.id for e in ev),
    )
    mark = all_events[-1]["seq"]
    c2 = client.containers.create(name="ev2")
    client.containers.delete(c2.id)
    resumed = read_events(
        server.api_base,
        server.headers,
        last_event_id=mark,
        until=lambda ev: any(
            e["type"] == "container.deleted" and e["container_id"] == c2.id for e in ev
        ),
    )
    assert all(e["seq"] > mark for e in resumed)
    kinds = [(e["type"], e["container_id"]) for e in resumed]
    assert kinds.index(("container.created", c2.id)) < kinds.index(("container.deleted", c2.id))
    for e in resumed:
        assert {"id", "seq", "type", "created_at", "container_id", "data"} <= set(e)
    client.containers.delete(c1.id)


def test_a_drained_pool_grows_within_its_bound_and_shrinks_back_when_idle(start_server) -> None:  # type: ignore[no-untyped-def]
    # idle time long enough to see the grown pool before it shrinks, even on a loaded machine
    srv = start_server(pool_size=1, pool_max_size=3, pool_idle_seconds=15.0)
    client = sdk(srv)

    def pool_kernels() -> int:
        kernels = httpx.get(f"{srv.url}api/kernels", headers=srv.headers).json()
        page = httpx.get(f"{srv.api_base}/containers?limit=100", headers=srv.headers).json()
        owned = {c["exec_sessions"]["kernel_id"] for c in page["data"]}
        return len([k for k in kernels if k["id"] not in owned])

    # four creates at once drain a pool of one: it grows, but never past pool_max_size
    with ThreadPoolExecutor(4) as ex:
        ids = list(ex.map(lambda i: client.containers.create(name=f"burst-{i}").id, range(4)))
    deadline = time.monotonic() + 120
    while pool_kernels() < 2:
        assert time.monotonic() < deadline, "the pool did not grow after being drained"
        time.sleep(0.1)
    assert pool_kernels() <= 3
    # idle, it shrinks back to pool_size
    deadline = time.monotonic() + 180
    while pool_kernels() > 1:
        assert time.monotonic() < deadline, "the idle pool did not shrink back"
        time.sleep(0.1)
    for cid in ids:
        client.containers.delete(cid)
