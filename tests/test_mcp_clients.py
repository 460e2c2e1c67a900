"""What MCP clients nobody here wrote run into: authentication answers, the discover probe,
cancel/close races and result shapes, over real streamable HTTP with the official client.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import anyio
import httpx2 as httpx
import pytest
from conftest import RunningServer, _launch
from test_mcp_http import PY, connect, mcp, text, tiny_png

from jupyter_exec_sessions.mcp_server import RESULT_META_CONTAINER_ID, RESULT_META_STATUS

INIT = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"},
    },
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = _launch(tmp_path_factory.mktemp("clients"), pool_size=1)
    yield srv
    srv.stop()


@pytest.mark.parametrize("token", [None, "wrong-token"], ids=["missing", "wrong"])
def test_a_missing_or_wrong_token_is_a_401_with_www_authenticate_and_a_json_rpc_body(
    server: RunningServer, token: str | None
) -> None:
    headers = {"Accept": "application/json, text/event-stream"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    answers = [
        httpx.post(server.mcp_url, json=INIT, headers=headers, timeout=10),
        httpx.get(server.mcp_url, headers=headers, timeout=10),
        httpx.delete(server.mcp_url, headers=headers, timeout=10),
    ]
    for answer in answers:
        assert answer.status_code == 401, answer.text
        assert answer.headers["www-authenticate"].startswith("Bearer")
        body = answer.json()
        assert body["jsonrpc"] == "2.0" and body["id"] is None
        message = body["error"]["message"]
        assert message.startswith("Unauthorized") and "Authorization: Bearer" in message
        assert "xsrf" not in answer.text.lower()
    if token:
        assert 'error="invalid_token"' in answers[0].headers["www-authenticate"]
        assert "did not accept the bearer token" in answers[0].json()["error"]["message"]
    else:
        assert "no credentials" in answers[0].json()["error"]["message"]


async def test_the_official_client_with_a_wrong_token_reports_the_servers_message(
    server: RunningServer,
) -> None:
    with anyio.fail_after(30), pytest.raises(BaseException) as raised:
        async with connect(server.mcp_url, "wrong-token") as client:
            await client.list_tools()
    assert "did not accept the bearer token" in repr(raised.value)


async def test_an_auto_mode_client_is_answered_the_handshake_versions_without_a_404(
    server: RunningServer,
) -> None:
    mark = len(server.log())
    async with mcp(server) as client:  # mode="auto": probes server/discover first
        result = await client.call_tool(PY, {"code": "'hello'"})
    assert "'hello'" in text(result)
    probe = httpx.post(
        server.mcp_url,
        json={
            "jsonrpc": "2.0",
            "id": 9,
            "method": "server/discover",
            "params": {
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {},
                }
            },
        },
        headers={
            **server.headers,
            "Accept": "application/json, text/event-stream",
            "Mcp-Protocol-Version": "2026-07-28",
            "Mcp-Method": "server/discover",
        },
        timeout=10,
    )
    log = server.log()[mark:]
    assert " 404 " not in log, log
    assert probe.status_code == 200, probe.text
    versions = json.loads(probe.text)["result"]["supportedVersions"]
    assert versions and all(not v.startswith("2026") for v in versions)


async def test_results_are_text_and_images_for_a_model_with_ids_in_meta(
    server: RunningServer,
) -> None:
    png = tiny_png()
    code = f"from IPython.display import Image, display\ndisplay(Image(data={png!r}))\nprint('x')"
    async with mcp(server) as client:
        result = await client.call_tool(PY, {"code": code})
    assert result.structured_content is None
    assert [c.type for c in result.content] == ["text", "image"]
    assert result.meta is not None
    assert str(result.meta[RESULT_META_CONTAINER_ID]).startswith("cntr_")
    assert result.meta[RESULT_META_STATUS] == "completed"


async def test_a_cancel_racing_the_session_delete_leaves_no_traceback_in_the_log(
    server: RunningServer,
) -> None:
    mark = len(server.log())
    code = "import time\nfor i in range(40):\n    print(i, flush=True)\n    time.sleep(0.05)"
    for attempt in range(7):
        async with connect(server.mcp_url, server.token) as client:
            await client.call_tool(PY, {"code": "1"})
            # cancel mid-run (the client sends notifications/cancelled), then close the
            # session at once (DELETE) while the kernel still produces output
            with anyio.move_on_after(0.2 + 0.05 * attempt):
                await client.call_tool(PY, {"code": code}, progress_callback=_ignore)
    async with connect(server.mcp_url, server.token) as client:
        alive = await client.call_tool(PY, {"code": "'alive'"})
    assert "'alive'" in text(alive)
    log = server.log()[mark:]
    assert "Traceback" not in log and "ClosedResourceError" not in log, log


async def _ignore(progress: float, total: float | None, message: str | None) -> None:
    return None
