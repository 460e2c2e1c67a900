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
import secrets
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
from .confinement import Confinement, NetworkPolicy
from .events import EventBus
from .kernel_manager import KernelManagerAdapter
from .pool import KernelPool
from .store import ContainerRow, Store

__all__ = ["ContainerKernels", "LiveKernel", "Slot", "server_id"]

log = logging.getLogger("jupyter_exec_sessions")


def server_id(data_dir: Path) -> str:
    """The server's id: random, made once, kept in ``<data_dir>/server_id``."""
    path = data_dir / "server_id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        value = "srv_" + secrets.token_hex(8)
        path.write_text(value + "\n")
        return value


@dataclass
class LiveKernel:
    """The kernel a container runs in now, and its engine session."""

    kernel_id: str
    session: KernelSession
    workdir: str  # the container directory on the server (the session's is the kernel's view)
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
        confinement: Confinement,
    ) -> None:
        self.manager = manager
        self.confinement = confinement
        self.config = config
        self.store = store
        self.events = events
        self.background = background
        self.remote = config.remote_kernels
        self.containers_dir = config.data_dir / "containers"
        self.containers_dir.mkdir(parents=True, exist_ok=True)
        #: where container directories live, as the kernels see it; with remote kernels one
        #: directory per server (its id is kept in the data dir), so that servers sharing a
        #: gateway never sweep each other's containers
        self.workdir_root = str(self.containers_dir)
        #: each local unconfined kernel's shell state, removed with the kernel (a sandboxed
        #: kernel's temp dir is private and goes with it; a remote kernel's is on its side)
        self.shells_dir: Path | None = None
        if not self.remote and not confinement.binds_workdir:
            self.shells_dir = config.data_dir / "shells"
        if self.remote:
            root, sid = config.remote_workdir_root, server_id(config.data_dir)
            self.workdir_root = posixpath.join(root, sid)
        self.pool: KernelPool[KernelSession] = KernelPool(
            manager,
            size=config.pool_size,
            max_size=config.pool_max_size,
            idle_s=config.pool_idle_seconds,
            max_starts=config.max_kernel_starts,
            kernel_name=confinement.kernel_name(config.kernel_name),
            new_workdir=lambda: posixpath.join(self.workdir_root, new_id("cntr_")),
            start_kwargs=confinement.start_kwargs,
            prepare=self._prepare_kernel,
            discard=self._discard_session,
            log=log,
            # a remote kernel's death reaches its session (websocket): no REST call per take
            usable=(lambda s: not s.kernel_lost) if self.remote else None,
        )
        self.slots: dict[str, Slot] = {}
        #: owner of every live container kernel until it is shut down ("" while nobody's)
        self.kernel_owners: dict[str, str] = {}
        self._swept = False
        #: names of the container directories this run of the server made (the sweep keeps
        #: them even before their container is registered: a pool kernel's, a create's)
        self._made: set[str] = set()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        """Clear what a crashed run left and start the pool.

        Local kernels: directories no container owns (a crashed pool's) are removed here; the
        kernels died with the server. Remote kernels outlive a crash on their gateway: every
        kernel this server started and did not shut down is shut down now through the gateway
        (their containers get fresh kernels on next use and report ``state_reset``), and the
        directory sweep runs on the kernels' side, in the first kernel the pool prepares.
        """
        if self.remote:
            await asyncio.gather(*map(self._shutdown_orphan, self.store.kernel_ids()))
        else:
            for kernel_id in self.store.kernel_ids():  # local kernels are never reattached
                self.store.remove_kernel(kernel_id)
            for entry in self.containers_dir.iterdir():
                if entry.name.startswith("cntr_") and self.store.get_container(entry.name) is None:
                    await asyncio.to_thread(shutil.rmtree, entry, True)
            if self.shells_dir is not None:  # every kernel that used them is gone
                await asyncio.to_thread(shutil.rmtree, self.shells_dir, True)
        await self.confinement.start()
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

    def kernel_owner(self, kernel_id: str) -> str | None:
        """The owner of a container kernel; ``""`` for a pool kernel; None if not ours."""
        owner = self.kernel_owners.get(kernel_id)
        if owner is not None:
            return owner
        if kernel_id in self.pool.kernel_ids():
            return ""
        return None

    # ------------------------------------------------------------------ pool hooks
    async def _prepare_kernel(self, kernel_id: str, workdir: str, wanted: bool) -> KernelSession:
        # A pool kernel is prepared as the container it will become: its id and directory are
        # chosen before it starts, so handing it out needs no set-up round trip to the kernel.
        # One that a create is ``wanted`` by (the pool was empty) is handed over as soon as it
        # answers: its set-up is sent but not waited for (the create's first execution queues
        # behind it in the kernel, a set-up failure is raised there), and it gets no warm-up
        # cell (the first execution costs that much more instead of waiting for it).
        self._made.add(posixpath.basename(workdir))
        session = KernelSession(
            self.manager.get(kernel_id),
            self.confinement.inside_workdir(workdir),
            interrupt_grace_s=self.config.interrupt_grace_s,
            # a remote kernel's death is pushed to its session (engine.channel); polling the
            # gateway is only the fallback and costs a REST call each time
            alive_poll_s=2.0 if self.remote else 0.25,
            shell_dir=None if self.shells_dir is None else str(self.shells_dir / kernel_id),
        )
        confinement = self.confinement
        session.death_reason = lambda: confinement.death_reason(kernel_id)
        self.store.add_kernel(kernel_id)
        hurry = wanted and not self.remote  # a gateway's kernels: set up as they always were
        await session.start(wait_setup=not hurry)
        if not hurry:
            await session.warm_up()
        if self.remote and not self._swept:
            self._swept = True
            await self._sweep_remote(session)
        return session

    async def _sweep_remote(self, session: KernelSession) -> None:
        """Remove container directories no container owns, on the kernels' side."""
        try:
            names = await session.list_container_dirs()
            orphans = [
                n for n in names if n not in self._made and self.store.get_container(n) is None
            ]
            if orphans:
                removed = await session.remove_container_dirs(orphans)
                log.info("exec-sessions: removed %d orphaned container directories", len(removed))
        except Exception:
            log.warning("exec-sessions: sweep of container directories failed", exc_info=True)

    async def _shutdown_orphan(self, kernel_id: str) -> None:
        """Shut down a remote kernel a previous run of this server left (a crash).

        A gateway answers now and then with an error while it is busy with other kernels: a
        failed attempt is repeated (three in all) before the kernel is left for the next start.
        """
        for attempt in range(3):
            try:
                if await self.manager.shutdown_unknown(kernel_id):
                    log.info("exec-sessions: shut down remote kernel %s left by a crash", kernel_id)
                break
            except Exception:
                if attempt == 2:
                    log.warning("could not shut down remote kernel %s", kernel_id, exc_info=True)
                    return
                await asyncio.sleep(0.5)
        self.store.remove_kernel(kernel_id)

    async def _discard_session(self, session: KernelSession, workdir: str) -> None:
        if self.remote:
            name = posixpath.basename(workdir)
            if self.store.get_container(name) is None and not session.kernel_lost:
                with contextlib.suppress(Exception):
                    await session.remove_container_dirs([name])
            await session.close()
        else:
            await session.close()
            self._remove_unclaimed(workdir)
        kernel_id = getattr(session.kernel, "kernel_id", None)
        if kernel_id:
            self.store.remove_kernel(kernel_id)
            self._remove_shell_dir(kernel_id)

    def _remove_shell_dir(self, kernel_id: str) -> None:
        """Remove a (local, unconfined) kernel's shell state directory, in the background."""
        if self.shells_dir is not None:
            path = self.shells_dir / kernel_id
            self.background.spawn(asyncio.to_thread(shutil.rmtree, path, True))

    def _remove_unclaimed(self, workdir: str) -> None:
        """Remove a (local) pool kernel's directory that never became a container's."""
        if self.store.get_container(posixpath.basename(workdir)) is None:
            self.background.spawn(asyncio.to_thread(shutil.rmtree, workdir, True))

    async def _remove_workdir(self, workdir: str) -> None:
        """Remove a container's directory where it lives: locally, or through a kernel.

        Remote kernels: through a pool kernel (container directories are siblings on the
        kernels' side), after the container's own kernel was shut down: that one may be stuck
        in code that ignores interrupts.
        """
        if not self.remote:
            await asyncio.to_thread(shutil.rmtree, Path(workdir), True)
            return
        name = posixpath.basename(workdir)
        try:
            async with self.pool.borrow() as session:
                await session.remove_container_dirs([name])
        except Exception:
            log.warning(
                "exec-sessions: could not remove %s on the kernels' side", workdir, exc_info=True
            )

    async def _shutdown(self, live: LiveKernel) -> None:
        with contextlib.suppress(Exception):
            await live.session.close()
        await self.manager.shutdown(live.kernel_id)
        self.kernel_owners.pop(live.kernel_id, None)
        self.store.remove_kernel(live.kernel_id)
        self._remove_shell_dir(live.kernel_id)

    # ------------------------------------------------------------------ attach
    async def attach(
        self,
        container_id: str | None = None,
        workdir: str | None = None,
        *,
        memory_limit: str | None = None,
        network: NetworkPolicy = None,
    ) -> tuple[LiveKernel, bool]:
        """Take a kernel from the pool (or start one) and whether it came from the pool.

        Without ``container_id`` the kernel keeps the container id and directory the pool
        gave it (a new container). For an existing container an unconfined pool kernel is
        re-pointed at its directory (the setup is pipelined, sent now and run before any
        later request); a sandbox binds the directory at launch, so there a kernel is started
        for it. Either way the container's limits are applied before the kernel is used.
        """
        if workdir is not None and self.confinement.binds_workdir:
            pooled, from_pool = await self.pool.start_for(workdir), False
        else:
            pooled, from_pool = await self.pool.take()
        self.kernel_owners[pooled.kernel_id] = ""  # nobody's until the caller says whose
        session = pooled.prepared
        if workdir is not None and pooled.workdir != workdir:
            unclaimed, pooled.workdir = pooled.workdir, workdir
            session.workdir = self.confinement.inside_workdir(workdir)
            if self.remote:  # the kernel removes it, in the same request
                owned = self.store.get_container(posixpath.basename(unclaimed)) is not None
                session.start_setup_nowait(drop=None if owned else unclaimed)
            else:
                session.start_setup_nowait()
                self._remove_unclaimed(unclaimed)
        live = LiveKernel(pooled.kernel_id, session, pooled.workdir)
        try:
            await self.confinement.confine(pooled.kernel_id, memory_limit, network)
        except BaseException:
            await self._shutdown(live)
            raise

        def on_restart() -> None:
            live.restarted = True
            session.kernel_replaced()  # a running execution ends as died, not at its deadline

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
            # remote kernels: the session's websocket hears of a death or a gateway restart,
            # so no REST round trip to the gateway is needed on every use
            alive = not live.restarted and not live.session.kernel_lost
            if alive and (self.remote or await self.manager.is_alive(live.kernel_id)):
                return live
            reason = "kernel_died"
            slot.live = None
            self.background.spawn(self._shutdown(live))
        elif row.kernel_id is not None:
            reason = "server_restart"
        else:
            reason = "started"
        new, _ = await self.attach(
            row.id, row.workdir, memory_limit=row.memory_limit, network=row.network
        )
        self.kernel_owners[new.kernel_id] = row.owner
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
            await self._remove_workdir(workdir)
