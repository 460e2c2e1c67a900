"""What the container service asks of a sandbox, and the unconfined default.

The service never imports the sandbox: the extension builds a :class:`Confinement` (the
bubblewrap one from ``jupyter_exec_sessions.sandbox``, or :class:`NoConfinement`) and hands it
to the service. A confinement decides how a container's kernel is started (which kernel spec,
which arguments, whether the container directory is bound at launch), applies a container's
``memory_limit`` and ``network_policy`` to a running kernel when it is handed out, and says why
a kernel died when it knows (``"memory limit 1g exceeded"``).
"""

from __future__ import annotations

from typing import Any, Protocol

from ..errors import InvalidRequestError
from ..models import SandboxInfo

__all__ = ["Confinement", "NetworkPolicy", "NoConfinement", "check_network_policy"]

#: ``None`` (no policy) or a validated ``{"type": "disabled"}`` /
#: ``{"type": "allowlist", "allowed_domains": [...]}``.
NetworkPolicy = dict[str, Any] | None


def check_network_policy(raw: dict[str, Any] | None) -> NetworkPolicy:
    """Validate OpenAI's ``network_policy`` shapes; 400 for anything else."""
    if raw is None:
        return None
    kind = raw.get("type")
    if kind == "disabled":
        return {"type": "disabled"}
    if kind == "allowlist":
        domains = raw.get("allowed_domains")
        if (
            not isinstance(domains, list)
            or not domains
            or not all(isinstance(d, str) and d.strip() for d in domains)
        ):
            raise InvalidRequestError(
                "network_policy.allowed_domains must be a non-empty list of domain names.",
                param="network_policy.allowed_domains",
            )
        return {"type": "allowlist", "allowed_domains": [d.strip() for d in domains]}
    raise InvalidRequestError(
        'network_policy.type must be "disabled" or "allowlist".', param="network_policy.type"
    )


class Confinement(Protocol):
    """How container kernels are confined (see the module docstring)."""

    #: ``"bwrap"`` or ``"none"``.
    mode: str
    #: True when a kernel's container directory is fixed when it starts (bound into its
    #: sandbox): a pool kernel can then never be re-pointed at an existing container.
    binds_workdir: bool

    def kernel_name(self, default: str) -> str:
        """The kernel spec to start container kernels with."""
        ...

    def start_kwargs(self, workdir: str) -> dict[str, Any]:
        """Arguments for ``kernel_manager.start_kernel`` of a kernel for ``workdir``."""
        ...

    def inside_workdir(self, workdir: str) -> str:
        """The container directory as the kernel sees it."""
        ...

    def resolve(self, memory_limit: str | None, network_policy: NetworkPolicy) -> NetworkPolicy:
        """The policy a new container gets (the default when none is asked); 400 if impossible."""
        ...

    async def start(self) -> None:
        """Prepare (e.g. clean up after a crash) before the first kernel starts."""
        ...

    async def confine(
        self, kernel_id: str, memory_limit: str | None, network: NetworkPolicy
    ) -> None:
        """Apply a container's limits to its (running) kernel."""
        ...

    def death_reason(self, kernel_id: str) -> str | None:
        """Why the kernel died, when known."""
        ...

    def describe(self, kernel_id: str | None, network: NetworkPolicy) -> SandboxInfo:
        """How a container's kernel is confined, for the container object."""
        ...


class NoConfinement:
    """Kernels run as plain processes of the server's user (``sandbox = none``).

    ``memory_limit`` is recorded, not enforced; a ``network_policy`` cannot be enforced and is
    refused with a 400 that says so.
    """

    mode = "none"
    binds_workdir = False

    def kernel_name(self, default: str) -> str:
        """The configured kernel spec, unchanged."""
        return default

    def start_kwargs(self, workdir: str) -> dict[str, Any]:
        """Start in the server's root directory; the setup enters ``workdir``."""
        return {"path": ""}

    def inside_workdir(self, workdir: str) -> str:
        """The kernel sees the server's own path."""
        return workdir

    def resolve(self, memory_limit: str | None, network_policy: NetworkPolicy) -> NetworkPolicy:
        """Refuse any network policy: without a sandbox it could not be enforced."""
        if network_policy is not None:
            raise InvalidRequestError(
                "network_policy cannot be enforced: this server runs containers without a"
                " sandbox (sandbox=none). Omit network_policy, or run the server with"
                " sandbox=bwrap.",
                param="network_policy",
            )
        return None

    async def start(self) -> None:
        """Nothing to prepare."""

    async def confine(
        self, kernel_id: str, memory_limit: str | None, network: NetworkPolicy
    ) -> None:
        """Nothing is enforced."""

    def death_reason(self, kernel_id: str) -> str | None:
        """Unknown."""
        return None

    def describe(self, kernel_id: str | None, network: NetworkPolicy) -> SandboxInfo:
        """No sandbox, no memory limit, the host's network."""
        return SandboxInfo(mode="none", memory=None, network="host")
