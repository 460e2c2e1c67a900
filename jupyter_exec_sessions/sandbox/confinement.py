"""``BwrapConfinement``: the service's view of bubblewrap-confined kernels.

Built by the extension when ``sandbox`` resolves to ``bwrap``. It writes the confined kernel
spec (the configured one with the ``exec-sessions-bwrap`` provisioner), starts kernels with
their container directory as ``cwd`` (bound at ``/mnt/data``), and reaches each kernel's
provisioner through the kernel manager to apply limits at hand-out, to ask why a kernel died
and to describe its confinement.

Warm pool: a pool kernel starts before its container's ``memory_limit`` and
``network_policy`` are known, but with its future container's directory already bound (the
pool picks the container id ahead). At hand-out :meth:`confine` sets the memory limit (a cgroup
limit can be changed on a running process tree; rlimits are applied to every process of the
sandbox) and, for an ``allowlist``, starts the proxy on the kernel's socket. A kernel for an
*existing* container (after a kernel death or a server restart) is started cold with that
container's directory, since a running sandbox's mounts cannot be changed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from .._contract import CONTAINER_ROOT
from ..models import SandboxInfo
from ..service.confinement import NetworkPolicy, check_network_policy
from ._kernelspec import write_kernelspec
from ._leftovers import sweep
from .provisioner import memory_mechanism

__all__ = ["BwrapConfinement"]

log = logging.getLogger("jupyter_exec_sessions.sandbox")


class BwrapConfinement:
    """Container kernels confined by bubblewrap (see the module docstring)."""

    mode = "bwrap"
    binds_workdir = True

    def __init__(
        self,
        kernel_manager: Any,
        *,
        base_kernel_name: str,
        spec_dir: Path,
        state_dir: Path,
        default_network: str = "disabled",
        proxy_resolve: dict[str, str] | None = None,
        bwrap: str = "bwrap",
    ) -> None:
        self.km = kernel_manager
        self.state_dir = state_dir
        self.default_network = default_network
        #: the whole default policy (an ``allowlist`` default carries its domains)
        self.default_policy: dict[str, Any] = {"type": default_network}
        self._spec_name = write_kernelspec(
            kernel_manager.kernel_spec_manager,
            base_kernel_name,
            spec_dir,
            {
                "state_dir": str(state_dir),
                "proxy_resolve": dict(proxy_resolve or {}),
                "bwrap": bwrap,
            },
        )
        self.memory, self._cgroup_parent = memory_mechanism(str(state_dir))

    def kernel_name(self, default: str) -> str:
        """The confined variant of the configured kernel spec."""
        return self._spec_name

    def start_kwargs(self, workdir: str) -> dict[str, Any]:
        """Start with the container directory as ``cwd``: it is bound at ``/mnt/data``."""
        return {"path": None, "cwd": workdir}

    def inside_workdir(self, workdir: str) -> str:
        """``/mnt/data``."""
        return CONTAINER_ROOT

    def resolve(self, memory_limit: str | None, network_policy: NetworkPolicy) -> NetworkPolicy:
        """The asked policy, else the server's default (``default_network_policy``)."""
        if network_policy is not None:
            return network_policy
        return check_network_policy(self.default_policy)

    async def start(self) -> None:
        """Kill and remove what a crashed run of this server left behind."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        found = sweep(self.state_dir, self._cgroup_parent)
        if found:
            log.warning("exec-sessions: killed %d leftover sandboxed kernel(s)", found)

    def _provisioner(self, kernel_id: str) -> Any:
        try:
            return self.km.get_kernel(kernel_id).provisioner
        except Exception:
            return None

    async def confine(
        self, kernel_id: str, memory_limit: str | None, network: NetworkPolicy
    ) -> None:
        """Apply the memory limit and the network policy to the kernel's sandbox."""
        prov = self._provisioner(kernel_id)
        if prov is None or not hasattr(prov, "confine"):
            raise RuntimeError(f"kernel {kernel_id} is not a sandboxed kernel")
        await prov.confine(memory_limit, network)

    def death_reason(self, kernel_id: str) -> str | None:
        """E.g. ``"memory limit 1g exceeded"`` when the kernel was killed for memory."""
        prov = self._provisioner(kernel_id)
        if prov is None or not hasattr(prov, "death_reason"):
            return None
        reason: str | None = prov.death_reason()
        return reason

    def describe(self, kernel_id: str | None, network: NetworkPolicy) -> SandboxInfo:
        """Mode, memory mechanism and network of a container."""
        net = (network or {}).get("type", self.default_network)
        return SandboxInfo(mode="bwrap", memory=self.memory, network=net)
