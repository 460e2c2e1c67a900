"""The execution engine: Python, shell and file operations in one kernel, through its channels.

:class:`KernelSession` is what the service uses: one per container (kernel + working directory).
Everything goes through the kernel's own messaging channels (a client from ``kernel.client()``),
never through local files or connection files, so remote kernels (Enterprise Gateway) work
unchanged. The request/response core is in ``engine.channel``, output mapping and truncation
in ``engine.outputs``; shell and file operations call a helper module the setup installs in the
kernel (``engine.kernel.helper``, ``engine.kernel.shell``).

Errors: infrastructure failures raise :class:`errors.KernelError`; a path outside the workdir
raises :class:`errors.InvalidRequestError`; a missing file raises
:class:`errors.ContainerFileNotFoundError` whose message names the *path* (the service maps it to
its file id). Errors in user code are data: a ``failed`` run with an ``error`` output.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import posixpath
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from jupyter_client.session import new_id
from jupyter_core.utils import ensure_async

from .. import errors
from .._contract import CONTAINER_ROOT, OutputSink
from ..models import ErrorOutput, LogsOutput, Output, ShellCallOutput
from .channel import SETUP_CODE, KernelChannel, Outcome
from .kernel import helper as _kernel_code
from .kernel.helper import (
    OUTPUT_DIR,
    STREAM_MIME,
)
from .outputs import PythonOutputs, shell_outputs, timeout_error
from .paths import safe_relpath

__all__ = ["KernelManagerLike", "FileStat", "KernelLike", "KernelSession", "RunResult"]

log = logging.getLogger(__name__)

_ID = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
_CHUNK = 8 * 1024 * 1024
_FILE_OP_TIMEOUT_S = 120.0
_SHELL_MARGIN_S = 10.0
_DIED = (
    "The kernel died while running this code (interpreter state lost: variables, imports and "
    "definitions are gone). This is usually a crash or running out of memory. The next "
    "execution starts a fresh kernel; files in the working directory are kept."
)
_DIED_BECAUSE = (
    "The kernel died while running this code: {reason}. The interpreter state is lost "
    "(variables, imports and definitions are gone). The next execution starts a fresh kernel; "
    "files in the working directory are kept."
)


Status = Literal["completed", "failed", "timed_out", "cancelled"]


class KernelLike(Protocol):
    """What the engine needs from a kernel manager (jupyter_server's or jupyter_client's)."""

    def client(self, **kw: Any) -> Any:
        """A new kernel client (channels not started)."""
        ...

    def interrupt_kernel(self) -> Any:
        """Interrupt the running code (a coroutine on async managers; wrap in ensure_async)."""
        ...

    def is_alive(self) -> Any:
        """Whether the kernel is still running (a coroutine on async managers)."""
        ...


class KernelManagerLike(Protocol):
    """What the service needs from a multi-kernel manager.

    jupyter_server's ``MappingKernelManager`` (local kernels) and its gateway variant (remote
    kernels) satisfy it; some methods may be sync or async depending on the manager, so
    callers wrap results in ``ensure_async``.
    """

    def start_kernel(self, *, kernel_name: str | None = None, **kwargs: Any) -> Any:
        """Start a kernel; returns (or resolves to) its id."""
        ...

    def get_kernel(self, kernel_id: str) -> KernelLike:
        """The kernel's manager; raises ``KeyError`` for an unknown id."""
        ...

    def shutdown_kernel(self, kernel_id: str, now: bool = False, restart: bool = False) -> Any:
        """Shut the kernel down (may be a coroutine)."""
        ...


@dataclass
class FileStat:
    """A file of the working directory: posix path relative to it, size and mtime."""

    path: str
    bytes: int
    mtime: float


@dataclass
class RunResult:
    """The outcome of one Python or shell run."""

    status: Status
    outputs: list[Output] = field(default_factory=list)
    shell_output: list[ShellCallOutput] | None = None
    execution_count: int | None = None
    truncated: bool = False
    #: Absolute path (in the kernel's filesystem) of the full output, when truncated.
    full_output_file: str | None = None
    #: The kernel died or would not stop: the caller must replace it; interpreter state is gone.
    kernel_lost: bool = False


def _check_id(execution_id: str) -> None:
    if not _ID.match(execution_id):
        raise errors.InvalidRequestError(
            f"Invalid execution id {execution_id!r}.", param="execution_id"
        )


