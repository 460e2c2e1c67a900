"""Warm kernel pool over the Jupyter server's kernel manager.

``pool_size`` kernels are started (and prepared by a caller-supplied coroutine, e.g. connected
and set up) ahead of demand; :meth:`KernelPool.take` hands one out at once and the pool refills
in the background, one kernel at a time so that refills never starve running kernels of CPU.
Pool kernels are ordinary kernels of the server's kernel manager (so a console can attach to a
container's kernel later); they are not containers until taken. Each pool kernel is started
for the directory its future container will have (``new_workdir``), so a sandbox can bind
that directory at launch; :meth:`KernelPool.start_for` starts a kernel for a given directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Generic, TypeVar

from ..errors import KernelError
from .kernel_manager import KernelManagerAdapter

__all__ = ["KernelPool", "PooledKernel"]

T = TypeVar("T")


class PooledKernel(Generic[T]):
    """A started, prepared kernel: its id, its directory and what ``prepare`` returned."""

    def __init__(self, kernel_id: str, prepared: T, workdir: str) -> None:
        self.kernel_id = kernel_id
        self.prepared = prepared
        self.workdir = workdir


class KernelPool(Generic[T]):
    """Keeps ``size`` prepared kernels ready and hands them out."""

    def __init__(
        self,
        kernels: KernelManagerAdapter,
        *,
        size: int,
        kernel_name: str,
        new_workdir: Callable[[], str],
        start_kwargs: Callable[[str], dict[str, Any]],
        prepare: Callable[[str, str], Awaitable[T]],
        discard: Callable[[T, str], Awaitable[None]],
        log: logging.Logger | None = None,
        refill_delay: float = 0.5,
        usable: Callable[[T], bool] | None = None,
    ) -> None:
        self.kernels = kernels
        self.size = size
        self.refill_delay = refill_delay
        self.kernel_name = kernel_name
        self._new_workdir = new_workdir
        self._start_kwargs = start_kwargs
        self._prepare = prepare
        self._discard = discard
        #: tells from the prepared object whether a kernel is still usable (instead of asking
        #: the kernel manager: for remote kernels that is a REST call per take)
        self._usable = usable
        self.log = log or logging.getLogger(__name__)
        self._ready: deque[PooledKernel[T]] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._starting: set[str] = set()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start filling the pool in the background."""
        if self._task is None and self.size > 0:
            self._task = asyncio.ensure_future(self._refill_loop())
            self._wakeup.set()

    async def stop(self) -> None:
        """Stop refilling and shut down every pooled kernel."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        while self._ready:
            item = self._ready.popleft()
            await self._dispose(item)

    def kernel_ids(self) -> set[str]:
        """Ids of kernels owned by the pool (ready or starting)."""
        return {k.kernel_id for k in self._ready} | set(self._starting)

    # ------------------------------------------------------------------ take
    async def take(self) -> tuple[PooledKernel[T], bool]:
        """A prepared kernel and whether it came warm from the pool (else started cold).

        The refill starts ``refill_delay`` seconds later, not at once: starting a kernel costs
        the server's event loop several ms and a core for a while, which a just-created
        container's first execution should not pay.
        """
        try:
            while self._ready:
                item = self._ready.popleft()
                if self._usable is not None:
                    ok = self._usable(item.prepared)
                else:
                    ok = await self.kernels.is_alive(item.kernel_id)
                if ok:
                    return item, True
                await self._dispose(item)
            return await self._start_one(refill=False), False
        finally:
            self._schedule_refill()

    async def start_for(self, workdir: str) -> PooledKernel[T]:
        """Start (cold) and prepare a kernel for an existing directory."""
        return await self._start_one(refill=False, workdir=workdir)

    @contextlib.asynccontextmanager
    async def borrow(self) -> AsyncIterator[T]:
        """A prepared kernel for a short chore; back into the pool afterwards.

        A kernel started cold for it (empty pool) is shut down afterwards; a kernel whose
        chore failed is disposed of.
        """
        item, from_pool = await self.take()
        try:
            yield item.prepared
        except BaseException:
            await self._dispose(item)
            raise
        if from_pool and not self._closing and len(self._ready) < self.size:
            self._ready.appendleft(item)
        else:
            await self._dispose(item)

    def _schedule_refill(self) -> None:
        if self.refill_delay <= 0:
            self._wakeup.set()
        else:
            asyncio.get_running_loop().call_later(self.refill_delay, self._wakeup.set)

    # ------------------------------------------------------------------ internals
    async def _refill_loop(self) -> None:
        while not self._closing:
            await self._wakeup.wait()
            self._wakeup.clear()
            while not self._closing and len(self._ready) + len(self._starting) < self.size:
                try:
                    item = await self._start_one()
                except Exception:
                    self.log.exception("exec-sessions: could not start a pool kernel")
                    await asyncio.sleep(1.0)
                    continue
                if self._closing:
                    await self._dispose(item)
                    return
                self._ready.append(item)

    async def _start_one(
        self, *, refill: bool = True, workdir: str | None = None
    ) -> PooledKernel[T]:
        workdir = workdir or self._new_workdir()
        try:
            kernel_id = await self.kernels.start(self.kernel_name, **self._start_kwargs(workdir))
        except Exception as e:
            raise KernelError(f"Could not start a kernel: {e}") from e
        if refill:  # a cold start for a caller is not a pool kernel in the making
            self._starting.add(kernel_id)
        try:
            prepared = await self._prepare(kernel_id, workdir)
        except BaseException as e:
            await self.kernels.shutdown(kernel_id)
            if isinstance(e, Exception):
                raise KernelError(f"Kernel {kernel_id} did not become ready: {e}") from e
            raise
        finally:
            self._starting.discard(kernel_id)
        return PooledKernel(kernel_id, prepared, workdir)

    async def _dispose(self, item: PooledKernel[T]) -> None:
        try:
            await self._discard(item.prepared, item.workdir)
        except Exception:
            self.log.debug("exec-sessions: discard failed", exc_info=True)
        await self.kernels.shutdown(item.kernel_id)
