"""Two users on one server: jupyter_server's own APIs never reach another user's container kernel.

The server runs the test identity provider (``tests/idp.py``: bearer ``alice-secret`` is alice,
``bob-secret`` is bob) and jupyter_server_terminals, so the terminals API exists.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx2 as httpx
import pytest
from helpers import RunningServer, launch
from tornado.httpclient import HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

ALICE = {"Authorization": "Bearer alice-secret"}
BOB = {"Authorization": "Bearer bob-secret"}


@pytest.fixture(scope="module")
def two_users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = launch(
        tmp_path_factory.mktemp("users"),
        extensions=("jupyter_server_terminals",),
        pool_size=1,
        extra_args=["--ServerApp.identity_provider_class=idp.MultiUserIdentityProvider"],
    )
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def alice_kernel(two_users: RunningServer) -> str:
    r = httpx.post(
        f"{two_users.api_base}/containers", headers=ALICE, json={"name": "mine"}, timeout=120
    )
    assert r.status_code == 200, r.text
    kernel_id = r.json()["exec_sessions"]["kernel_id"]
    assert kernel_id
    return str(kernel_id)


def channels_status(server: RunningServer, kernel_id: str, headers: dict[str, str]) -> int:
    """101 when the kernel websocket opens, else the HTTP status it was refused with."""

    async def connect() -> int:
        url = server.url.replace("http://", "ws://") + f"api/kernels/{kernel_id}/channels"
        try:
            ws = await asyncio.wait_for(
                websocket_connect(HTTPRequest(url, headers=headers)), timeout=30
            )
        except HTTPClientError as e:
            return int(e.code)
        ws.close()
        return 101

    return asyncio.run(connect())


def test_bob_gets_404_for_alices_container_kernel(
    two_users: RunningServer, alice_kernel: str
) -> None:
    url = f"{two_users.url}api/kernels/{alice_kernel}"
    assert httpx.get(url, headers=BOB).status_code == 404
    assert httpx.post(f"{url}/interrupt", headers=BOB).status_code == 404
    assert httpx.delete(url, headers=BOB).status_code == 404
    assert httpx.get(url, headers=ALICE).status_code == 200


def test_bob_does_not_see_alices_container_kernel_in_the_list(
    two_users: RunningServer, alice_kernel: str
) -> None:
    bobs = httpx.get(f"{two_users.url}api/kernels", headers=BOB)
    alices = httpx.get(f"{two_users.url}api/kernels", headers=ALICE)
    assert bobs.status_code == alices.status_code == 200
    assert alice_kernel not in {k["id"] for k in bobs.json()}
    assert alice_kernel in {k["id"] for k in alices.json()}


def test_bob_cannot_open_the_channels_of_alices_kernel(
    two_users: RunningServer, alice_kernel: str
) -> None:
    assert channels_status(two_users, alice_kernel, BOB) == 404
    assert channels_status(two_users, alice_kernel, ALICE) == 101


def test_bob_cannot_attach_a_session_to_alices_kernel(
    two_users: RunningServer, alice_kernel: str
) -> None:
    body = {"path": "x.ipynb", "type": "notebook", "name": "", "kernel": {"id": alice_kernel}}
    r = httpx.post(f"{two_users.url}api/sessions", headers=BOB, content=json.dumps(body))
    assert r.status_code == 404
    assert alice_kernel not in json.dumps(
        httpx.get(f"{two_users.url}api/sessions", headers=BOB).json()
    )


def test_terminals_and_contents_are_denied_to_non_admins_by_default(
    two_users: RunningServer,
) -> None:
    for headers in (ALICE, BOB):
        assert httpx.post(f"{two_users.url}api/terminals", headers=headers).status_code == 403
        assert httpx.get(f"{two_users.url}api/contents", headers=headers).status_code == 403
        assert httpx.get(f"{two_users.url}api/kernelspecs", headers=headers).status_code == 200


def test_the_same_conversation_key_is_a_different_container_for_each_user(
    two_users: RunningServer,
) -> None:
    url = f"{two_users.api_base}/conversations"
    body = {"key": "conversation:shared-id"}
    alice = [httpx.post(url, headers=ALICE, json=body, timeout=120) for _ in range(2)]
    bob = httpx.post(url, headers=BOB, json=body, timeout=120)
    assert [r.status_code for r in (*alice, bob)] == [200, 200, 200], bob.text
    assert alice[0].json()["container_id"] == alice[1].json()["container_id"]
    assert bob.json()["container_id"] != alice[0].json()["container_id"]
    # bob cannot end (or even see) alice's binding: ending his own leaves hers running
    gone = httpx.delete(url, headers=BOB, params=body, timeout=30)
    assert gone.json() == {"object": "conversation.deleted", "key": body["key"], "deleted": True}
    mine = httpx.get(
        f"{two_users.api_base}/containers/{alice[0].json()['container_id']}",
        headers=ALICE,
        timeout=30,
    )
    assert mine.json()["status"] == "running"
