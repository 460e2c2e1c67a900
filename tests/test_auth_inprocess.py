"""Security by default: every endpoint of the extension requires the server's authentication.

In-process server via pytest-jupyter (``jp_serverapp``/``jp_fetch``), plus a static check that
every HTTP verb in our handler modules carries ``@web.authenticated`` and ``@authorized``.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest
from pytest_jupyter.jupyter_core import *  # noqa: F403 - pytest-jupyter fixtures, this module only
from pytest_jupyter.jupyter_server import *  # noqa: F403
from tornado.httpclient import HTTPClientError

EXTENSION = Path(__file__).resolve().parent.parent / "jupyter_exec_sessions" / "extension"
VERBS = {"get", "post", "put", "patch", "delete", "head", "options"}

ROUTES = [
    ("GET", "exec-sessions/v1/containers"),
    ("POST", "exec-sessions/v1/containers"),
    ("GET", "exec-sessions/v1/containers/cntr_x"),
    ("DELETE", "exec-sessions/v1/containers/cntr_x"),
    ("GET", "exec-sessions/v1/containers/cntr_x/files"),
    ("POST", "exec-sessions/v1/containers/cntr_x/files"),
    ("GET", "exec-sessions/v1/containers/cntr_x/files/cfile_y"),
    ("DELETE", "exec-sessions/v1/containers/cntr_x/files/cfile_y"),
    ("GET", "exec-sessions/v1/containers/cntr_x/files/cfile_y/content"),
    ("POST", "exec-sessions/v1/containers/cntr_x/executions"),
    ("POST", "exec-sessions/v1/containers/cntr_x/interrupt"),
    ("POST", "exec-sessions/v1/containers/cntr_x/resolutions"),
    ("GET", "exec-sessions/v1/events"),
    ("GET", "exec-sessions/v1/anything/else"),
    ("POST", "exec-sessions/mcp"),
    ("GET", "exec-sessions/mcp"),
    ("DELETE", "exec-sessions/mcp"),
]


@pytest.fixture  # type: ignore[no-redef]  # overrides pytest-jupyter's fixture
def jp_server_config(tmp_path: Path) -> dict[str, Any]:
    return {
        "ServerApp": {"jpserver_extensions": {"jupyter_exec_sessions": True}},
        "ExecSessionsApp": {"pool_size": 0, "data_dir": str(tmp_path / "exec-data")},
    }


def _decorator_names(fn: ast.AsyncFunctionDef | ast.FunctionDef) -> set[str]:
    names = set()
    for d in fn.decorator_list:
        names.add(ast.unparse(d))
    return names


def test_every_handler_verb_is_authenticated_and_authorized() -> None:
    checked = 0
    executing = set()
    for module in sorted(EXTENSION.glob("*.py")):
        tree = ast.parse(module.read_text())
        for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
            for fn in cls.body:
                if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef) and fn.name in VERBS:
                    names = _decorator_names(fn)
                    where = f"{module.name}:{cls.name}.{fn.name}"
                    assert "web.authenticated" in names, where
                    assert names & {"authorized", "authorized_to_execute"}, where
                    if "authorized_to_execute" in names:
                        executing.add(f"{cls.name}.{fn.name}")
                    checked += 1
    assert checked >= 15
    # running code is authorized as jupyter_server authorizes it for kernels: action "execute"
    assert {"ExecutionsHandler.post", "MCPHandler.post"} <= executing


def test_every_route_refuses_requests_without_credentials(
    jp_serverapp: Any, http_server_client: Any, jp_base_url: str, jp_asyncio_loop: Any
) -> None:
    for method, path in ROUTES:
        body = b"{}" if method in ("POST", "PUT", "PATCH") else None
        with pytest.raises(HTTPClientError) as e:
            fetch = http_server_client.fetch(
                jp_base_url + path,
                method=method,
                body=body,
                headers={
                    "Content-Type": "application/json",
                    "Accept": "application/json, text/event-stream",
                },
            )
            jp_asyncio_loop.run_until_complete(fetch)
        assert e.value.code in (401, 403), (method, path, e.value.code)
        if path.startswith("exec-sessions/v1"):
            assert e.value.code == 401
            assert e.value.response is not None
            payload = json.loads(e.value.response.body)
            assert payload["error"]["type"] == "authentication_error"


def test_the_server_token_opens_the_api_in_process(
    jp_serverapp: Any, jp_fetch: Any, jp_asyncio_loop: Any
) -> None:
    run = jp_asyncio_loop.run_until_complete
    r = run(jp_fetch("exec-sessions", "v1", "containers", method="GET"))
    assert r.code == 200
    assert json.loads(r.body)["object"] == "list"
    with pytest.raises(HTTPClientError) as e:
        run(jp_fetch("exec-sessions", "v1", "containers", "cntr_missing", method="GET"))
    assert e.value.code == 404
    assert e.value.response is not None
    assert json.loads(e.value.response.body)["error"]["code"] == "container_not_found"
