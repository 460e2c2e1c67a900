"""End to end with the real Codex CLI: our MCP endpoint as Codex's code-execution tools.

Codex (npm ``@openai/codex``, installed into ``.ci/node`` by ``.ci/install-codex.sh``) runs
``codex exec`` against a scripted Responses model served by the test on loopback
(:mod:`scripted_model`), with our streamable-HTTP endpoint configured in a temporary
``CODEX_HOME/config.toml`` exactly as docs/mcp-clients.md shows. The model's script makes
the tool calls; what Codex then gives the model (``function_call_output`` items in the next
request) is what the tests check: text, images as images, notes.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from helpers import ROOT, RunningServer, launch
from scripted_model import Call, ScriptedModel, output_images, output_text

CODEX = ROOT / ".ci" / "node" / "node_modules" / ".bin" / "codex"
PY = "execute_python_code"
SH = "execute_shell_commands"
TOKEN_ENV = "JUPYTER_EXEC_SESSIONS_TOKEN"
# a 1x1 PNG
PNG_B64 = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"
)


@pytest.fixture(scope="module")
def codex() -> Path:
    if not CODEX.exists():
        if os.environ.get("CI"):
            pytest.fail("the Codex CLI is missing: run .ci/install-codex.sh")
        pytest.skip("the Codex CLI is not installed (.ci/install-codex.sh)")
    return CODEX


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    srv = launch(tmp_path_factory.mktemp("codex-srv"), pool_size=1)
    yield srv
    srv.stop()


@pytest.fixture
def model() -> Iterator[ScriptedModel]:
    with ScriptedModel() as m:
        yield m


def codex_home(tmp: Path, model: ScriptedModel, server: RunningServer) -> Path:
    """A CODEX_HOME whose config.toml is the one docs/mcp-clients.md documents."""
    home = tmp / "codex-home"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(
        f"""\
model = "scripted"
model_provider = "scripted"
approval_policy = "never"
sandbox_mode = "read-only"

[model_providers.scripted]
name = "scripted test model"
base_url = "{model.base_url}"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0

