"""The kernel spec of forked container kernels.

Written by the server at start-up under its data directory: a copy of the configured kernel
spec (``kernel_name``, e.g. ``python3``) whose ``metadata.kernel_provisioner`` selects the
``exec-sessions-fork`` provisioner. Everything else (argv, env, interrupt mode) is the base
spec's, so a kernel the provisioner has to launch instead is exactly the configured one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from .._kernelspecs import write_derived_kernelspec
from .provisioner import PROVISIONER_NAME, fork_argv

__all__ = ["can_fork_spec", "write_kernelspec"]


def can_fork_spec(kernel_spec_manager: Any, base_name: str) -> bool:
    """Whether ``base_name`` runs ``<python> -m ipykernel_launcher`` (forkable).

    A bare ``python`` is what jupyter_client replaces with the server's own interpreter.
    """
    try:
        argv = list(kernel_spec_manager.get_kernel_spec(base_name).argv)
    except Exception:
        return False
    if argv and not os.path.isabs(argv[0]) and argv[0].startswith("python"):
        argv[0] = sys.executable
    return fork_argv(argv) is not None


def write_kernelspec(
    kernel_spec_manager: Any, base_name: str, dest: Path, preload: str = ""
) -> str:
    """Write the forked variant of ``base_name`` under ``dest``, register ``dest``; its name.

    ``preload``: Python source the template runs once before it forks any kernel (e.g. to
    install modules every kernel would otherwise compile); kept beside the spec.
    """
    name = f"exec-sessions-fork-{base_name}"
    config: dict[str, Any] = {}
    if preload:  # the template reads it from beside the spec
        preload_file = dest / name / "preload.py"
        preload_file.parent.mkdir(parents=True, exist_ok=True)
        preload_file.write_text(preload)
        config["preload"] = str(preload_file)
    write_derived_kernelspec(
        kernel_spec_manager,
        base_name,
        dest,
        name=name,
        label="exec-sessions fork",
        provisioner=PROVISIONER_NAME,
        config=config,
    )
    return name
