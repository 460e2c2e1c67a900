"""The kernel spec of confined container kernels.

Written by the server at start-up next to its data: a copy of the configured kernel spec
(``kernel_name``, e.g. ``python3``) whose ``metadata.kernel_provisioner`` selects the
``exec-sessions-bwrap`` provisioner with this server's configuration, and whose
``interrupt_mode`` is ``message`` (interrupts travel over the kernel's control channel; no
signal has to cross the sandbox boundary).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .._kernelspecs import write_derived_kernelspec

__all__ = ["PROVISIONER_NAME", "write_kernelspec"]

PROVISIONER_NAME = "exec-sessions-bwrap"


def write_kernelspec(
    kernel_spec_manager: Any, base_name: str, dest: Path, config: dict[str, Any]
) -> str:
    """Write the confined variant of ``base_name`` under ``dest``; register ``dest``; its name."""
    name = f"exec-sessions-sandbox-{base_name}"
    write_derived_kernelspec(
        kernel_spec_manager,
        base_name,
        dest,
        name=name,
        label="exec-sessions sandbox",
        provisioner=PROVISIONER_NAME,
        config=config,
        interrupt_mode="message",
    )
    return name
