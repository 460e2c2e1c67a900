"""The kernel spec of confined container kernels.

Written by the server at start-up next to its data: a copy of the configured kernel spec
(``kernel_name``, e.g. ``python3``) whose ``metadata.kernel_provisioner`` selects the
``exec-sessions-bwrap`` provisioner with this server's configuration, and whose
``interrupt_mode`` is ``message`` (interrupts travel over the kernel's control channel; no
signal has to cross the sandbox boundary).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["PROVISIONER_NAME", "write_kernelspec"]

PROVISIONER_NAME = "exec-sessions-bwrap"


def write_kernelspec(
    kernel_spec_manager: Any, base_name: str, dest: Path, config: dict[str, Any]
) -> str:
    """Write the confined variant of ``base_name`` under ``dest``; register ``dest``; its name."""
    base = kernel_spec_manager.get_kernel_spec(base_name)
    name = f"exec-sessions-sandbox-{base_name}"
    spec_dir = dest / name
    spec_dir.mkdir(parents=True, exist_ok=True)
    metadata = dict(base.metadata or {})
    metadata["kernel_provisioner"] = {"provisioner_name": PROVISIONER_NAME, "config": config}
    spec = {
        "argv": list(base.argv),
        "display_name": f"{base.display_name} (exec-sessions sandbox)",
        "language": base.language,
        "interrupt_mode": "message",
        "env": dict(base.env or {}),
        "metadata": metadata,
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    dirs = list(kernel_spec_manager.kernel_dirs)
    if str(dest) not in dirs:
        kernel_spec_manager.kernel_dirs = [*dirs, str(dest)]
    return name
