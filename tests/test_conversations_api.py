"""``/conversations``: the durable conversation → implicit container bindings over REST.

What the in-server MCP endpoint keeps in the service, for MCP servers in other processes (the
stdio server uses it through the HTTP client). Tested with the project's client and raw HTTP.
"""

from __future__ import annotations

import httpx2 as httpx
import pytest
from helpers import RunningServer

from jupyter_exec_sessions.client import AsyncClient
from jupyter_exec_sessions.errors import InvalidRequestError
from jupyter_exec_sessions.models import PythonExecutionRequest


async def test_a_key_keeps_its_container_and_a_gone_one_is_replaced_saying_why(
    server: RunningServer,
) -> None:
    key = "conversation:rest-1"
    async with AsyncClient(server.url, server.token) as client:
        first = await client.conversation_container(key)
        await client.execute(first.container_id, PythonExecutionRequest(code="kept = 1"))
        again = await client.conversation_container(key, name="ignored-once-made")
        assert again.container_id == first.container_id and again.replaced is None
        made = await client.retrieve_container(first.container_id)
        assert made.name == f"mcp-{key}"
        await client.delete_container(first.container_id)
        replaced = await client.conversation_container(key)
        assert replaced.container_id != first.container_id
        assert (replaced.replaced, replaced.reason) == (first.container_id, "deleted")


async def test_ending_a_conversation_expires_its_container_once(server: RunningServer) -> None:
    key = "mcp-session:rest-2"
    async with AsyncClient(server.url, server.token) as client:
        bound = await client.conversation_container(key)
        assert await client.end_conversation(key) is True
        assert (await client.retrieve_container(bound.container_id)).status == "expired"
        assert await client.end_conversation(key) is False


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "key"),
        ({"key": "no-prefix"}, "key"),
        ({"key": "conversation:"}, "key"),
        ({"key": "conversation:" + "x" * 600}, "key"),
        ({"key": "conversation:a", "name": ""}, "name"),
        ({"key": "conversation:a", "extra": 1}, "extra"),
    ],
)
def test_a_bad_conversation_body_is_a_400_naming_the_field(
    server: RunningServer, body: dict[str, object], param: str
) -> None:
    r = httpx.post(f"{server.api_base}/conversations", json=body, headers=server.headers)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == param


async def test_ending_without_a_key_is_a_400_and_without_credentials_a_401(
    server: RunningServer,
) -> None:
    async with AsyncClient(server.url, server.token) as client:
        with pytest.raises(InvalidRequestError) as raised:
            await client.end_conversation("not-a-key")
    assert raised.value.param == "key"
    r = httpx.delete(f"{server.api_base}/conversations", headers=server.headers)
    assert r.status_code == 400 and r.json()["error"]["param"] == "key"
    for method in ("POST", "DELETE"):
        r = httpx.request(method, f"{server.api_base}/conversations", params={"key": "x"})
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
