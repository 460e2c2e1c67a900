"""The service's limits and tunables.

The defaults are not here: they are the traitlets of the server extension
(``ExecSessionsApp``), which builds this object from its traits (:meth:`ServiceConfig.from_traits`);
README's limits table is generated from the same traits.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ServiceConfig"]


@dataclass(frozen=True)
class ServiceConfig:
    """Limits and tunables of the container service (documented on the app's traits)."""

    data_dir: Path
    pool_size: int
    pool_max_size: int
    pool_idle_seconds: float
    max_kernel_starts: int
    kernel_name: str
    max_containers_per_user: int
    max_containers: int
    max_upload_bytes: int
    max_code_bytes: int
    max_shell_commands: int
    max_queue_depth: int
    default_timeout_ms: int
    max_timeout_ms: int
    default_max_output_length: int
    max_output_length_limit: int
    default_expires_minutes: int
    minute_seconds: float
    reaper_interval: float
    interrupt_grace_s: float
    execution_history_size: int
    execution_history_outputs: int
    #: kernels live elsewhere (a gateway): nothing of theirs is on the server's filesystem
    remote_kernels: bool
    #: with remote kernels: where container directories go, on the kernels' side
    remote_workdir_root: str
    implicit_expires_minutes: int = 10
    implicit_wait_s: float = 60.0
    implicit_evict_idle_s: float = 5.0

    @classmethod
    def from_traits(cls, source: Any) -> ServiceConfig:
        """Build the config from an object with one attribute per field (the app)."""
        values = {f.name: getattr(source, f.name) for f in dataclasses.fields(cls)}
        values["data_dir"] = Path(values["data_dir"])
        return cls(**values)
