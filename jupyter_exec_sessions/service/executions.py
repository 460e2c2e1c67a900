"""Executions: one at a time per container in arrival order, bounded queue, cancellation.

The engine (``engine.KernelSession``) runs the code; this module owns the queueing, limits,
state-reset bookkeeping, counters and ``execution.*`` events around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable
from typing import Any

from .._contract import OutputSink, new_id
from ..engine import RunResult
from ..errors import InvalidRequestError, PayloadTooLargeError, QueueFullError
from ..models import (
    Execution,
    ExecutionCompletedData,
    ExecutionMetadata,
    ExecutionRequest,
    ExecutionStartedData,
    PythonExecutionRequest,
)
from .config import ServiceConfig
from .containers import Containers
from .events import EventBus
from .files import container_path
from .kernels import ContainerKernels
from .store import Store

__all__ = ["Executions"]


class Executions:
    """The executions API of the service."""

    def __init__(
        self,
        config: ServiceConfig,
        store: Store,
        events: EventBus,
        containers: Containers,
        kernels: ContainerKernels,
    ) -> None:
        self.config = config
        self.store = store
        self.events = events
        self.containers = containers
        self.kernels = kernels

    def _limits(self, request: ExecutionRequest) -> tuple[float, int]:
        cfg = self.config
        if isinstance(request, PythonExecutionRequest):
            size = len(request.code.encode("utf-8", "surrogatepass"))
            param = "code"
        else:
            if len(request.commands) > cfg.max_shell_commands:
                raise InvalidRequestError(
                    f"Invalid 'commands': {len(request.commands)} commands; at most"
                    f" {cfg.max_shell_commands} per request (max_shell_commands).",
                    param="commands",
                )
            size = sum(len(c.encode("utf-8", "surrogatepass")) for c in request.commands)
            param = "commands"
        if size > cfg.max_code_bytes:
            raise PayloadTooLargeError(
                f"The {param} is {size} bytes; the limit is {cfg.max_code_bytes} bytes"
                " (max_code_bytes). Put large data in a file instead.",
                param=param,
            )
        timeout_ms = min(request.timeout_ms or cfg.default_timeout_ms, cfg.max_timeout_ms)
        max_output = min(
            request.max_output_length or cfg.default_max_output_length,
            cfg.max_output_length_limit,
        )
        return timeout_ms / 1000.0, max_output

    async def execute(
        self,
        owner: str,
        container_id: str,
        request: ExecutionRequest,
        on_output: OutputSink | None = None,
        on_started: Callable[[Execution], None] | None = None,
    ) -> Execution:
        """Run one execution in the container, queued behind earlier ones."""
        timeout_s, max_output = self._limits(request)
        row, slot = self.containers.usable(owner, container_id)
        if slot.waiting >= self.config.max_queue_depth:
            raise QueueFullError(
                f"The container already has {slot.waiting} executions waiting; the limit is"
                f" {self.config.max_queue_depth} (max_queue_depth). Retry when it is idle.",
                retry_after=1.0,
            )
        meta = request.metadata or ExecutionMetadata()
        execution = Execution(
            id=new_id("exec_"),
            container_id=container_id,
            type=request.type,
            status="in_progress",
            metadata=request.metadata,
            created_at=int(time.time()),
            shell_output=[] if request.type == "shell" else None,
        )
        if on_started is not None:
            on_started(execution)
        slot.waiting += 1
        try:
            await slot.lock.acquire()
        finally:
            slot.waiting -= 1
        try:
            if slot.gone:
                execution.status = "cancelled"
                return execution
            live = await self.kernels.ensure_live(row, slot)
            execution.state_reset = self.store.take_state_lost(row.id)
            self.events.emit(
                ExecutionStartedData(
                    execution_id=execution.id,
                    type=request.type,
                    session_id=meta.session_id,
                    turn_id=meta.turn_id,
                ),
                owner=owner,
                container_id=container_id,
            )
            t0 = time.perf_counter()
            run = (
                functools.partial(live.session.run_python, request.code)
                if isinstance(request, PythonExecutionRequest)
                else functools.partial(live.session.run_shell, request.commands)
            )
            coro = run(
                execution_id=execution.id,
                timeout_s=timeout_s,
                max_output_length=max_output,
                on_output=on_output,
            )
            inner: asyncio.Task[RunResult] = asyncio.ensure_future(coro)
            slot.running = inner
            slot.busy = True
            self.kernels.manager.mark_activity(live.kernel_id, "busy")
            slot.interrupted = False
            try:
                await asyncio.wait({inner})
            except asyncio.CancelledError:
                # The caller went away (e.g. a streaming client disconnected): interrupt.
                inner.cancel()
                with contextlib.suppress(BaseException):
                    await asyncio.wait({inner}, timeout=self.config.interrupt_grace_s + 5)
                raise
            finally:
                slot.running = None
                slot.busy = False
                self.kernels.manager.mark_activity(live.kernel_id, "idle")
            execution.duration_ms = round((time.perf_counter() - t0) * 1000, 3)
            if inner.cancelled():
                execution.status = "cancelled"
            else:
                result = inner.result()
                self._apply(execution, result, row.workdir)
                if slot.interrupted and execution.status == "failed":
                    execution.status = "cancelled"  # stopped on demand via /interrupt
                if result.kernel_lost and not slot.gone:
                    reason = "timeout" if result.status == "timed_out" else "kernel_died"
                    await self.kernels.replace(row, slot, reason)
                    if reason == "timeout":
                        execution.state_reset = self.store.take_state_lost(row.id) or True
            with self.store.transaction():  # one commit for the counters and the event
                if not slot.gone:
                    self.store.record_execution(
                        row.id, session_id=meta.session_id, turn_id=meta.turn_id, now=time.time()
                    )
                self.events.emit(
                    ExecutionCompletedData(
                        execution_id=execution.id,
                        type=request.type,
                        status=execution.status,
                        duration_ms=execution.duration_ms,
                        session_id=meta.session_id,
                        turn_id=meta.turn_id,
                        state_reset=execution.state_reset,
                    ),
                    owner=owner,
                    container_id=container_id,
                )
            return execution
        finally:
            slot.lock.release()

    @staticmethod
    def _apply(execution: Execution, result: RunResult, workdir: str) -> None:
        execution.status = result.status
        execution.outputs = list(result.outputs)
        if result.shell_output is not None:
            execution.shell_output = list(result.shell_output)
        execution.execution_count = result.execution_count
        execution.truncated = result.truncated
        execution.full_output_file = container_path(workdir, result.full_output_file)

    async def interrupt(self, owner: str, container_id: str) -> dict[str, Any]:
        """Interrupt the running execution (interpreter state is kept)."""
        row, slot = self.containers.usable(owner, container_id)
        busy = slot.busy
        if slot.live is not None and busy:
            slot.interrupted = True
            await slot.live.session.interrupt()
        return {"id": row.id, "object": "container.interrupt", "interrupted": busy}
