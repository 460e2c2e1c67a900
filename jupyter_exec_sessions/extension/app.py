"""The Jupyter server extension: traitlets, wiring, start and stop.

Every limit is a traitlet with a documented default; set them on the command line
(``--ExecSessionsApp.pool_size=4``) or in ``jupyter_server_config.py``
(``c.ExecSessionsApp.pool_size = 4``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from traitlets import CaselessStrEnum, Float, Int, Unicode, default

from .. import forkserver
from .._contract import API_PATH, MCP_PATH
from ..service import ContainerService, ServiceConfig
from . import handlers

__all__ = ["ExecSessionsApp"]


class ExecSessionsApp(ExtensionApp):
    """Serves the containers API, its events feed and the MCP endpoint."""

    name = "jupyter_exec_sessions"
    load_other_extensions = True

    data_dir = Unicode(
        help="Where the SQLite registry and the container directories live."
        " Default: <jupyter data dir>/exec_sessions."
    ).tag(config=True)

    @default("data_dir")
    def _default_data_dir(self) -> str:
        return os.path.join(jupyter_data_dir(), "exec_sessions")

    pool_size = Int(
        2, help="Kernels kept started ahead so that creating a container is instant."
    ).tag(config=True)
    pool_max_size = Int(
        8,
        help="Largest the pool grows to when containers are created faster than it refills"
        " (each create that finds it empty adds one); it shrinks back to pool_size when idle."
        " Never below pool_size; with pool_size 0 there is no pool.",
    ).tag(config=True)
    pool_idle_seconds = Float(
        60.0,
        help="Seconds without a create that found the pool empty after which the pool shrinks"
        " by one kernel toward pool_size.",
    ).tag(config=True)
    max_kernel_starts = Int(
        0,
        help="Kernel starts in flight at once (pool refills and creates on an empty pool);"
        " 0 means the number of CPUs. More only makes each start slower.",
    ).tag(config=True)
    kernel_name = Unicode("python3", help="Kernel spec used for containers.").tag(config=True)
    max_containers_per_user = Int(
        20, help="Running containers one user may have; past it, create answers 429."
    ).tag(config=True)
    max_containers = Int(
        100, help="Running containers on this server; past it, create answers 429."
    ).tag(config=True)
    max_upload_bytes = Int(
        64 * 1024 * 1024, help="Largest file upload in bytes; past it, 413."
    ).tag(config=True)
    max_code_bytes = Int(
        1024 * 1024, help="Largest code (or sum of shell commands) in bytes; past it, 413."
    ).tag(config=True)
    max_queue_depth = Int(
        32, help="Executions that may wait behind the running one per container; past it, 429."
    ).tag(config=True)
    default_timeout_ms = Int(
        120_000, help="Execution timeout when the request gives none (per shell command)."
    ).tag(config=True)
    max_timeout_ms = Int(
        3_600_000, help="Largest timeout a request may ask for; larger values are clamped."
    ).tag(config=True)
    default_max_output_length = Int(
        65_536, help="Characters of output kept when the request gives no max_output_length."
    ).tag(config=True)
    max_output_length_limit = Int(
        4 * 1024 * 1024, help="Largest max_output_length a request may ask for (clamped)."
    ).tag(config=True)
    default_expires_minutes = Int(
        20, help="Minutes of inactivity after which a container expires, when not given."
    ).tag(config=True)
    minute_seconds = Float(
        60.0,
        help="Real seconds in one 'minute' of expires_after. Only tests should change it.",
    ).tag(config=True)
    reaper_interval = Float(5.0, help="Seconds between expiry sweeps.").tag(config=True)
    interrupt_grace_s = Float(
        3.0,
        help="Seconds a timed-out execution gets to stop after an interrupt before its kernel"
        " is restarted (state_reset).",
    ).tag(config=True)

    kernel_start = CaselessStrEnum(
        ["auto", "fork", "launch"],
        default_value="auto",
        help="How container kernels start. 'fork': forked from a template process that has"
        " the kernel's imports done (several times less CPU and time per start, less memory"
        " per kernel); any fork failure falls back to a normal launch. 'launch': a new Python"
        " process per kernel. 'auto' (default): 'fork' for local ipykernel kernels on Linux,"
        " else 'launch'.",
    ).tag(config=True)

    service: ContainerService

    def initialize_settings(self) -> None:
        """Build the container service and publish it to handlers."""
        assert self.serverapp is not None
        config = ServiceConfig.from_traits(self)
        config = dataclasses.replace(config, kernel_name=self._container_kernel_name())
        self.service = ContainerService(self.serverapp.kernel_manager, config)
        self.settings.update({"exec_sessions_service": self.service})
        self._mcp: Any = None

    def _container_kernel_name(self) -> str:
        """The kernel spec containers use: the forked variant of ``kernel_name`` if it applies."""
        assert self.serverapp is not None
        if self.kernel_start == "launch":
            return self.kernel_name
        ksm = self.serverapp.kernel_spec_manager
        gateway = getattr(self.serverapp, "gateway_config", None)
        why_not = None
        if gateway is not None and getattr(gateway, "gateway_enabled", False):
            why_not = "kernels are remote (gateway_url)"
        elif not forkserver.template_supported():
            why_not = "this platform cannot fork kernels"
        elif not forkserver.can_fork_spec(ksm, self.kernel_name):
            why_not = f"kernel spec {self.kernel_name!r} is not '<python> -m ipykernel_launcher'"
        if why_not is not None:
            level = self.log.warning if self.kernel_start == "fork" else self.log.info
            level("jupyter-exec-sessions: kernels are launched, not forked: %s", why_not)
            return self.kernel_name
        return forkserver.write_kernelspec(ksm, self.kernel_name, Path(self.data_dir) / "kernels")

    def initialize_handlers(self) -> None:
        """Register the REST, events and MCP handlers."""
        self.handlers.extend(self._mcp_handlers())
        self.handlers.extend(handlers.default_handlers)

    def _mcp_handlers(self) -> list[Any]:
        from .mcp import MCPEndpoint  # imports the mcp SDK: only when serving

        self._mcp = MCPEndpoint(self.service, owner_of=handlers.owner_of)
        return list(self._mcp.handlers())

    async def _start_jupyter_server_extension(self, serverapp: Any) -> None:
        """Start the pool, the reaper and the MCP session manager once the loop runs."""
        await self.service.start()
        if self._mcp is not None:
            await self._mcp.start()
        self.log.info(
            "jupyter-exec-sessions: containers API at %s%s , MCP at %s%s (pool_size=%d,"
            " kernels from %s)",
            serverapp.connection_url,
            API_PATH,
            serverapp.connection_url,
            MCP_PATH,
            self.pool_size,
            self.service.config.kernel_name,
        )

    async def stop_extension(self) -> None:
        """Stop MCP sessions, cancel executions and shut down our kernels."""
        if self._mcp is not None:
            with contextlib.suppress(Exception):
                await self._mcp.stop()
        await self.service.stop()
        forkserver.close_all()


def limits_table() -> str:
    """README's table of every setting: name, default and meaning, from the traits themselves."""
    rows = ["| trait | default | meaning |", "| --- | --- | --- |"]
    traits = ExecSessionsApp.class_own_traits(config=True)
    for name in sorted(traits):
        trait = traits[name]
        help_text = " ".join(str(trait.help).split())
        rows.append(f"| `{name}` | {_format_default(name, trait)} | {help_text} |")
    return "\n".join(rows) + "\n"


def _format_default(name: str, trait: Any) -> str:
    value = trait.default_value
    if not isinstance(value, (int, float, str)) or value == "":
        return "(see meaning)"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, int) and name.endswith("_bytes") and value % (1024 * 1024) == 0:
        return f"{value // (1024 * 1024)} MiB"
    if isinstance(value, int):
        return f"{value:,}".replace(",", " ")
    if isinstance(value, float):
        return f"{value:g}"
    return f"`{value}`"
