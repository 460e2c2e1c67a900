"""Executions: one at a time per container in arrival order, bounded queue, cancellation.

The engine (``engine.KernelSession``) runs the code; this module owns the queueing, limits,
state-reset bookkeeping, counters and ``execution.*`` events around it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
import time
from collections.abc import Callable
from typing import Any

from .._contract import OutputSink, new_id
from ..engine import RunResult
from ..errors import InvalidRequestError, NotFoundError, PayloadTooLargeError, QueueFullError
from ..models import (
    Execution,
    ExecutionCompletedData,
    ExecutionMetadata,
    ExecutionRecord,
    ExecutionRecordList,
    ExecutionRequest,
    ExecutionStartedData,
    PythonExecutionRequest,
)
from .config import ServiceConfig
from .containers import Containers
from .events import EventBus
from .files import container_path
from .kernels import ContainerKernels
from .store import ExecutionRow, Store

__all__ = ["PREVIEW_CHARS", "Executions"]

#: Characters of code (or of each shell command) a history listing shows.
PREVIEW_CHARS = 2000
#: How soon after an execution completes its bookkeeping is written (its answer leaves first).
_FLUSH_AFTER_COMPLETION_S = 0.001


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
        created_at = time.time()
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
        started = completed = False
        t0 = time.perf_counter()
        try:
            if slot.gone:
                execution.status = "cancelled"
                return execution
            live = await self.kernels.ensure_live(row, slot)
            execution.state_reset = self.store.take_state_lost(row.id)
            started = True
            self.store.begin_execution(
                execution.id,
                container_id,
                type=request.type,
                source=request.code
                if isinstance(request, PythonExecutionRequest)
                else list(request.commands),
                created_at=created_at,
                started_at=time.time(),
                session_id=meta.session_id,
                turn_id=meta.turn_id,
                keep=self.config.execution_history_size,
            )
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
                execution.status = "cancelled"
                execution.duration_ms = round((time.perf_counter() - t0) * 1000, 3)
                self._finish_history(execution)
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
            completed = True
            self._completed(owner, row.id, slot.gone, execution, meta)
            return execution
        finally:
            if started and not completed:
                # The caller went away (a dropped MCP request or REST stream) or the run
                # failed: the execution still ends, once, and is counted.
                fault = sys.exc_info()[1]
                cancelled = fault is None or isinstance(fault, asyncio.CancelledError)
                execution.status = "cancelled" if cancelled else "failed"
                execution.duration_ms = round((time.perf_counter() - t0) * 1000, 3)
                self._completed(owner, row.id, slot.gone, execution, meta)
            slot.lock.release()
            self.containers.notify_room()

    def _completed(
        self,
        owner: str,
        container_id: str,
        gone: bool,
        execution: Execution,
        meta: ExecutionMetadata,
    ) -> None:
        """Count the execution, close its history entry, publish its ``execution.completed``.

        The store writes all of it in one commit, with the execution's start (written behind).
        """
        self._finish_history(execution)
        if not gone:
            self.store.record_execution(
                container_id, session_id=meta.session_id, turn_id=meta.turn_id, now=time.time()
            )
        self.events.emit(
            ExecutionCompletedData(
                execution_id=execution.id,
                type=execution.type,
                status=execution.status,
                duration_ms=execution.duration_ms,
                session_id=meta.session_id,
                turn_id=meta.turn_id,
                state_reset=execution.state_reset,
            ),
            owner=owner,
            container_id=container_id,
        )
        # written just after the answer leaves, rather than before the next request
        self.store.flush_within(_FLUSH_AFTER_COMPLETION_S)

    def _finish_history(self, execution: Execution) -> None:
        self.store.finish_execution(
            execution.id,
            status=execution.status,
            completed_at=time.time(),
            result=execution.model_dump_json(),
        )

    def history(
        self, owner: str, container_id: str, *, after: str | None, limit: int, order: str
    ) -> ExecutionRecordList:
        """A cursor page of the container's executions history (readable once expired)."""
        row = self.containers.owned(owner, container_id)
        rows, has_more = self.store.list_executions(row.id, after=after, limit=limit, order=order)
        with_outputs = self.store.newest_execution_ids(
            row.id, self.config.execution_history_outputs
        )
        data = [_record(r, preview=True, outputs=r.id in with_outputs) for r in rows]
        return ExecutionRecordList(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=has_more,
        )

    def retrieve(self, owner: str, container_id: str, execution_id: str) -> ExecutionRecord:
        """One execution of the container's history, whole."""
        row = self.containers.owned(owner, container_id)
        found = self.store.get_execution(row.id, execution_id)
        if found is None:
            raise NotFoundError(
                f"No execution found with id '{execution_id}' in this container's history.",
                param="execution_id",
                code="execution_not_found",
            )
        return _record(found, preview=False, outputs=True)

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


def _cut(text: str) -> tuple[str, bool]:
    if len(text) <= PREVIEW_CHARS:
        return text, False
    return text[:PREVIEW_CHARS] + "…", True


def _record(row: ExecutionRow, *, preview: bool, outputs: bool) -> ExecutionRecord:
    """The wire record of a stored execution."""
    code: str | None = None
    commands: list[str] | None = None
    cut = False
    if isinstance(row.source, str):
        code = row.source
        if preview:
            code, cut = _cut(code)
    else:
        commands = list(row.source)
        if preview:
            pairs = [_cut(c) for c in commands]
            commands = [c for c, _ in pairs]
            cut = any(t for _, t in pairs)
    result = Execution.model_validate(row.result) if row.result is not None else None
    record = ExecutionRecord(
        id=row.id,
        container_id=row.container_id,
        type="shell" if row.type == "shell" else "python",
        status=result.status if result is not None else "in_progress",
        code=code,
        commands=commands,
        preview_truncated=cut,
        created_at=row.created_at,
        started_at=row.started_at,
        completed_at=row.completed_at,
        session_id=row.session_id,
        turn_id=row.turn_id,
    )
    if row.result is None and row.status != "in_progress":
        record.status = "cancelled"  # the server stopped while it ran
    if result is not None:
        record.duration_ms = result.duration_ms
        record.state_reset = result.state_reset
        record.truncated = result.truncated
        record.execution_count = result.execution_count
        record.full_output_file = result.full_output_file
        if outputs:
            record.outputs = list(result.outputs)
            record.shell_output = (
                list(result.shell_output) if result.shell_output is not None else None
            )
    return record
