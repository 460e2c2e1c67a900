"""Containers: create (from the warm pool), retrieve, list, delete, hook resolutions."""

from __future__ import annotations

import posixpath
import time

from ..errors import InvalidRequestError, QuotaExceededError
from ..models import (
    Container,
    ContainerDeleted,
    ContainerList,
    CreateContainerRequest,
    ExecSessionsInfo,
    ExpiresAfter,
)
from .kernels import ContainerCore, Slot
from .store import ContainerRow

__all__ = ["ContainersMixin"]


class ContainersMixin(ContainerCore):
    """The containers API of the container service."""

    def to_container(self, row: ContainerRow) -> Container:
        """The wire object of a container row."""
        slot = self.slots.get(row.id)
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
            ),
        )

    async def create(self, owner: str, request: CreateContainerRequest) -> Container:
        """Create a container from the warm pool (or a cold kernel when the pool is empty)."""
        if request.file_ids:
            raise InvalidRequestError(
                "file_ids is not supported by this server: upload files with"
                " POST /containers/{container_id}/files.",
                param="file_ids",
            )
        for unsupported in ("network_policy", "skills"):
            if getattr(request, unsupported):
                raise InvalidRequestError(
                    f"{unsupported} is not supported by this server.", param=unsupported
                )
        cfg = self.config
        pending = self._creating.get(owner, 0)
        if self.store.count_containers(owner) + pending >= cfg.max_containers_per_user:
            raise QuotaExceededError(
                f"Container limit reached: at most {cfg.max_containers_per_user} running"
                " containers per user (max_containers_per_user). Delete a container or wait"
                " for one to expire.",
                retry_after=max(1.0, cfg.reaper_interval),
            )
        if self.store.count_containers() + sum(self._creating.values()) >= cfg.max_containers:
            raise QuotaExceededError(
                f"Container limit reached: at most {cfg.max_containers} running containers"
                " on this server (max_containers).",
                retry_after=max(1.0, cfg.reaper_interval),
            )
        t0 = time.perf_counter()
        minutes = (
            request.expires_after or ExpiresAfter(minutes=cfg.default_expires_minutes)
        ).minutes
        self._creating[owner] = pending + 1
        try:
            live, from_pool = await self._attach_kernel()
        finally:
            self._creating[owner] -= 1
        workdir = live.session.workdir
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
        )
        self.slots[container_id] = Slot(live=live)
        latency_ms = round((time.perf_counter() - t0) * 1000, 3)
        self.events.emit(
            "container.created",
            owner=owner,
            container_id=container_id,
            name=request.name,
            from_pool=from_pool,
            latency_ms=latency_ms,
            kernel_id=live.kernel_id,
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
        slot = self.slots.pop(container_id, None)
        self.store.delete_container(container_id)
        self.events.emit("container.deleted", owner=owner, container_id=container_id)
        self.spawn(self._teardown(slot, row.workdir, remove=True))
        return ContainerDeleted(id=container_id)

    def record_resolution(
        self,
        owner: str,
        container_id: str,
        *,
        origin: str,
        previous_id: str | None,
        session_id: str | None,
    ) -> None:
        """Publish a session-hook decision as ``container.resolved``."""
        self.owned(owner, container_id)
        self.events.emit(
            "container.resolved",
            owner=owner,
            container_id=container_id,
            origin=origin,
            previous_id=previous_id,
            session_id=session_id,
        )
