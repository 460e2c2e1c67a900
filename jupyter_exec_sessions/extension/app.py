"""The Jupyter server extension: traitlets, wiring, start and stop.

Every limit is a traitlet with a documented default; set them on the command line
(``--ExecSessionsApp.pool_size=4``) or in ``jupyter_server_config.py``
(``c.ExecSessionsApp.pool_size = 4``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from pathlib import Path
from typing import Any

from jupyter_core.paths import jupyter_data_dir
from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, CaselessStrEnum, Dict, Float, Int, List, Set, Unicode

from .. import forkserver
from .._contract import API_PATH, MCP_PATH
from ..engine.channel import preload_source
from ..service import ContainerService, ServiceConfig
from . import handlers
from .authorizer import install_authorizer
from .body import MAX_BODY_SETTING
from .datadir import DataDirBusyError, claim_data_dir
from .remote_kernels import RemoteKernelManager, is_remote, stop_despite_the_gateway
from .sandboxing import build_confinement, provisioner_missing

__all__ = ["ExecSessionsApp"]


class ExecSessionsApp(ExtensionApp):
    """Serves the containers API, its events feed and the MCP endpoint."""

    name = "jupyter_exec_sessions"
    load_other_extensions = True

    data_dir = Unicode(
        "",
        help="Where the SQLite registry and the container directories live; one server holds"
        " it exclusively (a lock file). Default (empty): <jupyter data dir>/exec_sessions, or"
        " exec_sessions-2, -3, ... next to it when other running servers hold those."
        " A data_dir given explicitly that another server holds stops this server with a"
        " message.",
    ).tag(config=True)

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
        64 * 1024 * 1024,
        help="Largest file upload in bytes; past it, 413 (checked from Content-Length before"
        " the body is read, and while it streams).",
    ).tag(config=True)
    max_body_bytes = Int(
        8 * 1024 * 1024,
        help="Largest request body of the JSON routes and the MCP endpoint, in bytes; past it,"
        " 413 before the body is read (uploads have max_upload_bytes instead). Lower than"
        " jupyter_server's own max_body_size.",
    ).tag(config=True)
    max_shell_commands = Int(
        100, help="Most commands one shell execution request may carry; past it, 400."
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
    implicit_expires_minutes = Int(
        10,
        help="Minutes of inactivity after which an implicit container expires: one the MCP"
        " endpoint made for a conversation or an MCP session (no container named). At the"
        " owner's quota the least recently used idle implicit container is evicted instead.",
    ).tag(config=True)
    implicit_wait_s = Float(
        60.0,
        help="Seconds an MCP call that needs a new implicit container waits for one of the"
        " owner's implicit containers to become idle (and evictable) when the owner is at"
        " the quota, before it is refused (at once when the owner has no implicit container).",
    ).tag(config=True)
    implicit_evict_idle_s = Float(
        5.0,
        help="Seconds an implicit container must have been idle before it may be evicted:"
        " a client between two quick calls keeps its container, and new work waits instead.",
    ).tag(config=True)

    remote_workdir_root = Unicode(
        "/tmp/jupyter-exec-sessions",
        help="With remote kernels (ServerApp.gateway_url: Jupyter Enterprise Gateway): the"
        " absolute directory, on the kernels' side, under which each server keeps its container"
        " directories (in a subdirectory named by its server id). Local kernels use the"
        " containers directory in data_dir.",
    ).tag(config=True)
    execution_history_size = Int(
        100,
        help="Executions kept per container in its history (GET …/executions, the JupyterLab"
        " panel's timeline); older ones are dropped.",
    ).tag(config=True)
    execution_history_outputs = Int(
        5,
        help="How many of a container's most recent executions carry their outputs in a"
        " history listing (every one does when retrieved by id).",
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

    sandbox = CaselessStrEnum(
        ["auto", "bwrap", "none"],
        default_value="auto",
        help="Confinement of container kernels. 'bwrap': each kernel runs in a bubblewrap"
        " sandbox (container directory at /mnt/data, system and Python read-only; no other"
        " container, registry, runtime dir or home; own PID and network namespaces; memory"
        " limits; network policies); the server refuses to start if bwrap cannot work here."
        " 'none': plain processes of the server's user. 'auto': 'bwrap' when it works here,"
        " else 'none'; the log says which and why.",
    ).tag(config=True)
    default_network_policy = Dict(
        {"type": "disabled"},
        help="Network policy of a sandboxed container created without one: {'type':"
        " 'disabled'} (no network) or {'type': 'allowlist', 'allowed_domains': [...]}.",
    ).tag(config=True)
    sandbox_proxy_resolve = Dict(
        help="Names the allowlist proxy resolves itself (name -> IP address), before DNS."
        " For tests and private networks.",
    ).tag(config=True)
    bwrap_path = Unicode("bwrap", help="The bubblewrap executable.").tag(config=True)
    multi_user_isolation = Bool(
        True,
        help="With an identity provider that has several users, install an authorizer that"
        " keeps jupyter_server's kernel, session, terminal and contents APIs from reaching"
        " other users' container kernels (see deny_to_non_admins).",
    ).tag(config=True)
    admin_users = Set(
        help="Usernames the multi-user authorizer does not restrict.",
    ).tag(config=True)
    deny_to_non_admins = List(
        ["terminals", "contents", "files"],
        help="jupyter_server resources refused (403) to users not in admin_users on a"
        " multi-user server: a terminal or the contents API reaches the server's files as the"
        " server's OS user, around every sandbox. [] allows them.",
    ).tag(config=True)

    @property
    def remote_kernels(self) -> bool:
        """Whether the server's kernels are remote (``ServerApp.gateway_url`` is set)."""
        return self.serverapp is not None and is_remote(self.serverapp.kernel_manager)

    def initialize_settings(self) -> None:
        """Lock the data directory, build the container service, publish it to handlers."""
        assert self.serverapp is not None
        self._route_package_logs()
        try:
            self._lock = claim_data_dir(
                self.data_dir,
                Path(jupyter_data_dir()) / "exec_sessions",
                note=f"port {self.serverapp.port}",
            )
        except DataDirBusyError as e:
            self.log.critical("jupyter-exec-sessions: %s", e)
            raise SystemExit(1) from None
        if not self.data_dir:
            self.log.info("jupyter-exec-sessions: data_dir %s", self._lock.path)
        serverapp = self.serverapp
        config = dataclasses.replace(ServiceConfig.from_traits(self), data_dir=self._lock.path)
        km: Any = serverapp.kernel_manager
        if config.remote_kernels:
            self.log.info(
                "jupyter-exec-sessions: kernels are remote (gateway %s); container directories"
                " live under %s on the kernels' side. The local sandbox does not apply to remote"
                " kernels: isolation comes from the gateway's kernel containers.",
                serverapp.gateway_config.url,
                self.remote_workdir_root,
            )
            km = RemoteKernelManager(km)
            stop_despite_the_gateway(serverapp.kernel_manager)
        gateway_config = getattr(serverapp, "gateway_config", None)
        confinement = build_confinement(
            mode=self.sandbox,
            kernel_manager=serverapp.kernel_manager,
            gateway=config.remote_kernels
            or bool(getattr(gateway_config, "gateway_enabled", False)),
            kernel_name=self.kernel_name,
            data_dir=self._lock.path,
            default_network_policy=dict(self.default_network_policy),
            proxy_resolve={str(k): str(v) for k, v in self.sandbox_proxy_resolve.items()},
            bwrap=self.bwrap_path,
            log=self.log,
        )
        if confinement.mode == "none" and not config.remote_kernels:
            config = dataclasses.replace(config, kernel_name=self._container_kernel_name())
        elif self.kernel_start == "fork":
            self.log.warning(
                "jupyter-exec-sessions: kernels are launched, not forked: sandboxed and remote"
                " kernels keep the launch path (kernel_start applies with sandbox=none)"
            )
        self.service = ContainerService(km, config, confinement)
        self.settings.update(
            {
                "exec_sessions_service": self.service,
                MAX_BODY_SETTING: self.max_body_bytes,
            }
        )
        if self.multi_user_isolation and _multi_user(serverapp.identity_provider):
            # also in our settings: they are copied over the server's when initialisation ends
            self.settings["authorizer"] = install_authorizer(
                serverapp,
                serverapp.web_app,
                kernel_owner=self.service.kernels.kernel_owner,
                owner_of=handlers.owner_of,
                admin_users=self.admin_users,
                deny_to_non_admins=self.deny_to_non_admins,
            )
        self._mcp: Any = None

    def _route_package_logs(self) -> None:
        """The package's own loggers (service, engine, sandbox...) write to the server's log.

        They are plain ``logging`` loggers under ``jupyter_exec_sessions``; without a handler
        their INFO lines were lost and their warnings reached stderr unformatted. They take this
        app's handlers and level, so they read like the rest of the server's log.
        """
        package = logging.getLogger("jupyter_exec_sessions")
        for handler in self.log.handlers:
            if handler not in package.handlers:
                package.addHandler(handler)
        package.setLevel(self.log.getEffectiveLevel())
        package.propagate = not package.handlers

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
        else:
            why_not = provisioner_missing(forkserver.PROVISIONER_NAME)
        if why_not is not None:
            level = self.log.warning if self.kernel_start == "fork" else self.log.info
            level("jupyter-exec-sessions: kernels are launched, not forked: %s", why_not)
            return self.kernel_name
        return forkserver.write_kernelspec(
            ksm, self.kernel_name, self._lock.path / "kernels", preload=preload_source()
        )

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
        self._lock.release()
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


def _multi_user(identity_provider: Any) -> bool:
    """True unless the identity provider is one of jupyter_server's single-user ones."""
    from jupyter_server.auth.identity import IdentityProvider, PasswordIdentityProvider

    return type(identity_provider) not in (IdentityProvider, PasswordIdentityProvider)
