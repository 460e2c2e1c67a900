"""The public surface is curated: pin it so that changes are deliberate."""

from __future__ import annotations

import inspect
import subprocess
import sys

import jupyter_exec_sessions
from jupyter_exec_sessions import errors, hook, models


def test_the_package_exports_exactly_the_curated_names() -> None:
    assert sorted(jupyter_exec_sessions.__all__) == [
        "AsyncClient",
        "Client",
        "SessionMonitor",
        "__version__",
    ]
    for name in jupyter_exec_sessions.__all__:
        assert getattr(jupyter_exec_sessions, name) is not None


def test_importing_the_package_does_not_import_heavy_parts() -> None:
    code = (
        "import sys, jupyter_exec_sessions\n"
        "names = ('mcp', 'anywidget', 'jupyter_server', 'tornado')\n"
        "heavy = [m for m in names if m in sys.modules]\n"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_error_has_a_stable_code_status_and_openai_type() -> None:
    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.ExecSessionsError)
        assert cls.code and cls.type and 400 <= cls.status < 600
    assert errors.ContainerExpiredError("cntr_x").message == "Container is expired."


def test_the_hook_and_models_modules_export_documented_names() -> None:
    for module in (hook, models):
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                assert obj.__doc__, f"{module.__name__}.{name} has no docstring"
