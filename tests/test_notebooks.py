"""The example notebooks, executed top to bottom with nbclient against a real server.

One ``jupyter server`` with the extension (started by ``scripts/run_notebooks.py``'s launcher,
the same settings the committed outputs were made with) serves every notebook; each notebook runs
in a fresh kernel of this environment whose working directory is the server's ``root_dir``, so the
notebook discovers the server by itself. Any error output fails; then a few outputs that prove
each notebook's story are checked. The committed notebooks are checked too: valid, run top to
bottom in one clean run, with outputs and no errors.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import httpx2 as httpx
import nbformat
import pytest
from helpers import ROOT


def _load_runner() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "run_notebooks", ROOT / "scripts" / "run_notebooks.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


runner = _load_runner()
NOTEBOOKS = [p.stem for p in runner.notebook_paths()]


@pytest.fixture(scope="module")
def nb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("notebooks")
    root = tmp / "root"
    root.mkdir()
    for path in runner.notebook_paths():
        shutil.copy(path, root / path.name)
    with runner.launch_server(tmp / "server", root) as server:
        yield server


def run(server: Any, name: str) -> nbformat.NotebookNode:
    """Execute the notebook copy in the server's root dir; error outputs raise."""
    nb: nbformat.NotebookNode = runner.execute(
        server.root_dir / f"{name}.ipynb", server, server.root_dir
    )
    return nb


def cell(nb: nbformat.NotebookNode, cell_id: str) -> nbformat.NotebookNode:
    found = [c for c in nb.cells if c.get("id") == cell_id]
    assert len(found) == 1, f"no cell {cell_id!r}"
    found_cell: nbformat.NotebookNode = found[0]
    return found_cell


def text(nb: nbformat.NotebookNode, cell_id: str) -> str:
    """stdout/stderr and text/plain results of one cell."""
    parts = []
    for out in cell(nb, cell_id).get("outputs", []):
        if out["output_type"] == "stream":
            parts.append(out["text"])
        elif "data" in out:
            parts.append(out["data"].get("text/plain", ""))
    return "".join(parts)


def images(nb: nbformat.NotebookNode, cell_id: str | None = None) -> int:
    cells = [cell(nb, cell_id)] if cell_id else nb.cells
    return sum(
        1 for c in cells for out in c.get("outputs", []) if "image/png" in out.get("data", {})
    )


def server_sandbox(server: Any) -> str | None:
    """The sandbox mode the server reports on a new container (``None``: no sandbox support)."""
    headers = {"Authorization": f"Bearer {server.token}"}
    api = f"{server.url}exec-sessions/v1/containers"
    r = httpx.post(api, headers=headers, json={"name": "probe"}, timeout=120)
    assert r.status_code == 200, r.text
    body = r.json()
    httpx.delete(f"{api}/{body['id']}", headers=headers, timeout=60)
    sandbox = body["exec_sessions"].get("sandbox")
    return str(sandbox["mode"]) if sandbox else None


def assert_no_containers_left(server: Any) -> None:
    headers = {"Authorization": f"Bearer {server.token}"}
    r = httpx.get(f"{server.url}exec-sessions/v1/containers?limit=100", headers=headers, timeout=60)
    running = [c["name"] for c in r.json()["data"] if c["status"] == "running"]
    assert running == [], f"the notebook left containers running: {running}"


# --------------------------------------------------------------------------- executed
@pytest.mark.timeout(400)
def test_quickstart_uploads_runs_code_that_writes_a_file_downloads_it_and_streams(
    nb_server: Any,
) -> None:
    nb = run(nb_server, "01_quickstart")
    assert "found via" in text(nb, "discover")
    assert re.search(r"/sales\.csv 128 bytes, source: user", text(nb, "upload"))
    assert "status: completed" in text(nb, "exec") and "'east'" in text(nb, "exec")
    files = text(nb, "files")
    assert re.search(r"/summary\.json\s+\d+ bytes\s+source=assistant", files), files
    assert "'north': 60.0" in files
    stream = text(nb, "stream")
    arrivals = [float(x) for x in re.findall(r"\[\s*([\d.]+) s\] step", stream)]
    total = float(re.findall(r"after ([\d.]+) s", stream)[0])
    assert len(arrivals) == 4, stream
    assert arrivals[0] < total - 1.0, "the first line must arrive before the code finished"
    assert "exit 1" in text(nb, "shell") and "failed - StatisticsError" in text(nb, "error")
    assert "'executions': 5" in text(nb, "seen")
    assert "monitor row: deleted" in text(nb, "cleanup")
    assert_no_containers_left(nb_server)


@pytest.mark.timeout(400)
def test_mcp_tools_keep_state_route_by_conversation_and_meta_count_turns_report_progress_and_image(
    nb_server: Any,
) -> None:
    nb = run(nb_server, "02_mcp_tools")
    tools = text(nb, "tools")
    assert "execute_python_code(code, timeout_seconds)" in tools
    assert "execute_shell_commands(commands, timeout_ms, max_output_length)" in tools
    state = text(nb, "state")
    assert "call 2 -> Out: 43" in state and "hello from python" in state
    route = text(nb, "route")
    assert "sees secret? Out: False" in route and "-> Out: 42" in route
    assert re.search(r"same conversation, new session -> cntr_\w+ -> Out: 42", route), route
    assert re.search(r"sessions=2 turns=6", route), route
    progress = text(nb, "progress")
    assert "progress: " in progress and "epoch 1" in progress and "'done'" in progress
    assert images(nb, "image") == 1
    errors = text(nb, "errors")
    assert "ZeroDivisionError" in errors and "is_error = False" in errors
    assert "is_error = True" in errors  # the unknown container
    config = text(nb, "config")
    assert "[mcp_servers.jupyter]" in config and '"mcpServers"' in config
    assert nb_server.token not in config
    assert_no_containers_left(nb_server)


