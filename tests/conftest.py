"""Fixtures: real Jupyter servers (subprocesses) with the extension enabled.

``server`` is one module-scoped server; ``start_server`` starts extra ones for one test with
their own configuration (``start_server(pool_size=0, max_containers_per_user=2)``) or on an
existing data directory (restart tests); ``launch_server`` does the same for fixtures of any
scope (a module-scoped server with special options). Every server is a real ``jupyter server``
process on loopback with a random token, real kernels and the extension loaded from this
checkout. Types and helpers live in ``helpers.py``; nothing imports this module.

Remote kernels: a test marked ``@pytest.mark.kernels("local", "gateway")`` runs once with local
kernels and once against a real Jupyter Enterprise Gateway (``enterprise_gateway``: its own
virtual environment from ``scripts/install-eg.sh``, local process proxy, loopback, random
port); ``server`` and ``start_server`` then start servers whose kernels live on that gateway
(``--GatewayClient.url``). Unmarked tests run with local kernels only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    LAUNCHED,
    EnterpriseGateway,
    RunningServer,
    ServerLauncher,
    launch,
    launch_enterprise_gateway,
)


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


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "kernels(*where): run the test once per kernel location: 'local', 'gateway' (a real"
        " Jupyter Enterprise Gateway on loopback)",
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report ends with the last lines of every server log it wrote to.

    CI shows only the report: without the server's side a hang reads as a bare ReadTimeout.
    """
    report = yield
    if report.when == "call" and report.failed:
        for srv in LAUNCHED:
            with contextlib.suppress(OSError):
                if srv.log_path.stat().st_mtime >= call.start:  # written during the test
                    report.sections.append((f"server log {srv.url} (tail)", srv.log_tail(80)))
    return report


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize ``kernels`` from the ``kernels`` mark (default: local kernels only)."""
    if "kernels" not in metafunc.fixturenames:
        return
    mark = metafunc.definition.get_closest_marker("kernels")
    where = list(mark.args) if mark is not None else ["local"]
    metafunc.parametrize("kernels", where, indirect=True, scope="module")


@pytest.fixture(scope="session")
def enterprise_gateway(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[EnterpriseGateway]:
    """One real Enterprise Gateway for the whole run (started on first use)."""
    eg = launch_enterprise_gateway(tmp_path_factory.mktemp("eg"))
    yield eg
    eg.stop()


@pytest.fixture(scope="module")
def kernels(request: pytest.FixtureRequest) -> EnterpriseGateway | None:
    """Where the servers of this test put their kernels: None (local) or the gateway."""
    where = getattr(request, "param", "local")
    if where == "gateway":
        eg: EnterpriseGateway = request.getfixturevalue("enterprise_gateway")
        return eg
    assert where == "local", where
    return None


@pytest.fixture(scope="module")
def server(
    launch_server: ServerLauncher, kernels: EnterpriseGateway | None
) -> Iterator[RunningServer]:
    """One real server for a whole test module (pool_size=2, generous quotas)."""
    srv = launch_server(
        pool_size=2, max_containers_per_user=500, max_containers=500, gateway=kernels
    )
    yield srv
    srv.stop()


@pytest.fixture
def start_server(
    tmp_path_factory: pytest.TempPathFactory, kernels: EnterpriseGateway | None
) -> Iterator[ServerLauncher]:
    """Factory: ``start_server(data_dir=..., **ExecSessionsApp_traits)``; stopped at teardown.

    Its servers use the test's kernel location (``kernels``) unless ``gateway=`` is given.
    """
    with _launcher(tmp_path_factory) as start:

        def start_here(*, tmp: Path | None = None, **kw: Any) -> RunningServer:
            kw.setdefault("gateway", kernels)
            return start(tmp=tmp, **kw)

        yield start_here
