"""The server's side of the template process: start it, ask it to fork, follow the children.

One :class:`ForkServer` per Python interpreter (the kernel spec's) and server process; started
on the first fork request and kept for the server's lifetime. The template dies with the server
(see ``_template``); :meth:`ForkServer.close` ends it earlier.

One socket carries the template's answers (one per request, in order) and, from each child, one
line once its kernel is ready (sockets bound, shell built) or has failed: readiness is pushed, so
a client connects to a kernel that already listens, with no polling and no reconnect delay.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["ForkServer", "ForkedProcess", "close_all", "fork_server", "template_supported"]

log = logging.getLogger("jupyter_exec_sessions.forkserver")

TEMPLATE = str(Path(__file__).with_name("_template.py"))
#: Seconds the template may take to import a kernel's modules before it is given up on.
START_TIMEOUT_S = 60.0
#: Seconds after a template failure during which requests fail at once (callers launch).
RETRY_AFTER_S = 30.0
#: Seconds one fork may take before the request fails (and the caller launches instead).
FORK_TIMEOUT_S = 10.0
#: Seconds a forked kernel may take to report ready; past that it is used anyway (its client
#: waits for it as for a launched kernel).
READY_TIMEOUT_S = 30.0
#: Kernel reports nobody waits for any more that are kept (the oldest are forgotten).
_MAX_NEWS = 1024

_servers: dict[str, ForkServer] = {}
_servers_lock = threading.Lock()


def fork_server(python: str, preload: str = "") -> ForkServer:
    """The process-wide fork server for the interpreter ``python`` (and ``preload`` file)."""
    python = os.path.abspath(python)  # not realpath: a venv's python is a symlink that matters
    key = f"{python}\0{preload}"
    with _servers_lock:
        server = _servers.get(key)
        if server is None or server.closed:
            server = _servers[key] = ForkServer(python, preload)
        return server


def close_all() -> None:
    """End every template process of this server process (their kernels die with them)."""
    with _servers_lock:
        servers = list(_servers.values())
        _servers.clear()
    for server in servers:
        server.close()


class ForkServer:
    """A template process for one interpreter, and the requests to fork it."""

    def __init__(self, python: str, preload: str = "") -> None:
        self.python = python
        self.preload = preload
        self.process: subprocess.Popen[bytes] | None = None
        self.template_pid: int | None = None
        self.closed = False
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._replies: deque[dict[str, Any]] = deque()
        #: what children reported: pid -> "ready" | "failed"
        self._news: dict[int, str] = {}
        self._locks: dict[str, tuple[asyncio.Lock, asyncio.AbstractEventLoop]] = {}
        self._failed_at = -RETRY_AFTER_S

    def _get_lock(self, name: str = "fork") -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        held = self._locks.get(name)
        if held is None or held[1] is not loop:
            held = self._locks[name] = (asyncio.Lock(), loop)
        return held[0]

    async def fork(self, argv: list[str], cwd: str, env: dict[str, str]) -> ForkedProcess:
        """A new kernel process running ``ipykernel_launcher`` with ``argv``; raises on failure.

        Returns once the process exists; :meth:`wait_ready` waits for its kernel.
        """
        async with self._get_lock():
            if self.closed:
                raise RuntimeError("the fork server is closed")
            if self._sock is None and time.monotonic() - self._failed_at < RETRY_AFTER_S:
                raise RuntimeError("the kernel template failed recently")
            try:
                if self._sock is None:
                    await self._start()
                request = {"argv": argv, "cwd": cwd, "env": env}
                reply = await self._call(request, FORK_TIMEOUT_S)
            except BaseException:
                self._failed_at = time.monotonic()
                self._reset()
                raise
            if "pid" not in reply:
                raise RuntimeError(f"fork failed: {reply.get('error', reply)}")
            return ForkedProcess(int(reply["pid"]))

    async def wait_ready(self, process: ForkedProcess, timeout: float = READY_TIMEOUT_S) -> bool:
        """Wait until ``process``'s kernel reports it listens: True; False after ``timeout``.

        Raises if the kernel failed to initialise or its process ended first.
        """
        pid = process.pid
        loop = asyncio.get_running_loop()
        died: asyncio.Future[None] = loop.create_future()
        pidfd = process.pidfd
        if pidfd is not None:

            def exited() -> None:
                if not died.done():
                    died.set_result(None)

            loop.add_reader(pidfd, exited)
        news = asyncio.ensure_future(self._until(lambda: pid in self._news, timeout))
        try:
            await asyncio.wait([news, died], return_when=asyncio.FIRST_COMPLETED)
            if news.done():
                error = news.exception()
                if error is None:
                    if self._news.get(pid) == "ready":
                        return True
                    raise RuntimeError("the forked kernel failed to initialise")
                if isinstance(error, TimeoutError):
                    if process.poll() is None:
                        return False
                else:
                    raise RuntimeError(f"waiting for the forked kernel failed: {error}")
            raise RuntimeError("the forked kernel exited while starting")
        finally:
            if pidfd is not None:
                loop.remove_reader(pidfd)
            news.cancel()
            self._news.pop(pid, None)

    async def _until(self, done: Callable[[], bool], timeout: float) -> None:
        """Read the template's socket until ``done()`` (one reader at a time)."""
        async with asyncio.timeout(timeout):
            while not done():
                async with self._get_lock("read"):
                    if not done():
                        await self._read_some()

    async def _read_some(self) -> None:
        """Read at least one line and file every complete line: an answer or a child's news."""
        sock = self._sock
        if sock is None:
            raise RuntimeError("the kernel template process is gone")
        loop = asyncio.get_running_loop()
        while b"\n" not in self._buffer:
            chunk = await loop.sock_recv(sock, 65536)
            if not chunk:
                raise RuntimeError("the kernel template process exited")
            if sock is not self._sock:
                raise RuntimeError("the kernel template process is gone")
            self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            message: dict[str, Any] = json.loads(line)
            if "kernel_ready" in message:
                self._news[int(message["kernel_ready"])] = "ready"
            elif "kernel_failed" in message:
                self._news[int(message["kernel_failed"])] = "failed"
            else:
                self._replies.append(message)
        while len(self._news) > _MAX_NEWS:
            del self._news[next(iter(self._news))]

    async def _start(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            # spawning is one fork+exec: not worth a thread
            self.process = subprocess.Popen(  # noqa: ASYNC220
                [self.python, TEMPLATE, str(theirs.fileno()), str(os.getpid()), self.preload],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                close_fds=True,
                start_new_session=True,
            )
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        reply = await self._reply(START_TIMEOUT_S)
        self.template_pid = int(reply["ready"])
        log.info("exec-sessions: kernel template process %d ready", self.template_pid)

    async def _call(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(self._sock, json.dumps(request).encode() + b"\n")
        return await self._reply(timeout)

    async def _reply(self, timeout: float) -> dict[str, Any]:
        await self._until(lambda: bool(self._replies), timeout)
        return self._replies.popleft()

    def _reset(self) -> None:
        """Forget a template that failed; the next request starts a new one."""
        sock, self._sock, self._buffer = self._sock, None, b""
        self._replies.clear()
        if sock is not None:
            sock.close()
        process, self.process, self.template_pid = self.process, None, None
        if process is not None:
            with contextlib.suppress(OSError):
                process.kill()
            with contextlib.suppress(Exception):
                process.wait(timeout=5)

    def close(self) -> None:
        """End the template (its children die with it)."""
        self.closed = True
        self._reset()


class ForkedProcess:
    """A ``Popen``-like handle on a kernel forked by the template (not our child).

    Liveness comes from a pidfd, so a reused pid can never be mistaken for the kernel.
    """

    stdin = stdout = stderr = None

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._pidfd: int | None = None
        try:
            self._pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):  # pragma: no cover - old kernels: pid only
            self._pidfd = None

    @property
    def pidfd(self) -> int | None:
        """The process's pidfd (readable once it exited), while it is open."""
        return self._pidfd

    def poll(self) -> int | None:
        """``None`` while the kernel runs, else an exit code (unknown: ``-SIGKILL`` style 1)."""
        if self.returncode is not None:
            return self.returncode
        if self._pidfd is not None:
            readable, _, _ = select.select([self._pidfd], [], [], 0)
            if not readable:
                return None
        else:  # pragma: no cover
            try:
                os.kill(self.pid, 0)
                return None
            except ProcessLookupError:
                pass
        self.returncode = 1
        self._close()
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Block until the kernel exited (pidfd readable)."""
        if self.poll() is None and self._pidfd is not None:
            select.select([self._pidfd], [], [], timeout)
        code = self.poll()
        if code is None:
            raise subprocess.TimeoutExpired(["kernel"], timeout or 0)
        return code

    def send_signal(self, signum: int) -> None:
        """Signal the kernel process."""
        if self.poll() is not None:
            return
        if self._pidfd is not None and hasattr(signal, "pidfd_send_signal"):
            signal.pidfd_send_signal(self._pidfd, signum)
        else:  # pragma: no cover
            os.kill(self.pid, signum)

    def kill(self) -> None:
        """SIGKILL the kernel."""
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM the kernel."""
        self.send_signal(signal.SIGTERM)

    def _close(self) -> None:
        fd, self._pidfd = self._pidfd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __del__(self) -> None:
        self._close()


def template_supported() -> bool:
    """Whether this platform can run the template (Linux: fork, pidfd)."""
    return sys.platform.startswith("linux") and hasattr(os, "pidfd_open")
