"""Derived kernel specs: the configured kernel spec with a provisioner of ours.

The fork server and the sandbox each run container kernels through their own kernel
provisioner. Each writes, at server start-up, a copy of the configured kernel spec
(``kernel_name``, e.g. ``python3``) whose ``metadata.kernel_provisioner`` selects that
provisioner, and registers the directory with the kernel spec manager. Everything else (argv,
env, language) stays the base spec's, so a kernel that has to be launched the ordinary way is
exactly the configured one.

A leaf: it imports nothing of the package (the fork server may import nothing else of it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["write_derived_kernelspec"]


def write_derived_kernelspec(
    kernel_spec_manager: Any,
    base_name: str,
    dest: Path,
    *,
    name: str,
    label: str,
    provisioner: str,
    config: dict[str, Any],
    interrupt_mode: str | None = None,
) -> Path:
    """Write ``base_name``'s spec as ``dest/name`` with ``provisioner``; register ``dest``.

    ``label`` is added to the display name (``"Python 3 (label)"``); ``interrupt_mode``
    replaces the base spec's when given. Returns the new spec's directory (for files kept
    beside it).
    """
    base = kernel_spec_manager.get_kernel_spec(base_name)
    spec_dir = dest / name
    spec_dir.mkdir(parents=True, exist_ok=True)
    metadata = dict(base.metadata or {})
    metadata["kernel_provisioner"] = {"provisioner_name": provisioner, "config": config}
    spec = {
        "argv": list(base.argv),
        "display_name": f"{base.display_name} ({label})",
        "language": base.language,
        "interrupt_mode": interrupt_mode or base.interrupt_mode,
        "env": dict(base.env or {}),
        "metadata": metadata,
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec, indent=1))
    dirs = list(kernel_spec_manager.kernel_dirs)
    if str(dest) not in dirs:
        kernel_spec_manager.kernel_dirs = [*dirs, str(dest)]
    return spec_dir
