"""Containers: create (from the warm pool), look up, list, delete, expire; hook resolutions.

A container is a row in the registry plus, while it is in use, a slot with a live kernel
(:mod:`.kernels`). Every lookup checks expiry first, so an expired container is reported as
such even between two reaper sweeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import posixpath
import time
from typing import Literal

from ..errors import (
    ContainerExpiredError,
    ContainerNotFoundError,
    InvalidRequestError,
    QuotaExceededError,
)
from ..models import (
    Container,
    ContainerCreatedData,
    ContainerDeleted,
    ContainerDeletedData,
    ContainerExpiredData,
    ContainerList,
    ContainerResolvedData,
    CreateContainerRequest,
    ExecSessionsInfo,
    ExpiresAfter,
)
from .background import BackgroundTasks
from .config import ServiceConfig
from .confinement import check_network_policy
from .events import EventBus
from .kernels import ContainerKernels, Slot
from .store import ContainerRow, Store

__all__ = ["Containers"]

log = logging.getLogger("jupyter_exec_sessions")


class Containers:
    """The containers API of the service: lifecycle, lookup, limits and expiry."""

    def __init__(
        self,
        config: ServiceConfig,
        store: Store,
        events: EventBus,
        kernels: ContainerKernels,
        background: BackgroundTasks,
    ) -> None:
        self.config = config
        self.store = store
        self.events = events
        self.kernels = kernels
        self.background = background
        self._creating: dict[str, int] = {}
        self._reaper: asyncio.Task[None] | None = None
        self._room = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the expiry reaper."""
        self._reaper = asyncio.ensure_future(self._reap_loop())

    async def stop(self) -> None:
        """Stop the reaper."""
        if self._reaper is not None:
            self._reaper.cancel()
            await asyncio.gather(self._reaper, return_exceptions=True)

    # ------------------------------------------------------------------ wire objects
    def to_container(self, row: ContainerRow) -> Container:
        """The wire object of a container row."""
        slot = self.kernels.slots.get(row.id)
        sessions, turns = self.store.tag_counts(row.id)
        return Container(
            id=row.id,
            name=row.name,
            created_at=row.created_at,
            last_active_at=int(row.last_active_at),
            status="running" if row.status == "running" else "expired",
            expires_after=ExpiresAfter(minutes=row.expires_minutes),
            memory_limit=row.memory_limit,
            exec_sessions=ExecSessionsInfo(
                kernel_id=slot.live.kernel_id if slot and slot.live else None,
                executions=row.executions,
                sessions=sessions,
                turns=turns,
                state_resets=row.state_resets,
                busy=bool(slot and slot.busy),
                queued=slot.waiting if slot else 0,
                sandbox=self.kernels.confinement.describe(
                    slot.live.kernel_id if slot and slot.live else None, row.network
                ),
            ),
        )

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
        return row, self.kernels.slots.setdefault(row.id, Slot())

    # ------------------------------------------------------------------ API
    async def create(
        self, owner: str, request: CreateContainerRequest, *, implicit: bool = False
    ) -> Container:
        """Create a container from the warm pool (or a cold kernel when the pool is empty).

        At a quota, the owner's least recently used idle *implicit* container is evicted to
        make room (never an explicit one). An ``implicit`` container (made by MCP routing
        for a conversation or an MCP session) that still finds no room waits up to
        ``implicit_wait_s`` for one of the owner's implicit containers to become idle; when the
        owner has none (nor any being created), it is refused at once.
        """
        if request.file_ids:  # copied in by ContainerService.create_container
            raise InvalidRequestError(
                "file_ids are copied by ContainerService.create_container.", param="file_ids"
            )
        if request.skills:
            raise InvalidRequestError("skills is not supported by this server.", param="skills")
        network = self.kernels.confinement.resolve(
            request.memory_limit, check_network_policy(request.network_policy)
        )
        cfg = self.config
        await self._make_room(owner, wait=implicit)
        pending = self._creating.get(owner, 0)
        t0 = time.perf_counter()
        minutes = (
            request.expires_after or ExpiresAfter(minutes=cfg.default_expires_minutes)
        ).minutes
        self._creating[owner] = pending + 1
        try:
            live, from_pool = await self.kernels.attach(
                memory_limit=request.memory_limit, network=network
            )
        finally:
            self._creating[owner] -= 1
        self.kernels.kernel_owners[live.kernel_id] = owner
        workdir = live.workdir
        container_id = posixpath.basename(workdir)  # chosen by the pool for this kernel
        row = self.store.insert_container(
            id=container_id,
            owner=owner,
            name=request.name,
            expires_minutes=minutes,
            memory_limit=request.memory_limit,
            workdir=workdir,
            kernel_id=live.kernel_id,
            now=time.time(),
            network=network,
            implicit=implicit,
        )
        self.kernels.slots[container_id] = Slot(live=live)
        self.events.emit(
            ContainerCreatedData(
                name=request.name,
                from_pool=from_pool,
                latency_ms=round((time.perf_counter() - t0) * 1000, 3),
                kernel_id=live.kernel_id,
            ),
            owner=owner,
            container_id=container_id,
        )
        return self.to_container(row)

    def retrieve(self, owner: str, container_id: str) -> Container:
        """The container object; refreshes ``last_active_at`` unless expired."""
        row = self.owned(owner, container_id)
        if row.status == "running":
            row.last_active_at = time.time()
            self.store.touch(row.id, row.last_active_at)
        return self.to_container(row)

    def list(
        self, owner: str, *, after: str | None, limit: int, order: str, name: str | None
    ) -> ContainerList:
        """A cursor page of the owner's containers."""
        now = time.time()
        rows, has_more = self.store.list_containers(
            owner, after=after, limit=limit, order=order, name=name
        )
        for row in rows:
            if row.status == "running" and self._is_past_expiry(row, now):
                self._expire(row)
                row.status = "expired"
        data = [self.to_container(r) for r in rows]
        return ContainerList(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=has_more,
        )

    async def delete(self, owner: str, container_id: str) -> ContainerDeleted:
        """Delete the container: cancel its executions, shut its kernel, remove its files."""
        row = self.owned(owner, container_id)
        slot = self.kernels.slots.pop(container_id, None)
        self.store.delete_container(container_id)
        self.events.emit(ContainerDeletedData(), owner=owner, container_id=container_id)
        self.background.spawn(self.kernels.teardown(slot, row.workdir, remove=True))
        self.notify_room()
        return ContainerDeleted(id=container_id)

    def record_resolution(
        self, owner: str, container_id: str, resolution: ContainerResolvedData
    ) -> None:
        """Publish a session-hook decision as ``container.resolved``."""
        self.owned(owner, container_id)
        self.events.emit(resolution, owner=owner, container_id=container_id)

    # ------------------------------------------------------------------ expiry
    def _is_past_expiry(self, row: ContainerRow, now: float) -> bool:
        slot = self.kernels.slots.get(row.id)
        if slot is not None and (slot.busy or slot.waiting):
            # running or queued work is activity: a long execution never expires its container
            row.last_active_at = now
            self.store.touch(row.id, now)
            return False
        return row.last_active_at + row.expires_minutes * self.config.minute_seconds < now

    def _expire(
        self, row: ContainerRow, reason: Literal["idle", "evicted", "session_closed"] = "idle"
    ) -> None:
        # "evicted" is kept as the stored status so that a conversation coming back can be
        # told why its container is gone; on the wire every non-running container is expired.
        self.store.set_status(row.id, "evicted" if reason == "evicted" else "expired")
        slot = self.kernels.slots.pop(row.id, None)
        self.events.emit(ContainerExpiredData(reason=reason), owner=row.owner, container_id=row.id)
        self.background.spawn(self.kernels.teardown(slot, row.workdir, remove=False))
        self.notify_room()

    def expire_now(
        self, owner: str, container_id: str, reason: Literal["idle", "session_closed"]
    ) -> bool:
        """Expire the owner's running container now (e.g. its MCP session ended)."""
        row = self.store.get_container(container_id)
        if row is None or row.owner != owner or row.status != "running":
            return False
        self._expire(row, reason)
        return True

    # ------------------------------------------------------------------ quota and eviction
    def notify_room(self) -> None:
        """Wake creators waiting for room: a container went idle, expired or was deleted."""
        self._room.set()
        self._room = asyncio.Event()

    def _at_quota(self, owner: str) -> str | None:
        cfg = self.config
        pending = self._creating.get(owner, 0)
        if self.store.count_containers(owner) + pending >= cfg.max_containers_per_user:
            return (
                f"Container limit reached: at most {cfg.max_containers_per_user} running"
                " containers per user (max_containers_per_user). Delete a container or wait"
                " for one to expire."
            )
        if self.store.count_containers() + sum(self._creating.values()) >= cfg.max_containers:
            return (
                f"Container limit reached: at most {cfg.max_containers} running containers"
                " on this server (max_containers)."
            )
        return None

    def _evict_one(self, owner: str) -> float | None:
        """Expire the owner's least recently used idle implicit container.

        Only a container idle for ``implicit_evict_idle_s`` qualifies. Returns 0 when one was
        evicted, else the seconds until the next candidate qualifies (``None``: none will).
        """
        now = time.time()
        soonest: float | None = None
        for row in self.store.idle_implicit_containers(owner):
            slot = self.kernels.slots.get(row.id)
            if slot is not None and (slot.busy or slot.waiting or slot.lock.locked()):
                # in use: a candidate once idle long enough (its end wakes the waiters)
                wait = self.config.implicit_evict_idle_s
                soonest = wait if soonest is None else min(soonest, wait)
                continue
            idle_for = now - row.last_active_at
            if idle_for < self.config.implicit_evict_idle_s:
                wait = self.config.implicit_evict_idle_s - idle_for
                soonest = wait if soonest is None else min(soonest, wait)
                continue
            log.info("exec-sessions: evicting idle implicit container %s of %s", row.id, owner)
            self._expire(row, "evicted")
            return 0.0
        return soonest

    async def _make_room(self, owner: str, *, wait: bool) -> None:
        """Return when the owner may create a container; evict or (``wait``) wait for room."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (self.config.implicit_wait_s if wait else 0.0)
        while (refusal := self._at_quota(owner)) is not None:
            next_candidate = self._evict_one(owner)
            if next_candidate == 0.0:
                continue
            remaining = deadline - loop.time()
            if next_candidate is None and not self._creating.get(owner):
                remaining = 0.0  # none of the owner's containers can make room: do not wait
            if remaining <= 0:
                raise QuotaExceededError(refusal, retry_after=max(1.0, self.config.reaper_interval))
            if next_candidate is not None:
                remaining = min(remaining, next_candidate + 0.01)
            room = self._room
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(room.wait(), remaining)

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
        for kernel_id in self.kernels.kernel_ids():
            self.kernels.manager.mark_activity(kernel_id)
