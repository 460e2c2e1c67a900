"""Container kernels: the warm pool, one live kernel per container, and its slot.

A container in use has a *slot*: a FIFO lock that serialises everything that talks to its
kernel (executions and file operations), the queue count, the running execution (so delete
and expiry can cancel it) and the live kernel session. :class:`ContainerKernels` attaches
kernels to containers (from the pool, or cold), notices dead ones and replaces them with the
state marked lost, and tears them down. It knows containers only as registry rows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import posixpath
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._contract import new_id
from ..engine import KernelSession
from ..errors import ContainerExpiredError, ContainerNotFoundError
from ..models import KernelRestartedData
from .background import BackgroundTasks
from .config import ServiceConfig
from .events import EventBus
from .kernel_manager import KernelManagerAdapter
from .pool import KernelPool
from .store import ContainerRow, Store

__all__ = ["ContainerKernels", "LiveKernel", "Slot"]

log = logging.getLogger("jupyter_exec_sessions")


@dataclass
class LiveKernel:
    """The kernel a container runs in now, and its engine session."""

    kernel_id: str
    session: KernelSession
    restarted: bool = False  # set by the kernel manager's restart callback


@dataclass
class Slot:
    """Runtime control of one container (in memory only)."""

    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    waiting: int = 0
    running: asyncio.Task[Any] | None = None
    busy: bool = False
    interrupted: bool = False
    live: LiveKernel | None = None
    gone: bool = False


class ContainerKernels:
    """Kernels of containers: pool, attach, liveness, replacement, teardown."""

    def __init__(
        self,
        manager: KernelManagerAdapter,
        config: ServiceConfig,
        store: Store,
        events: EventBus,
        background: BackgroundTasks,
    ) -> None:
        self.manager = manager
        self.config = config
        self.store = store
        self.events = events
        self.background = background
        self.containers_dir = config.data_dir / "containers"
        self.containers_dir.mkdir(parents=True, exist_ok=True)
        self.pool: KernelPool[KernelSession] = KernelPool(
            manager,
            size=config.pool_size,
            max_size=config.pool_max_size,
            idle_s=config.pool_idle_seconds,
            max_starts=config.max_kernel_starts,
            kernel_name=config.kernel_name,
            path="",
            prepare=self._prepare_kernel,
            discard=self._discard_session,
            log=log,
        )
        self.slots: dict[str, Slot] = {}

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Sweep directories no container owns (a crashed pool's) and start the pool."""
        for entry in self.containers_dir.iterdir():
            if entry.name.startswith("cntr_") and self.store.get_container(entry.name) is None:
                await asyncio.to_thread(shutil.rmtree, entry, True)
        self.pool.start()

    async def stop(self) -> None:
        """Cancel executions and shut down every kernel we own (pool included)."""
        for slot in self.slots.values():
            if slot.running is not None:
                slot.running.cancel()
        await self.pool.stop()
        lives = [s.live for s in self.slots.values() if s.live is not None]
        await asyncio.gather(*(self._shutdown(lv) for lv in lives), return_exceptions=True)

    def kernel_ids(self) -> set[str]:
        """Every kernel the service owns: pool kernels and containers' live kernels."""
        return self.pool.kernel_ids() | {
            s.live.kernel_id for s in self.slots.values() if s.live is not None
        }

    # ------------------------------------------------------------------ pool hooks
    async def _prepare_kernel(self, kernel_id: str) -> KernelSession:
        # A pool kernel is prepared as the container it will become: its id and directory are
        # chosen now, so handing it out needs no set-up round trip to the kernel.
        session = KernelSession(
            self.manager.get(kernel_id),
            str(self.containers_dir / new_id("cntr_")),
            interrupt_grace_s=self.config.interrupt_grace_s,
        )
        await session.start()
        await session.warm_up()
        return session

    async def _discard_session(self, session: KernelSession) -> None:
        await session.close()
        self._remove_unclaimed(session.workdir)

    def _remove_unclaimed(self, workdir: str) -> None:
        """Remove a pool kernel's directory that never became a container's."""
        if self.store.get_container(posixpath.basename(workdir)) is None:
            self.background.spawn(asyncio.to_thread(shutil.rmtree, workdir, True))

    async def _shutdown(self, live: LiveKernel) -> None:
        with contextlib.suppress(Exception):
            await live.session.close()
        await self.manager.shutdown(live.kernel_id)

    # ------------------------------------------------------------------ attach
    async def attach(
        self, container_id: str | None = None, workdir: str | None = None
    ) -> tuple[LiveKernel, bool]:
        """Take a kernel from the pool (or start one) and whether it came from the pool.

        Without ``container_id`` the kernel keeps the container id and directory the pool
        gave it (a new container). For an existing container the kernel is re-pointed at its
        directory: the setup is pipelined, sent now and run before any later request.
        """
        pooled, from_pool = await self.pool.take()
        session = pooled.prepared
        if workdir is not None and session.workdir != workdir:
            unclaimed, session.workdir = session.workdir, workdir
            session.start_setup_nowait()
            self._remove_unclaimed(unclaimed)
        live = LiveKernel(pooled.kernel_id, session)

        def on_restart() -> None:
            live.restarted = True

        self.manager.take_over(pooled.kernel_id, on_restart)
        if container_id is not None:
            self.store.set_kernel(container_id, pooled.kernel_id)
        return live, from_pool

    async def ensure_live(self, row: ContainerRow, slot: Slot) -> LiveKernel:
        """The container's live kernel; replaced (state marked lost) if it died or is gone.

        Call with ``slot.lock`` held.
        """
        live = slot.live
        if live is not None:
            if not live.restarted and await self.manager.is_alive(live.kernel_id):
                return live
            reason = "kernel_died"
            slot.live = None
            self.background.spawn(self._shutdown(live))
        elif row.kernel_id is not None:
            reason = "server_restart"
        else:
            reason = "started"
        new, _ = await self.attach(row.id, row.workdir)
        slot.live = new
        if reason != "started":
            self.store.mark_state_lost(row.id)
            self.events.emit(
                KernelRestartedData(reason=reason, kernel_id=new.kernel_id),
                owner=row.owner,
                container_id=row.id,
            )
        return new

    async def replace(self, row: ContainerRow, slot: Slot, reason: str) -> None:
        """Throw the container's kernel away (state lost); a fresh one is attached on next use."""
        live, slot.live = slot.live, None
        if live is not None:
            self.background.spawn(self._shutdown(live))
        self.store.mark_state_lost(row.id)
        self.store.set_kernel(row.id, None)
        self.events.emit(KernelRestartedData(reason=reason), owner=row.owner, container_id=row.id)

    @contextlib.asynccontextmanager
    async def session(self, row: ContainerRow, slot: Slot) -> AsyncIterator[KernelSession]:
        """Hold the container's slot lock and yield its live kernel session."""
        async with slot.lock:
            self.check_slot(row, slot)
            live = await self.ensure_live(row, slot)
            yield live.session

    def check_slot(self, row: ContainerRow, slot: Slot) -> None:
        """Raise if the container was deleted or expired while the caller waited."""
        if slot.gone:
            if self.store.get_container(row.id) is None:
                raise ContainerNotFoundError(row.id)
            raise ContainerExpiredError(row.id)

    async def teardown(self, slot: Slot | None, workdir: str, *, remove: bool) -> None:
        """End a container's kernel use: cancel its execution, shut its kernel, maybe rm -r."""
        if slot is not None:
            slot.gone = True
            running = slot.running
            if running is not None and not running.done():
                running.cancel()
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(asyncio.shield(running), timeout=10)
            if slot.live is not None:
                live, slot.live = slot.live, None
                await self._shutdown(live)
        if remove:
            await asyncio.to_thread(shutil.rmtree, Path(workdir), True)
