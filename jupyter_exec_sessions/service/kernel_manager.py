"""The one adapter between the service and the server's kernel manager.

Everything the service does to kernels goes through :class:`KernelManagerAdapter`: start,
look up, probe, shut down, and the optional features that only some managers have (activity
watching, restart callbacks, the activity fields that jupyter_server's culler and
``/api/kernels`` read). Those optional features are probed here and nowhere else, so the
service works unchanged over local kernels and over a gateway's remote kernels.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from jupyter_core.utils import ensure_async

from ..engine.session import KernelLike, KernelManagerLike

__all__ = ["KernelManagerAdapter"]

log = logging.getLogger("jupyter_exec_sessions")


class KernelManagerAdapter:
    """Typed access to a ``KernelManagerLike``; optional features degrade to no-ops."""

    def __init__(self, km: KernelManagerLike) -> None:
        self.km = km

    async def start(self, kernel_name: str, **kwargs: Any) -> str:
        """Start a kernel of ``kernel_name``; ``kwargs`` (``path``, ``cwd``) go to the manager."""
        return str(await ensure_async(self.km.start_kernel(kernel_name=kernel_name, **kwargs)))

    def get(self, kernel_id: str) -> KernelLike:
        """The kernel's manager; ``KeyError`` when the id is unknown."""
        return self.km.get_kernel(kernel_id)

    async def is_alive(self, kernel_id: str) -> bool:
        """Whether the kernel exists and its process (or remote kernel) is running."""
        try:
            return bool(await ensure_async(self.km.get_kernel(kernel_id).is_alive()))
        except Exception:
            return False

    async def shutdown(self, kernel_id: str) -> None:
        """Shut the kernel down now; an unknown or already gone kernel is not an error."""
        try:
            await ensure_async(self.km.shutdown_kernel(kernel_id, now=True))
        except Exception:
            log.debug("exec-sessions: shutdown of %s failed", kernel_id, exc_info=True)

    async def shutdown_unknown(self, kernel_id: str) -> bool:
        """Shut down a kernel the manager does not know: a previous run's, left on a gateway.

        Whether it was still there. Managers of local kernels cannot (their kernels die with
        the server that started them): False.
        """
        shutdown_orphan = getattr(self.km, "shutdown_orphan", None)
        if not callable(shutdown_orphan):
            return False
        return bool(await shutdown_orphan(kernel_id))

    def take_over(self, kernel_id: str, on_restart: Callable[[], None]) -> None:
        """Make the kernel a container's: we track its activity, death, and any restart.

        jupyter_server decodes every IOPub message of every kernel a second time to track
        activity for its culler; the service owns these kernels' lifetimes and keeps their
        ``execution_state``/``last_activity`` current itself (:meth:`mark_activity`).
        Its restarter would restart a dead kernel on the same ports behind an execution that
        waits for the dead one's reply, and start a process the container's confinement does
        not hold: the service notices the death and replaces the kernel itself, so the
        restarter is stopped. ``on_restart`` still hears of any restart that happens anyway.
        """
        stop_watching = getattr(self.km, "stop_watching_activity", None)
        if callable(stop_watching):
            with contextlib.suppress(Exception):
                stop_watching(kernel_id)
        with contextlib.suppress(KeyError):
            kernel = self.km.get_kernel(kernel_id)
            stop_restarter = getattr(kernel, "stop_restarter", None)
            if callable(stop_restarter):
                with contextlib.suppress(Exception):
                    # in this order: jupyter_client stops a restarter only while autorestart
                    # is on (the other order left it running, and it restarted the kernel
                    # once the container was deleted: a process nobody tracked)
                    stop_restarter()
                    kernel.autorestart = False  # type: ignore[attr-defined]
            add_callback = getattr(kernel, "add_restart_callback", None)
            if callable(add_callback):
                add_callback(on_restart, "restart")

    def mark_activity(self, kernel_id: str, state: str | None = None) -> None:
        """Keep jupyter_server's view of the kernel (``/api/kernels``, its culler) current.

        With a ``state`` (an execution starting or ending) it is also server activity; without
        one only the kernel's ``last_activity`` moves, so its culler leaves it alone.
        """
        try:
            kernel = self.km.get_kernel(kernel_id)
        except KeyError:
            return
        now = datetime.now(timezone.utc)
        with contextlib.suppress(AttributeError):
            kernel.last_activity = now  # type: ignore[attr-defined]
            if state is not None:
                kernel.execution_state = state  # type: ignore[attr-defined]
                self.km.last_kernel_activity = now  # type: ignore[attr-defined]