[mcp_servers.jupyter]
url = "{server.mcp_url}"
bearer_token_env_var = "{TOKEN_ENV}"
default_tools_approval_mode = "approve"
"""
    )
    return home


def run_codex(
    codex: Path, home: Path, token: str, args: list[str], cwd: Path
) -> tuple[list[dict[str, Any]], str]:
    """Run ``codex exec --json …``; return its JSONL events and its stderr."""
    env = {**os.environ, "CODEX_HOME": str(home), TOKEN_ENV: token, "NO_COLOR": "1"}
    proc = subprocess.run(
        [str(codex), "exec", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
    )
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert proc.returncode == 0, f"codex failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return events, proc.stderr


def exec_args(prompt: str) -> list[str]:
    return ["--json", "--skip-git-repo-check", "--strict-config", prompt]


def thread_of(events: list[dict[str, Any]]) -> str:
    return str(next(e["thread_id"] for e in events if e["type"] == "thread.started"))


def outputs(model: ScriptedModel) -> list[Any]:
    return [out for _call_id, out in model.tool_outputs()]


def containers_named(server: RunningServer, name: str) -> list[dict[str, Any]]:
    r = httpx.get(
        f"{server.api_base}/containers",
        params={"name": name, "limit": 100},
        headers=server.headers,
        timeout=10,
    )
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def test_codex_makes_three_tool_calls_in_a_turn_and_a_resumed_conversation_keeps_its_variables(
    codex: Path, server: RunningServer, model: ScriptedModel, tmp_path: Path
) -> None:
    home = codex_home(tmp_path, model, server)
    model.script = [
        [Call(PY, {"code": "x = 41\nprint('hello from python')"})],
        [Call(SH, {"commands": ["echo shell-ok > note.txt", "cat note.txt"]})],
        [Call(PY, {"code": "x + 1"})],
        "three calls done",
    ]
    events, _ = run_codex(codex, home, server.token, exec_args("compute"), tmp_path)
    first = outputs(model)
    assert len(first) == 3, first
    assert "hello from python" in output_text(first[0])
    assert "shell-ok" in output_text(first[1]) and "[exit code 0]" in output_text(first[1])
    assert "Out: 42" in output_text(first[2])
    for out in first:  # the model reads our text, never a JSON dump of an execution object
        assert '"container.execution"' not in output_text(out)
        assert "State reset" not in output_text(out)
    thread = thread_of(events)
    boxes = containers_named(server, f"mcp-conversation:{thread}")
    assert len(boxes) == 1 and boxes[0]["status"] == "running"

    model.requests.clear()
    model.script = [[Call(PY, {"code": "x * 2"})], "resumed"]
    run_codex(codex, home, server.token, ["resume", thread, *exec_args("again")], tmp_path)
    resumed = outputs(model)
    assert "Out: 82" in output_text(resumed[-1]), resumed
    assert "State reset" not in output_text(resumed[-1])
    after = containers_named(server, boxes[0]["name"])
    assert [b["id"] for b in after] == [boxes[0]["id"]]
    assert after[0]["exec_sessions"]["executions"] == 4


def test_an_image_reaches_the_codex_model_as_an_image_not_base64_text(
    codex: Path, server: RunningServer, model: ScriptedModel, tmp_path: Path
) -> None:
    home = codex_home(tmp_path, model, server)
    code = (
        "import base64\nfrom IPython.display import Image, display\n"
        f"display(Image(data=base64.b64decode('{PNG_B64}')))\nprint('plotted')"
    )
    model.script = [[Call(PY, {"code": code})], "seen"]
    run_codex(codex, home, server.token, exec_args("draw"), tmp_path)
    (out,) = outputs(model)
    assert output_images(out) == [f"data:image/png;base64,{PNG_B64}"]
    assert "plotted" in output_text(out)
    assert PNG_B64 not in output_text(out)


def test_the_state_reset_note_reaches_the_codex_model_after_the_container_was_deleted(
    codex: Path, server: RunningServer, model: ScriptedModel, tmp_path: Path
) -> None:
    home = codex_home(tmp_path, model, server)
    model.script = [[Call(PY, {"code": "kept = 'value'"})], "stored"]
    events, _ = run_codex(codex, home, server.token, exec_args("store"), tmp_path)
    thread = thread_of(events)
    (box,) = containers_named(server, f"mcp-conversation:{thread}")
    deleted = httpx.delete(
        f"{server.api_base}/containers/{box['id']}", headers=server.headers, timeout=10
    )
    assert deleted.status_code == 200

    model.requests.clear()
    model.script = [[Call(PY, {"code": "kept"})], "noticed"]
    run_codex(codex, home, server.token, ["resume", thread, *exec_args("read it")], tmp_path)
    body = output_text(outputs(model)[-1])
    # Codex puts "Wall time: … Output:" before a tool's text; ours starts with the note
    assert body.split("Output:\n", 1)[-1].startswith("State reset:"), body
    assert box["id"] in body and "was deleted" in body
    assert "NameError" in body


def test_codex_with_a_wrong_token_says_why_the_tools_are_missing(
    codex: Path, server: RunningServer, model: ScriptedModel, tmp_path: Path
) -> None:
    home = codex_home(tmp_path, model, server)
    model.script = ["no tools"]
    events, stderr = run_codex(codex, home, "wrong-token", exec_args("hi"), tmp_path)
    said = stderr + json.dumps(events)
    # Codex reports the 401's WWW-Authenticate challenge, which says what is wrong
    assert "invalid_token" in said and "did not accept this bearer token" in said, said
    assert "_xsrf" not in said
    tools = json.dumps(model.requests[0].get("tools"))
    assert PY not in tools
