"""The import contracts state the architecture, and they bite: each forbidden import fails them.

Each test copies the package into a scratch directory, adds one import that the architecture
forbids, and expects ``lint-imports`` (run on the copy with the project's own contracts) to
name the broken contract. A contract that still passed would guard nothing.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "jupyter_exec_sessions"


def _lint_imports(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess[str]:
    """Run lint-imports on a copy of the package where ``module`` gained ``line``."""
    copy = tmp_path / "src"
    shutil.copytree(
        ROOT / PACKAGE,
        copy / PACKAGE,
        ignore=shutil.ignore_patterns("__pycache__", "labextension", "static", "*.js", "*.css"),
    )
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    target = copy / PACKAGE / Path(*module.split("."))
    path = target / "__init__.py" if target.is_dir() else target.with_suffix(".py")
    source = path.read_text()
    path.write_text(source + "\n" + line + "\n")
    lint = Path(sys.executable).parent / "lint-imports"
    return subprocess.run(
        [str(lint), "--config", str(copy / "pyproject.toml"), "--no-cache"],
        cwd=copy,
        env={"PYTHONPATH": str(copy), "PATH": str(Path(sys.executable).parent)},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_unmodified_package_keeps_every_contract(tmp_path: Path) -> None:
    result = _lint_imports(tmp_path, "models", "")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # out-of-process consumers never import the server, the engine or tornado
        ("hook", "from jupyter_exec_sessions.service import ContainerService", "Out-of-process"),
        ("hook.backend", "import tornado", "Out-of-process"),
        ("widget", "from jupyter_exec_sessions.service import ContainerService", "Out-of-process"),
        (
            "client._core",
            "from jupyter_exec_sessions.engine import KernelSession",
            "Out-of-process",
        ),
        ("gateway.app", "import jupyter_exec_sessions.extension.app", "Out-of-process"),
        ("mcp_server.server", "import jupyter_server.serverapp", "Out-of-process"),
        # layers: the engine never reaches up into the service, the service never into handlers
        ("engine.session", "from jupyter_exec_sessions.service import store", "Layers"),
        ("service.containers", "import jupyter_exec_sessions.extension.handlers", "Layers"),
        ("models", "import jupyter_exec_sessions.engine", "Layers"),
        # the service and the engine know no transport
        ("service.files", "import mcp", "know nothing about HTTP or MCP"),
        ("engine.channel", "import tornado.web", "know nothing about HTTP or MCP"),
        # the sandbox is plugged in: the service gets it injected, it knows no server
        ("service.kernels", "import jupyter_exec_sessions.sandbox", "confinement injected"),
        ("sandbox.provisioner", "import jupyter_exec_sessions.extension.app", "The sandbox"),
        ("sandbox._proxy", "import tornado", "The sandbox"),
        # the fork server is a provisioner: it stands alone, and only the extension wires it
        ("forkserver.server", "from jupyter_exec_sessions import errors", "Forked kernel start"),
        ("forkserver.provisioner", "import tornado.web", "Forked kernel start"),
        ("service.pool", "import jupyter_exec_sessions.forkserver", "kernel manager"),
        # the kernel spec writer both provisioners share stays a leaf
        ("_kernelspecs", "from jupyter_exec_sessions import sandbox", "derived kernel spec"),
        # code that runs inside the kernel stands alone
        ("engine.kernel.shell", "from jupyter_exec_sessions import errors", "inside the kernel"),
    ],
)
def test_a_forbidden_import_breaks_its_contract(
    tmp_path: Path, module: str, line: str, contract: str
) -> None:
    result = _lint_imports(tmp_path, module, line)
    assert result.returncode != 0, f"{line!r} in {module} was not caught:\n{result.stdout}"
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout
