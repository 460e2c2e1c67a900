"""Choosing the sandbox at start-up: ``sandbox = auto | bwrap | none``.

``auto`` confines container kernels with bubblewrap when that works on this host (Linux, bwrap
installed and able to create its namespaces, local kernels) and otherwise runs them
unconfined; either way the server log says once what was chosen and why. ``bwrap`` insists:
the server refuses to start when bubblewrap cannot confine kernels here. ``none`` never
confines (kernels are plain processes of the server's user).
"""

from __future__ import annotations

import hashlib
import logging
import sys
import tempfile
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from ..service.confinement import Confinement, NoConfinement, check_network_policy

__all__ = ["build_confinement", "provisioner_missing", "sandbox_state_dir"]

#: Unix socket paths are limited to 107 bytes; the per-kernel dirs must stay short.
_MAX_STATE_DIR = 60


def sandbox_state_dir(data_dir: Path) -> Path:
    """Where the per-kernel sandbox directories live: short, and this server's own."""
    preferred = data_dir / "sandbox"
    if len(str(preferred)) <= _MAX_STATE_DIR:
        return preferred
    digest = hashlib.sha1(str(data_dir.resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"jes-{digest}"


def provisioner_missing(name: str) -> str | None:
    """Why the kernel provisioner ``name`` cannot be used here, or ``None`` when it can.

    jupyter_client finds provisioners through the package's entry points; an install whose
    metadata predates one (an old editable install, say) would fail every kernel start.
    """
    if entry_points(group="jupyter_client.kernel_provisioners", name=name):
        return None
    return (
        f"the {name!r} kernel provisioner is not registered (reinstall jupyter-exec-sessions:"
        " its entry points are out of date)"
    )


def build_confinement(
    *,
    mode: str,
    kernel_manager: Any,
    gateway: bool,
    kernel_name: str,
    data_dir: Path,
    default_network_policy: dict[str, Any],
    proxy_resolve: dict[str, str],
    bwrap: str,
    log: logging.Logger,
) -> Confinement:
    """The confinement for ``mode``; logs the choice; raises when ``bwrap`` cannot work."""
    default_net = check_network_policy(default_network_policy) or {"type": "disabled"}
    if mode == "none":
        log.info("jupyter-exec-sessions: sandbox=none: container kernels are not confined")
        return NoConfinement()
    ok, why = _usable(gateway, bwrap)
    if not ok:
        if mode == "bwrap":
            raise RuntimeError(f"jupyter-exec-sessions: sandbox=bwrap but {why}")
        log.warning(
            "jupyter-exec-sessions: sandbox=auto chose none (container kernels are NOT"
            " confined): %s",
            why,
        )
        return NoConfinement()
    from ..sandbox.confinement import BwrapConfinement

    confinement = BwrapConfinement(
        kernel_manager,
        base_kernel_name=kernel_name,
        spec_dir=data_dir / "kernelspecs",
        state_dir=sandbox_state_dir(data_dir),
        default_network=default_net["type"],
        proxy_resolve=proxy_resolve,
        bwrap=bwrap,
    )
    if default_net["type"] == "allowlist":
        confinement.default_policy = default_net
    log.info(
        "jupyter-exec-sessions: sandbox=bwrap (%s: %s); memory limits via %s; default"
        " network policy %s",
        mode,
        why,
        confinement.memory,
        default_net["type"],
    )
    return confinement


def _usable(gateway: bool, bwrap: str) -> tuple[bool, str]:
    if gateway:
        return False, "kernels run on a remote gateway (gateway_url): confine them there"
    if not sys.platform.startswith("linux"):
        return False, f"bubblewrap needs Linux (this is {sys.platform})"
    from ..sandbox._kernelspec import PROVISIONER_NAME
    from ..sandbox._probe import probe_bwrap

    missing = provisioner_missing(PROVISIONER_NAME)
    if missing is not None:
        return False, missing
    return probe_bwrap(bwrap)
