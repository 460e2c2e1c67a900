"""A profiling probe: a server extension that times the layers of each request (wall time).

Loaded only by ``profile_server.py --probe`` (``PYTHONPATH=benchmarks``,
``jpserver_extensions={'_probe': True}``); never by the package or the tests. It wraps a few
methods of the package and of jupyter_server with ``perf_counter`` timers (a few µs each) and
serves the totals at ``GET /bench-probe`` (``DELETE`` resets them). Names are stable labels
for the report; a method that no longer exists is skipped, not an error.
"""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import json
import time
from collections import defaultdict
from typing import Any

from jupyter_server.base.handlers import APIHandler
from tornado import web

STATS: defaultdict[str, list[float]] = defaultdict(list)

# (module, class, method, label)
TARGETS = [
    (
        "jupyter_server.base.handlers",
        "JupyterHandler",
        "prepare",
        "tornado: JupyterHandler.prepare (auth)",
    ),
    (
        "jupyter_exec_sessions.extension.streaming",
        "ExecutionsHandler",
        "post",
        "handler: ExecutionsHandler.post",
    ),
    (
        "jupyter_exec_sessions.extension.handlers",
        "ContainersHandler",
        "post",
        "handler: ContainersHandler.post",
    ),
    (
        "jupyter_exec_sessions.extension.base",
        "ExecSessionsHandler",
        "send_model",
        "handler: send_model (dump+finish)",
    ),
    (
        "jupyter_exec_sessions.extension.base",
        "ExecSessionsHandler",
        "json_body",
        "handler: json_body",
    ),
    ("jupyter_exec_sessions.service.executions", "Executions", "execute", "service: execute (all)"),
    (
        "jupyter_exec_sessions.service.containers",
        "Containers",
        "usable",
        "service: usable (lookup+touch)",
    ),
    (
        "jupyter_exec_sessions.service.kernels",
        "ContainerKernels",
        "ensure_live",
        "service: ensure_live",
    ),
    ("jupyter_exec_sessions.service.containers", "Containers", "create", "service: create (all)"),
    ("jupyter_exec_sessions.service.kernels", "ContainerKernels", "attach", "service: attach"),
    (
        "jupyter_exec_sessions.service.containers",
        "Containers",
        "to_container",
        "service: to_container",
    ),
    ("jupyter_exec_sessions.service.pool", "KernelPool", "take", "pool: take"),
    ("jupyter_exec_sessions.engine.session", "KernelSession", "run_python", "engine: run_python"),
    ("jupyter_exec_sessions.engine.session", "KernelSession", "set_workdir", "engine: set_workdir"),
    ("jupyter_exec_sessions.engine.channel", "KernelChannel", "_run_code", "engine: _run_code"),
    ("jupyter_exec_sessions.engine.channel", "KernelChannel", "_is_alive", "engine: _is_alive"),
    ("jupyter_exec_sessions.service.events", "EventBus", "emit", "events: emit (SQLite + fan-out)"),
]
STORE = ("jupyter_exec_sessions.service.store", "Store")


def _wrap(owner: type, name: str, label: str) -> None:
    fn = owner.__dict__.get(name)
    if fn is None:
        return
    if inspect.iscoroutinefunction(fn) or name in ("get", "post", "delete", "prepare"):
        # handler verbs wrapped by tornado's decorators return an awaitable from a plain def

        @functools.wraps(fn)
        async def awrapper(*args: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                result = fn(*args, **kw)
                return (await result) if inspect.isawaitable(result) else result
            finally:
                STATS[label].append((time.perf_counter() - t0) * 1000)

        setattr(owner, name, awrapper)
    else:

        @functools.wraps(fn)
        def wrapper(*args: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                STATS[label].append((time.perf_counter() - t0) * 1000)

        setattr(owner, name, wrapper)


def install() -> None:
    for module, cls, method, label in TARGETS:
        try:
            owner = getattr(importlib.import_module(module), cls)
        except (ImportError, AttributeError):
            continue
        _wrap(owner, method, label)
    store = getattr(importlib.import_module(STORE[0]), STORE[1])
    for name, fn in list(vars(store).items()):
        if inspect.isfunction(fn) and not name.startswith("_"):
            _wrap(store, name, f"sqlite: Store.{name}")
    # whole request as tornado sees it (first byte parsed → finish)
    from jupyter_exec_sessions.extension import base as handlers_base

    base = handlers_base.ExecSessionsHandler
    original = base.on_finish

    def on_finish(self: Any) -> None:
        if self.request.method in ("POST", "DELETE") and "/bench-probe" not in self.request.uri:
            label = f"tornado: request_time {self.request.method} {type(self).__name__}"
            STATS[label].append(self.request.request_time() * 1000)
        original(self)

    base.on_finish = on_finish


_MONITOR: list[asyncio.Task[None]] = []
LAG_LABEL = "loop: stalls > 2 ms (event loop blocked)"


async def _lag_monitor() -> None:
    """Record every time the event loop was blocked for more than 2 ms."""
    period = 0.001
    while True:
        t0 = time.perf_counter()
        await asyncio.sleep(period)
        lag = time.perf_counter() - t0 - period
        if lag > 0.002:
            STATS[LAG_LABEL].append(lag * 1000)


class ProbeHandler(APIHandler):
    @web.authenticated
    def get(self) -> None:
        out = {k: v for k, v in STATS.items()}
        self.finish(json.dumps(out))

    @web.authenticated
    def delete(self) -> None:
        """Reset the timers (and start the event-loop stall monitor on first use)."""
        STATS.clear()
        if not _MONITOR:
            _MONITOR.append(asyncio.ensure_future(_lag_monitor()))
        self.finish("{}")


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "_probe"}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    install()
    serverapp.web_app.add_handlers(".*$", [(r"/bench-probe", ProbeHandler)])
    serverapp.log.info("bench probe installed")