def _not_found(relpath: str) -> errors.ContainerFileNotFoundError:
    err = errors.ContainerFileNotFoundError(relpath)
    err.message = f"No file at path '{relpath}' in the container's working directory."
    err.args = (err.message,)
    return err


class KernelSession(KernelChannel):
    """One kernel used as a container: Python, a persistent shell, and files in ``workdir``."""

    def __init__(
        self,
        kernel: KernelLike,
        workdir: str,
        *,
        interrupt_grace_s: float = 3.0,
        alive_poll_s: float = 0.25,
        shell_dir: str | None = None,
    ) -> None:
        if not posixpath.isabs(workdir):
            raise ValueError(f"workdir must be an absolute path, got {workdir!r}")
        super().__init__(
            kernel,
            workdir,
            interrupt_grace_s=interrupt_grace_s,
            alive_poll_s=alive_poll_s,
            shell_dir=shell_dir,
        )
        self._lock = asyncio.Lock()
        #: Asked, when the kernel died, for the reason (e.g. "memory limit 1g exceeded").
        self.death_reason: Callable[[], str | None] | None = None

    @property
    def kernel_lost(self) -> bool:
        """True once the kernel died or would not stop: this session is unusable."""
        return self._lost

    # ------------------------------------------------------------------ lifecycle
    async def start(self, *, wait_ready_timeout: float = 60, wait_setup: bool = True) -> None:
        """Start the client and channels, wait until the kernel answers, then run the setup.

        With ``wait_setup=False`` the setup is sent without waiting for it (see
        :meth:`start_setup_nowait`).
        """
        async with self._lock:
            self._client = client = self.kernel.client()
            # Our own session id: clients of one manager share its Session, and two shell
            # sockets with one zmq identity steal each other's replies.
            session = client.session.clone()
            session.session = new_id()
            client.session = session
            try:
                # no stdin (input() must fail fast), no heartbeat thread (we poll is_alive),
                # no control channel (interrupts go through the manager)
                await ensure_async(client.start_channels(stdin=False, hb=False, control=False))
                await self._wait_ready(wait_ready_timeout)
                self.start_push()
                if wait_setup:
                    await self.setup(wait_ready_timeout)
                else:
                    self.start_setup_nowait()
            except BaseException:
                await self.close()
                raise

    def start_setup_nowait(self, drop: str | None = None) -> None:
        """Send the setup without waiting for it (channels must be started).

        Later requests queue behind it in the kernel; a setup failure is raised by the next
        request. ``drop``: a container directory beside the workdir for the kernel to remove
        (one a pool kernel prepared that no container claimed).
        """
        req = self._send(SETUP_CODE, silent=True, payload=self.setup_payload(False, drop))
        req.background = True

    async def warm_up(self, timeout_s: float = 30) -> None:
        """Run one throw-away, history-free cell so the first real cell is not the slow one.

        IPython's first non-silent cell of a process costs a few ms more than later ones; a
        pooled kernel pays that before it is handed out.
        """
        async with self._lock:
            self._usable()
            o = await self._run_code("None", silent=False, timeout_s=timeout_s, user=False)
            if o.lost or o.timed_out or o.died:
                raise errors.KernelError(f"kernel warm-up failed: {self.describe(o, None)}")

    async def close(self) -> None:
        """Stop the channels; does not shut the kernel down."""
        self._closed = True
        await self.stop_push()
        if self._client is not None:
            try:
                await ensure_async(self._client.stop_channels())
            except Exception:  # pragma: no cover - best effort
                log.debug("stop_channels failed", exc_info=True)
            self._client = None

    async def interrupt(self) -> None:
        """Interrupt the running execution (state kept); it ends with status ``cancelled``."""
        if self._running:
            self._interrupted = True
            await self._until_started(self.interrupt_grace_s)
        await self._interrupt_kernel()
        req = self._user_req
        if req is not None:  # the running execution sends it again if the cell goes on
            req.interrupted_at = time.monotonic()

    # ------------------------------------------------------------------ python
    async def run_python(
        self,
        code: str,
        *,
        execution_id: str,
        timeout_s: float,
        max_output_length: int,
        on_output: OutputSink | None = None,
    ) -> RunResult:
        """Run ``code`` in the kernel (store_history, no stdin); see the module docstring."""
        _check_id(execution_id)
        path = posixpath.join(CONTAINER_ROOT, OUTPUT_DIR, f"{execution_id}.txt")
        outs = PythonOutputs(max(1, max_output_length), path, on_output)
        async with self._lock:
            self._usable()
            try:
                o = await self._run_user(
                    code,
                    silent=False,
                    on_iopub=outs.handle,
                    timeout_s=timeout_s,
                    user=True,
                    on_timeout=lambda: setattr(outs, "timeout_s", timeout_s),
                )
                interrupted = self._interrupted
                if o.died:
                    outs.add(ErrorOutput(name="KernelDiedError", value=self._death_message()))
                elif o.timed_out and (o.lost or not outs.has_error):
                    outs.add(timeout_error(timeout_s, lost=o.lost))
                self._check_setup()
                full = None
                if outs.truncated and not o.lost:
                    full = await self._write_chunks(f"{OUTPUT_DIR}/{execution_id}.txt", outs)
                outputs = outs.finish(full)
            finally:
                outs.close()
        reply = (o.req.reply or {}).get("content", {})
        return RunResult(
            status=self._status(o, ok=reply.get("status") == "ok", interrupted=interrupted),
            outputs=outputs,
            execution_count=reply.get("execution_count") if o.req.reply else None,
            truncated=outs.truncated,
            full_output_file=full,
            kernel_lost=o.lost,
        )

    @staticmethod
    def _status(o: Outcome, *, ok: bool, interrupted: bool) -> Status:
        if o.died:
            return "failed"
        if o.timed_out:
            return "timed_out"
        if interrupted:
            return "cancelled"
        return "completed" if ok else "failed"

    # ------------------------------------------------------------------ shell
    async def run_shell(
        self,
        commands: list[str],
        *,
        execution_id: str,
        timeout_s: float,
        max_output_length: int,
        on_output: OutputSink | None = None,
    ) -> RunResult:
        """Run ``commands`` one after the other in the container's persistent shell.

        ``timeout_s`` applies to each command. Status: ``completed`` when every command ran
        (whatever its exit code), ``timed_out`` when one hit its timeout, ``cancelled`` when
        interrupted, ``failed`` when the kernel died.
        """
        _check_id(execution_id)
        limit = max(1, max_output_length)
        args = {
            "op": "shell",
            "commands": list(commands),
            "timeout": timeout_s,
            "limit": limit,
            "execution_id": execution_id,
        }
        sink = on_output

        def on_iopub(msg: dict[str, Any]) -> None:
            """Forward the helper's live chunks (private MIME) to the sink."""
            nonlocal sink
            chunk = msg["content"].get("data", {}).get(STREAM_MIME)
            if sink is None or not isinstance(chunk, dict):
                return
            stream = "stderr" if chunk.get("name") == "stderr" else "stdout"
            try:
                sink(LogsOutput(stream=stream, text=chunk.get("text", "")), chunk.get("i"))
            except Exception:
                log.exception("output sink failed; no more live output for this execution")
                sink = None

        budget = timeout_s * max(1, len(commands)) + _SHELL_MARGIN_S
        async with self._lock:
            self._usable()
            self._running, self._interrupted = True, False
            try:
                o, result = await self.call(args, budget, on_iopub)
            finally:
                self._running = False
        if o.died:
            err = ErrorOutput(name="KernelDiedError", value=self._death_message())
            return RunResult(status="failed", outputs=[err], shell_output=[], kernel_lost=True)
        interrupted = self._interrupted
        if not isinstance(result, dict) or not result.get("ok"):
            if o.timed_out or interrupted:
                status: Status = "timed_out" if o.timed_out else "cancelled"
                return RunResult(status=status, shell_output=[], kernel_lost=o.lost)
            raise errors.KernelError(f"shell helper failed: {self.describe(o, result)}")
        shell, outputs = shell_outputs(result["commands"])
        status = "completed"
        if interrupted or (result.get("interrupted") and not o.timed_out):
            status = "cancelled"
        elif o.timed_out or any(s.outcome.type == "timeout" for s in shell):
            status = "timed_out"
        return RunResult(
            status=status,
            outputs=outputs,
            shell_output=shell,
            truncated=result["truncated"],
            full_output_file=self.public_path(result["full_output_file"]),
            kernel_lost=o.lost,
        )

    # ------------------------------------------------------------------ files
    async def list_files(self) -> tuple[list[FileStat], bool]:
        """Regular files under the workdir (hidden ones too), at most 10,000.

        The second value says whether the walk stopped at that cap (more files exist).
        """
        r = await self._file_op({"op": "list", "limit": _kernel_code.MAX_LIST_ENTRIES}, "")
        return [FileStat(**f) for f in r["files"]], bool(r.get("capped"))

    async def stat_file(self, relpath: str) -> FileStat | None:
        """The stat of one regular file, or ``None`` when there is none at ``relpath``."""
        try:
            r = await self._file_op({"op": "stat", "path": safe_relpath(relpath)}, relpath)
        except errors.NotFoundError:
            return None
        return FileStat(**r["file"])

    async def write_file(self, relpath: str, data: bytes) -> FileStat:
        """Write ``data`` to ``relpath`` (parent directories created); returns its stat."""
        rel = safe_relpath(relpath, param="path")
        r: dict[str, Any] = {}
        for start in range(0, max(len(data), 1), _CHUNK):
            chunk = base64.b64encode(data[start : start + _CHUNK]).decode("ascii")
            r = await self._file_op(
                {"op": "write", "path": rel, "data": chunk, "append": start > 0}, relpath
            )
        return FileStat(**r["file"])

    async def read_file(self, relpath: str) -> bytes:
        """The bytes of ``relpath``; raises ContainerFileNotFoundError if there is no such file."""
        rel = safe_relpath(relpath, param="path")
        parts: list[bytes] = []
        offset = 0
        while True:
            args = {"op": "read", "path": rel, "offset": offset, "length": _CHUNK}
            r = await self._file_op(args, relpath)
            parts.append(base64.b64decode(r["data"]))
            offset += len(parts[-1])
            if r["eof"]:
                return b"".join(parts)

    async def delete_file(self, relpath: str) -> None:
        """Delete ``relpath``; raises ContainerFileNotFoundError when there is no such file."""
        await self._file_op({"op": "delete", "path": safe_relpath(relpath, param="path")}, relpath)

    # ------------------------------------------------------------------ container directories
    async def list_container_dirs(self) -> list[str]:
        """Names of the container directories beside this kernel's workdir (its own excluded).

        On the kernel's side: with remote kernels that is the only place they exist.
        """
        return list((await self._file_op({"op": "list_dirs"}, ""))["dirs"])

    async def remove_container_dirs(self, names: list[str]) -> list[str]:
        """Remove container directories beside the workdir (its own too), by name; the removed."""
        return list((await self._file_op({"op": "remove_dirs", "names": names}, ""))["removed"])

    async def _file_op(self, args: dict[str, Any], relpath: str) -> dict[str, Any]:
        async with self._lock:
            self._usable()
            o, r = await self.call(args, _FILE_OP_TIMEOUT_S, None)
        if isinstance(r, dict) and r.get("ok"):
            return r
        if isinstance(r, dict) and r.get("error") == "not_found":
            raise _not_found(relpath)
        if isinstance(r, dict) and r.get("error") in ("invalid_path", "is_directory"):
            raise errors.InvalidRequestError(str(r.get("message")), param="path")
        raise errors.KernelError(f"file operation {args['op']!r} failed: {self.describe(o, r)}")

    async def _write_chunks(self, rel: str, outs: PythonOutputs) -> str | None:
        """Copy the spooled full output into the container (through the kernel)."""
        path = None
        try:
            for i, chunk in enumerate(outs.spool_chunks()):
                args = {
                    "op": "write",
                    "path": rel,
                    "append": i > 0,
                    "data": base64.b64encode(chunk).decode("ascii"),
                }
                o, r = await self.call(args, _FILE_OP_TIMEOUT_S, None)
                if not (isinstance(r, dict) and r.get("ok")):
                    log.warning("could not write %s: %s", rel, self.describe(o, r))
                    return None
                path = self.public_path(r["abs_path"])
        except errors.KernelError:
            log.warning("could not write %s", rel, exc_info=True)
            return None
        return path

    def _death_message(self) -> str:
        reason = None
        if self.death_reason is not None:
            try:
                reason = self.death_reason()
            except Exception:
                log.debug("death_reason failed", exc_info=True)
        return _DIED_BECAUSE.format(reason=reason) if reason else _DIED

    def public_path(self, path: str | None) -> str | None:
        """A path in the container directory as the API names it: under ``/mnt/data``."""
        root = self.workdir.rstrip("/") + "/"
        if path and path.startswith(root):
            return f"{CONTAINER_ROOT}/{path[len(root) :]}"
        return path

    def __repr__(self) -> str:
        return f"<KernelSession workdir={self.workdir!r} lost={self._lost}>"