@pytest.mark.timeout(400)
def test_gateway_hook_reuses_the_container_from_history_and_replaces_the_expired_one(
    nb_server: Any,
) -> None:
    nb = run(nb_server, "03_gateway_hook")
    assert "Reference gateway" in text(nb, "gateway")
    first = re.findall(r"container (cntr_\w+)", text(nb, "auto"))
    second = re.findall(r"container (cntr_\w+)", text(nb, "reuse"))
    assert first == second and len(first) == 1
    assert "same container: True" in text(nb, "reuse") and "42" in text(nb, "reuse")
    assert text(nb, "stream").count("reused it: True") == 2
    expire = text(nb, "expire")
    assert expire.count("has expired") == 2 and expire.count("NameError: name 'precious'") == 2
    events = text(nb, "events")
    assert "REUSED" in events and "replaced expired" in events
    assert "gateway stopped" in text(nb, "cleanup")
    assert_no_containers_left(nb_server)


@pytest.mark.timeout(400)
def test_sandbox_and_limits_show_timeouts_truncation_a_crash_and_what_a_container_can_reach(
    nb_server: Any,
) -> None:
    nb = run(nb_server, "04_sandbox_and_limits")
    timeout = text(nb, "timeout")
    assert "status=timed_out" in timeout and "tick 0" in timeout and "'still here'" in timeout
    stubborn = text(nb, "stubborn")
    assert "status=timed_out state_reset=True" in stubborn and "False" in stubborn
    shell = text(nb, "shell-timeout")
    assert "{'type': 'timeout'}" in shell and "still responsive" in shell
    assert "truncated: True" in text(nb, "truncate")
    full = text(nb, "full-file")
    assert "20000 lines" in full and "line 19999" in full
    crash = text(nb, "crash")
    assert "KernelDiedError" in crash and "state_reset=True" in crash
    assert "written before the crash" in crash
    mode = server_sandbox(nb_server)
    reach = text(nb, "reach")
    network = text(nb, "network")
    if mode == "bwrap":
        assert "bubblewrap sandbox" in text(nb, "sandbox-mode")
        assert re.search(r"working directory\s+/mnt/data", reach), reach
        assert re.search(r"victim's secret.*False", reach) and re.search(r"port\s+False", reach)
        assert "localhost" in network and "hello from localhost" in network
        assert "HTTP 403" in network and "-> connected" not in network
        memory = text(nb, "memory")
        assert "memory limit 1g exceeded" in memory or "MemoryError" in memory
    else:
        assert "UNCONFINED" in text(nb, "sandbox-mode")
        assert re.search(r"victim's secret.*True", reach), reach
        assert network.count("refused by this server") == 2
        assert "skipped the 2 GiB allocation" in text(nb, "memory")
    assert_no_containers_left(nb_server)


@pytest.mark.timeout(400)
def test_performance_plots_each_benchmark_next_to_its_numbers(nb_server: Any) -> None:
    nb = run(nb_server, "05_performance")
    assert "ours, warm pool" in text(nb, "create") and "raw kernel start" in text(nb, "create")
    latency = text(nb, "latency")
    for label in ("raw jupyter_client", "REST", "MCP"):
        assert re.search(rf"{label}\s+p50\s+[\d.]+ ms", latency), latency
    assert len(re.findall(r"N=\d: ours", text(nb, "throughput"))) == 3
    for plot in ("create-plot", "latency-plot", "throughput-plot"):
        assert images(nb, plot) == 1, plot
    assert_no_containers_left(nb_server)


# --------------------------------------------------------------------------- committed
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_the_committed_notebook_is_valid_and_carries_the_outputs_of_one_clean_run(
    name: str,
) -> None:
    nb = nbformat.read(ROOT / "notebooks" / f"{name}.ipynb", as_version=4)  # type: ignore[no-untyped-call]
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == list(range(1, len(code) + 1)), (
        "run top to bottom in one kernel by scripts/run_notebooks.py"
    )
    assert runner.error_outputs(nb) == []
    with_outputs = [c for c in code if c.outputs]
    assert len(with_outputs) >= len(code) * 2 // 3, "most code cells show what they did"
    assert len({c.get("id") for c in nb.cells}) == len(nb.cells)
    assert any(c.cell_type == "markdown" for c in nb.cells[1:]), "a story between the cells"
    minimum_images = {"02_mcp_tools": 1, "05_performance": 3}.get(name, 0)
    assert images(nb) >= minimum_images


def test_the_notebooks_readme_describes_every_notebook_and_how_to_run_them() -> None:
    readme = (ROOT / "notebooks" / "README.md").read_text()
    for name in NOTEBOOKS:
        assert f"{name}.ipynb" in readme, name
    assert "scripts/run_notebooks.py" in readme
    assert "jupyter lab" in readme
