"""ContainerCore: container lifecycle, registry, pool, limits and events. No tornado, no MCP.

A container is a row in the registry plus, while it is in use, a *slot*: a FIFO lock that
serialises everything that talks to its kernel (executions and file operations), the bounded
queue count, the running execution (so delete/expiry can cancel it) and the live kernel
session. Container CRUD is in ``_containers.py``, files in ``_files.py``, executions in
``_executions.py``; ``_service.py`` joins them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import posixpath
import secrets
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jupyter_core.utils import ensure_async

from ..engine.session import KernelSession
from ..errors import (
    ContainerExpiredError,
    ContainerNotFoundError,
)
from .events import EventBus
from .pool import KernelPool
from .store import ContainerRow, Store

__all__ = ["ContainerCore", "ServiceConfig", "Slot", "new_id"]

log = logging.getLogger("jupyter_exec_sessions")


@dataclass
class ServiceConfig:
    """Limits and tunables (the app's traitlets, documented there)."""

    data_dir: Path
    pool_size: int = 2
    kernel_name: str = "python3"
    max_containers_per_user: int = 20
    max_containers: int = 100
    max_upload_bytes: int = 64 * 1024 * 1024
    max_code_bytes: int = 1024 * 1024
    max_queue_depth: int = 32
    default_timeout_ms: int = 120_000
    max_timeout_ms: int = 3_600_000
    default_max_output_length: int = 65_536
    max_output_length_limit: int = 4 * 1024 * 1024
    default_expires_minutes: int = 20
    minute_seconds: float = 60.0
    reaper_interval: float = 5.0
    interrupt_grace_s: float = 3.0


@dataclass
class _Live:
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
    live: _Live | None = None
    gone: bool = False


def new_id(prefix: str) -> str:
    """A new random id: ``prefix`` + 32 hex digits."""
    return prefix + secrets.token_hex(16)


class ContainerCore:
    """Containers and their kernels: lifecycle, lookup, expiry, events."""

    def __init__(self, kernel_manager: Any, config: ServiceConfig) -> None:
        self.km = kernel_manager
        self.config = config
        self.containers_dir = config.data_dir / "containers"
        self.containers_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(config.data_dir / "exec_sessions.sqlite")
        self.events = EventBus(self.store)
        self.pool: KernelPool[KernelSession] = KernelPool(
            kernel_manager,
            size=config.pool_size,
            kernel_name=config.kernel_name,
            path="",
            prepare=self._prepare_kernel,
            discard=self._discard_session,
            log=log,
        )
        self.slots: dict[str, Slot] = {}
        self._creating: dict[str, int] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Sweep directories no container owns (a crashed pool's), start the pool and reaper."""
        for entry in self.containers_dir.iterdir():
            if entry.name.startswith("cntr_") and self.store.get_container(entry.name) is None:
                await asyncio.to_thread(shutil.rmtree, entry, True)
        self.pool.start()
        self._reaper = asyncio.ensure_future(self._reap_loop())

    async def stop(self) -> None:
        """Stop the reaper, cancel executions, shut down every kernel we own."""
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)
        self.events.close()
        for slot in self.slots.values():
            if slot.running is not None:
                slot.running.cancel()
        await self.pool.stop()
        kernels = [s.live for s in self.slots.values() if s.live is not None]
        await asyncio.gather(*(self._shutdown(lv) for lv in kernels), return_exceptions=True)
        for t in list(self._background):
            t.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self.store.close()

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        """Run a coroutine in the background, keeping a reference until it ends."""
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    # ------------------------------------------------------------------ kernels
    async def _prepare_kernel(self, kernel_id: str) -> KernelSession:
        # A pool kernel is prepared as the container it will become: its id and directory are
        # chosen now, so handing it out needs no set-up round trip to the kernel.
        session = KernelSession(
            self.km.get_kernel(kernel_id),
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
            self.spawn(asyncio.to_thread(shutil.rmtree, workdir, True))

    async def _shutdown(self, live: _Live) -> None:
        with contextlib.suppress(Exception):
            await live.session.close()
        with contextlib.suppress(Exception):
            await ensure_async(self.km.shutdown_kernel(live.kernel_id, now=True))

    async def _attach_kernel(
        self, container_id: str | None = None, workdir: str | None = None
    ) -> tuple[_Live, bool]:
        """Take a kernel from the pool (or start one); bind it to an existing container.

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
        live = _Live(pooled.kernel_id, session)
        kernel = self.km.get_kernel(pooled.kernel_id)
        if hasattr(self.km, "stop_watching_activity"):
            # jupyter_server decodes every IOPub message of every kernel a second time to track
            # activity for its culler; our reaper owns these kernels' lifetimes, and
            # ``_executions`` keeps ``execution_state``/``last_activity`` current instead.
            with contextlib.suppress(Exception):
                self.km.stop_watching_activity(pooled.kernel_id)
        if hasattr(kernel, "add_restart_callback"):

            def on_restart() -> None:
                live.restarted = True

            kernel.add_restart_callback(on_restart, "restart")
        if container_id is not None:
            self.store.set_kernel(container_id, pooled.kernel_id)
        return live, from_pool

    async def ensure_live(self, row: ContainerRow, slot: Slot) -> _Live:
        """The container's live kernel; replaced (state marked lost) if it died or is gone.

        Call with ``slot.lock`` held.
        """
        live = slot.live
        if live is not None:
            alive = not live.restarted and await self._alive(live.kernel_id)
            if alive:
                return live
            reason = "kernel_died"
            slot.live = None
            self.spawn(self._shutdown(live))
        elif row.kernel_id is not None:
            reason = "server_restart"
        else:
            reason = "started"
        new, _ = await self._attach_kernel(row.id, row.workdir)
        slot.live = new
        if reason != "started":
            self.store.mark_state_lost(row.id)
            self.events.emit(
                "kernel.restarted",
                owner=row.owner,
                container_id=row.id,
                reason=reason,
                kernel_id=new.kernel_id,
            )
        return new

    async def replace_kernel(self, row: ContainerRow, slot: Slot, reason: str) -> None:
        """Throw the container's kernel away (state lost); a fresh one is attached on next use."""
        live, slot.live = slot.live, None
        if live is not None:
            self.spawn(self._shutdown(live))
        self.store.mark_state_lost(row.id)
        self.store.set_kernel(row.id, None)
        self.events.emit("kernel.restarted", owner=row.owner, container_id=row.id, reason=reason)

    def mark_kernel_state(self, kernel_id: str, state: str | None = None) -> None:
        """Keep jupyter_server's view of the kernel (``/api/kernels``, its culler) current.

        With a ``state`` (an execution starting or ending) it is also server activity; without
        one only the kernel's ``last_activity`` moves, so its culler leaves it alone.
        """
        kernel = getattr(self.km, "_kernels", {}).get(kernel_id)
        if kernel is None:
            return
        now = datetime.now(timezone.utc)
        kernel.last_activity = now
        if state is not None:
            kernel.execution_state = state
            self.km.last_kernel_activity = now

    async def _alive(self, kernel_id: str) -> bool:
        try:
            return bool(await ensure_async(self.km.get_kernel(kernel_id).is_alive()))
        except Exception:
            return False

    # ------------------------------------------------------------------ lookup
    def owned(self, owner: str, container_id: str) -> ContainerRow:
        """The owner's container, expiring it first if its time is up; else 404."""
        row = self.store.get_container(container_id)
        if row is None or row.owner != owner:
            raise ContainerNotFoundError(container_id)
        if row.status == "running" and self._is_past_expiry(row, time.time()):
            self._expire(row)
            row.status = "expired"
        return row

    def usable(self, owner: str, container_id: str) -> tuple[ContainerRow, Slot]:
        """The owner's running container and its slot, touched; 400 if expired."""
        row = self.owned(owner, container_id)
        if row.status != "running":
            raise ContainerExpiredError(container_id)
        now = time.time()
        self.store.touch(row.id, now)
        row.last_active_at = now
        return row, self.slots.setdefault(row.id, Slot())

    async def _teardown(self, slot: Slot | None, workdir: str, *, remove: bool) -> None:
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
            await asyncio.to_thread(shutil.rmtree, workdir, True)

    # ------------------------------------------------------------------ expiry
    def _is_past_expiry(self, row: ContainerRow, now: float) -> bool:
        slot = self.slots.get(row.id)
        if slot is not None and (slot.busy or slot.waiting):
            # running or queued work is activity: a long execution never expires its container
            row.last_active_at = now
            self.store.touch(row.id, now)
            return False
        return row.last_active_at + row.expires_minutes * self.config.minute_seconds < now

    def _expire(self, row: ContainerRow) -> None:
        self.store.set_status(row.id, "expired")
        slot = self.slots.pop(row.id, None)
        self.events.emit("container.expired", owner=row.owner, container_id=row.id)
        self.spawn(self._teardown(slot, row.workdir, remove=False))

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.reaper_interval)
            try:
                self.reap()
            except Exception:
                log.exception("exec-sessions: reaper failed")

    def reap(self) -> None:
        """Expire every container past its time; keep our kernels safe from the culler."""
        now = time.time()
        for row in self.store.running_containers():
            if self._is_past_expiry(row, now):
                self._expire(row)
        ours = self.pool.kernel_ids() | {
            s.live.kernel_id for s in self.slots.values() if s.live is not None
        }
        for kernel_id in ours:
            self.mark_kernel_state(kernel_id)

    @contextlib.asynccontextmanager
    async def kernel(self, row: ContainerRow, slot: Slot) -> AsyncIterator[KernelSession]:
        """Hold the container's slot lock and yield its live kernel session."""
        async with slot.lock:
            self.check_slot(row, slot)
            live = await self.ensure_live(row, slot)
            yield live.session

    def check_slot(self, row: ContainerRow, slot: Slot) -> None:
        """Raise if the container was deleted or expired while the caller waited."""
        if slot.gone:
            current = self.store.get_container(row.id)
            if current is None:
                raise ContainerNotFoundError(row.id)
            raise ContainerExpiredError(row.id)
