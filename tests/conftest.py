"""Fixtures: real Jupyter servers (subprocesses) with the extension enabled.

``server`` is one module-scoped server; ``start_server`` starts extra ones for one test with
their own configuration (``start_server(pool_size=0, max_containers_per_user=2)``) or on an
existing data directory (restart tests); ``launch_server`` does the same for fixtures of any
scope (a module-scoped server with special options). Every server is a real ``jupyter server``
process on loopback with a random token, real kernels and the extension loaded from this
checkout. Types and helpers live in ``helpers.py``; nothing imports this module.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import RunningServer, ServerLauncher, launch


@contextlib.contextmanager
def _launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerLauncher]:
    started: list[RunningServer] = []

    def start(*, tmp: Path | None = None, **kw: Any) -> RunningServer:
        srv = launch(tmp or tmp_path_factory.mktemp("srv"), **kw)
        started.append(srv)
        return srv

    try:
        yield start
    finally:
        for srv in started:
            srv.stop()


@pytest.fixture(scope="session")
def launch_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerLauncher]:
    """Factory for fixtures of any scope: ``launch_server(tmp=None, **options)``.

    Options as ``helpers.launch``; ``tmp`` is the server's directory (a fresh one by default:
    pass one to lay out its ``root``/``config`` first).
    Servers it started are stopped at the end of the session unless stopped earlier.
    """
    with _launcher(tmp_path_factory) as start:
        yield start


@pytest.fixture(scope="module")
def server(launch_server: ServerLauncher) -> Iterator[RunningServer]:
    """One real server for a whole test module (pool_size=2, generous quotas)."""
    srv = launch_server(pool_size=2, max_containers_per_user=500, max_containers=500)
    yield srv
    srv.stop()


@pytest.fixture
def start_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerLauncher]:
    """Factory: ``start_server(data_dir=..., **ExecSessionsApp_traits)``; stopped at teardown."""
    with _launcher(tmp_path_factory) as start:
        yield start
