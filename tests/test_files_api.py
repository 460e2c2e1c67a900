"""The Files API and copying stored files into containers, driven by the official openai SDK."""

from __future__ import annotations

import io
from collections.abc import Callable

import httpx2 as httpx
import openai
import pytest
from helpers import RunningServer


def sdk(server: RunningServer, token: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.api_base, api_key=token or server.token, max_retries=0)


def run(server: RunningServer, container_id: str, code: str) -> str:
    r = httpx.post(
        f"{server.api_base}/containers/{container_id}/executions",
        headers=server.headers,
        json={"code": code},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    return "".join(o.get("text", "") for o in r.json()["outputs"] if o["type"] == "logs")


def test_files_create_list_retrieve_content_delete_with_the_sdk(server: RunningServer) -> None:
    client = sdk(server)
    f = client.files.create(file=("notes.txt", io.BytesIO(b"hello files")), purpose="user_data")
    assert f.id.startswith("file-") and f.object == "file"
    assert f.filename == "notes.txt" and f.bytes == 11 and f.purpose == "user_data"
    assert f.created_at > 0

    assert client.files.retrieve(f.id).filename == "notes.txt"
    assert client.files.content(f.id).read() == b"hello files"
    listed = [x.id for x in client.files.list()]
    assert f.id in listed
    g = client.files.create(file=("b.bin", io.BytesIO(b"\x00\x01")), purpose="assistants")
    first = client.files.list(limit=1)
    assert [x.id for x in first.data] == [g.id] and first.has_more is True  # newest first
    assert [x.id for x in client.files.list(purpose="assistants")] == [g.id]

    deleted = client.files.delete(f.id)
    assert deleted.id == f.id and deleted.deleted is True
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(f.id)
    with pytest.raises(openai.NotFoundError):
        client.files.content(f.id)
    client.files.delete(g.id)


def test_containers_create_with_file_ids_copies_them_in(server: RunningServer) -> None:
    client = sdk(server)
    a = client.files.create(file=("data.csv", io.BytesIO(b"x,y\n1,2\n")), purpose="user_data")
    b = client.files.create(file=("more.txt", io.BytesIO(b"more")), purpose="user_data")
    c = client.containers.create(name="with-files", file_ids=[a.id, b.id])
    files = {x.path: x for x in client.containers.files.list(c.id)}
    assert set(files) == {"/mnt/data/data.csv", "/mnt/data/more.txt"}
    assert files["/mnt/data/data.csv"].source == "user"
    assert files["/mnt/data/data.csv"].bytes == 8
    assert run(server, c.id, "print(open('data.csv').read(), end='')") == "x,y\n1,2\n"

    d = client.containers.create(name="later")
    added = client.containers.files.create(d.id, file_id=b.id)
    assert added.path == "/mnt/data/more.txt" and added.source == "user"
    content = client.containers.files.content.retrieve(added.id, container_id=d.id).read()
    assert content == b"more"
    for cid in (c.id, d.id):
        client.containers.delete(cid)
    client.files.delete(a.id)
    client.files.delete(b.id)


def test_unknown_file_ids_are_404s_naming_file_ids_and_create_nothing(
    server: RunningServer,
) -> None:
    client = sdk(server)
    before = {c.id for c in client.containers.list(limit=100)}
    with pytest.raises(openai.NotFoundError) as info:
        client.containers.create(name="nope", file_ids=["file-doesnotexist"])
    assert info.value.body is not None and info.value.body["param"] == "file_ids"  # type: ignore[index]
    assert {c.id for c in client.containers.list(limit=100)} == before


def test_stored_files_belong_to_their_user(start_server: Callable[..., RunningServer]) -> None:
    srv = start_server(
        pool_size=1,
        extra_args=["--ServerApp.identity_provider_class=idp.MultiUserIdentityProvider"],
    )
    alice, bob = sdk(srv, "alice-secret"), sdk(srv, "bob-secret")
    f = alice.files.create(file=("secret.txt", io.BytesIO(b"s3cret")), purpose="user_data")
    assert list(bob.files.list()) == []
    with pytest.raises(openai.NotFoundError):
        bob.files.retrieve(f.id)
    with pytest.raises(openai.NotFoundError):
        bob.files.content(f.id)
    with pytest.raises(openai.NotFoundError):
        bob.files.delete(f.id)
    with pytest.raises(openai.NotFoundError):
        bob.containers.create(name="steal", file_ids=[f.id])
    assert alice.files.retrieve(f.id).id == f.id


def test_stored_files_are_size_limited_and_need_a_purpose(
    start_server: Callable[..., RunningServer],
) -> None:
    srv = start_server(pool_size=0, max_upload_bytes=1024)
    client = sdk(srv)
    with pytest.raises(openai.APIStatusError) as info:
        client.files.create(file=("big.bin", io.BytesIO(b"x" * 4096)), purpose="user_data")
    assert info.value.status_code == 413
    r = httpx.post(
        f"{srv.api_base}/files",
        headers=srv.headers,
        files={"file": ("a.txt", b"a")},
        data={"purpose": "nonsense"},
        timeout=30,
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "purpose"
    f = client.files.create(file=("ok.txt", io.BytesIO(b"ok")), purpose="user_data")
    assert (srv.data_dir / "files" / f.id).read_bytes() == b"ok"  # under the server's data dir
