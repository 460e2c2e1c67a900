"""Warm kernel pool over the Jupyter server's kernel manager, sized by demand.

Kernels are started (and prepared by a caller-supplied coroutine, e.g. connected and set up)
ahead of demand; :meth:`KernelPool.take` hands one out at once when one is ready. The pool
follows demand:

- its *target* starts at ``size``; a take that finds the pool empty raises the target by one,
  up to ``max_size`` (the pool was drained faster than it refilled);
- after ``idle_s`` seconds without a take that found it empty, the target drops by one back
  toward ``size`` and kernels beyond it are shut down;
- every kernel start — for the pool or for a caller waiting on an empty pool — passes one
  semaphore of ``max_starts`` (the machine's CPUs): more starts at once only make each slower;
- a caller on an empty pool gets the first kernel that becomes ready, whoever started it;
  ``prepare`` is told whether someone is waiting for the kernel it prepares (a caller on an
  empty pool, or :meth:`KernelPool.start_for`), so that it can hand it over sooner.

Refills start ``refill_delay`` seconds after a take, not at once: a start costs the server's
event loop several ms and a core for a while, which a just-created container's first execution
should not pay. Pool kernels are ordinary kernels of the server's kernel manager (so a console
can attach to a container's kernel later); they are not containers until taken. Each pool
kernel is started for the directory its future container will have (``new_workdir``), so a
sandbox can bind that directory at launch; :meth:`KernelPool.start_for` starts a kernel for a
given directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
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
    """Keeps between ``size`` and ``max_size`` prepared kernels ready and hands them out."""

    def __init__(
        self,
        kernels: KernelManagerAdapter,
        *,
        size: int,
        kernel_name: str,
        new_workdir: Callable[[], str],
        start_kwargs: Callable[[str], dict[str, Any]],
        prepare: Callable[[str, str, bool], Awaitable[T]],
        discard: Callable[[T, str], Awaitable[None]],
        log: logging.Logger | None = None,
        refill_delay: float = 0.5,
        usable: Callable[[T], bool] | None = None,
        max_size: int | None = None,
        max_starts: int = 0,
        idle_s: float = 60.0,
    ) -> None:
        self.kernels = kernels
        self.size = size
        self.max_size = 0 if size <= 0 else max(size, max_size or size)
        self.target = size
        self.max_starts = max_starts if max_starts > 0 else (os.cpu_count() or 1)
        self.idle_s = idle_s
        self.refill_delay = refill_delay
        self.kernel_name = kernel_name
        self._new_workdir = new_workdir
        self._start_kwargs = start_kwargs
        #: tells from the prepared object whether a kernel is still usable (instead of asking
        #: the kernel manager: for remote kernels that is a REST call per take)
        self._usable = usable
        self._prepare = prepare
        self._discard = discard
        self.log = log or logging.getLogger(__name__)
        self._ready: deque[PooledKernel[T]] = deque()
        self._waiters: deque[asyncio.Future[PooledKernel[T]]] = deque()
        self._starts: set[asyncio.Task[None]] = set()
        self._disposals: set[asyncio.Task[None]] = set()
        self._sem: asyncio.Semaphore | None = None
        self._starting: set[str] = set()
        self._closing = False
        self._started = False
        self._last_drained = time.monotonic()
        self._shrink_task: asyncio.Task[None] | None = None
        self._refill_handle: asyncio.TimerHandle | None = None
        self._failures = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start filling the pool in the background."""
        if self._started:
            return
        self._started = True
        self._sem = asyncio.Semaphore(self.max_starts)
        if self.size > 0:
            self._ensure_starts(self.target)
            self._shrink_task = asyncio.ensure_future(self._shrink_loop())

    async def stop(self) -> None:
        """Stop refilling and shut down every pooled kernel (and the ones starting)."""
        self._closing = True
        if self._refill_handle is not None:
            self._refill_handle.cancel()
        tasks = [t for t in (self._shrink_task, *self._starts) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, *self._disposals, return_exceptions=True)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(KernelError("The server is stopping."))
        self._waiters.clear()
        while self._ready:
            await self._dispose(self._ready.popleft())

    def kernel_ids(self) -> set[str]:
        """Ids of kernels owned by the pool (ready or starting)."""
        return {k.kernel_id for k in self._ready} | set(self._starting)

    def stats(self) -> dict[str, int]:
        """Ready, starting and waiting counts and the current target (for logs and benchmarks)."""
        return {
            "ready": len(self._ready),
            "starting": len(self._starts),
            "waiting": len(self._waiters),
            "target": self.target,
        }

    # ------------------------------------------------------------------ take
    async def take(self) -> tuple[PooledKernel[T], bool]:
        """A prepared kernel and whether it was ready in the pool (else the caller waited)."""
        if not self._started:
            self.start()
        while self._ready:
            item = self._ready.popleft()
            if await self._alive(item):
                self._schedule_refill()
                return item, True
            self.background_dispose(item)
        # Drained: grow the target (bounded), and wait for the first kernel that is ready.
        self._last_drained = time.monotonic()
        if self.target < self.max_size:
            self.target += 1
        waiter: asyncio.Future[PooledKernel[T]] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self._ensure_starts(len(self._waiters))
        try:
            item = await waiter
        except asyncio.CancelledError:
            with contextlib.suppress(ValueError):
                self._waiters.remove(waiter)
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._deliver(waiter.result())
            raise
        self._schedule_refill()
        return item, False

    async def start_for(self, workdir: str) -> PooledKernel[T]:
        """Start (cold, through the start limit) and prepare a kernel for an existing directory."""
        if not self._started:
            self.start()
        item = await self._start_with_retry(workdir)
        if item is None:
            raise KernelError("The server is stopping.")
        return item

    @contextlib.asynccontextmanager
    async def borrow(self) -> AsyncIterator[T]:
        """A prepared kernel for a short chore; back into the pool afterwards.

        A kernel that had to be waited for (empty pool) is shut down afterwards; a kernel whose
        chore failed is disposed of.
        """
        item, from_pool = await self.take()
        try:
            yield item.prepared
        except BaseException:
            await self._dispose(item)
            raise
        if from_pool and not self._closing and len(self._ready) < self.target:
            self._ready.appendleft(item)
        else:
            await self._dispose(item)

    async def _alive(self, item: PooledKernel[T]) -> bool:
        if self._usable is not None:
            return self._usable(item.prepared)
        return await self.kernels.is_alive(item.kernel_id)

    def _schedule_refill(self) -> None:
        if self._closing or self.size <= 0:
            return
        if self.refill_delay <= 0:
            self._ensure_starts(len(self._waiters) + self.target)
        elif self._refill_handle is None:

            def refill() -> None:
                self._refill_handle = None
                self._ensure_starts(len(self._waiters) + self.target)

            loop = asyncio.get_running_loop()
            self._refill_handle = loop.call_later(self.refill_delay, refill)

    # ------------------------------------------------------------------ internals
    def _ensure_starts(self, wanted: int) -> None:
        """Start kernels until ready + starting covers ``wanted`` (waiters first, then target)."""
        while not self._closing and len(self._ready) + len(self._starts) < wanted:
            task = asyncio.ensure_future(self._start_task())
            self._starts.add(task)
            task.add_done_callback(self._starts.discard)

    async def _start_task(self) -> None:
        try:
            item = await self._start_with_retry()
            if item is None:
                return
        except asyncio.CancelledError:
            raise
        except Exception as e:
            self._failures += 1
            self.log.exception("exec-sessions: could not start a pool kernel")
            while self._waiters:
                waiter = self._waiters.popleft()
                if not waiter.done():
                    waiter.set_exception(e if isinstance(e, KernelError) else KernelError(str(e)))
                    break
            # back off before a refill retries (bounded), so a broken spec does not spin
            await asyncio.sleep(min(30.0, 0.5 * 2 ** min(self._failures, 6)))
            self._schedule_refill()
            return
        self._failures = 0
        if self._closing:
            await self._dispose(item)
            return
        self._deliver(item)

    async def _start_with_retry(self, workdir: str | None = None) -> PooledKernel[T] | None:
        """Start one kernel; a start that fails is tried once more before anyone hears of it.

        A kernel can die while starting for reasons of the moment (a TCP port taken between
        being picked and bound, memory pressure): a waiting create should not fail for that.
        A kernel spec that cannot start at all fails twice, and the caller reports it.
        ``None`` when the pool closed meanwhile.
        """
        assert self._sem is not None
        for attempt in (1, 2):
            async with self._sem:
                if self._closing:
                    return None
                try:
                    return await self._start_one(workdir)
                except KernelError as e:
                    if attempt == 2 or self._closing:
                        raise
                    self.log.warning("exec-sessions: %s; starting another kernel", e)
        return None  # pragma: no cover - the loop returns or raises

    def _deliver(self, item: PooledKernel[T]) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(item)
                return
        self._ready.append(item)

    async def _start_one(self, workdir: str | None = None) -> PooledKernel[T]:
        for_caller = workdir is not None  # start_for: its caller waits for this very kernel
        workdir = workdir or self._new_workdir()
        try:
            kernel_id = await self.kernels.start(self.kernel_name, **self._start_kwargs(workdir))
        except Exception as e:
            raise KernelError(f"Could not start a kernel: {e}") from e
        self._starting.add(kernel_id)
        try:
            prepared = await self._prepare(kernel_id, workdir, for_caller or bool(self._waiters))
        except BaseException as e:
            await self.kernels.shutdown(kernel_id)
            if isinstance(e, Exception):
                raise KernelError(f"Kernel {kernel_id} did not become ready: {e}") from e
            raise
        finally:
            self._starting.discard(kernel_id)
        return PooledKernel(kernel_id, prepared, workdir)

    async def _shrink_loop(self) -> None:
        """Every ``idle_s / 2``: a pool not drained for ``idle_s`` shrinks one toward ``size``."""
        period = max(0.05, self.idle_s / 2)
        while not self._closing:
            await asyncio.sleep(period)
            if self.target <= self.size:
                continue
            if time.monotonic() - self._last_drained < self.idle_s:
                continue
            self.target -= 1
            self._last_drained = time.monotonic()  # one step per idle period
            while len(self._ready) > self.target:
                self.background_dispose(self._ready.pop())

    def background_dispose(self, item: PooledKernel[T]) -> None:
        """Shut a pool kernel down without waiting for it."""
        task = asyncio.ensure_future(self._dispose(item))
        self._disposals.add(task)
        task.add_done_callback(self._disposals.discard)

    async def _dispose(self, item: PooledKernel[T]) -> None:
        try:
            await self._discard(item.prepared, item.workdir)
        except Exception:
            self.log.debug("exec-sessions: discard failed", exc_info=True)
        await self.kernels.shutdown(item.kernel_id)
