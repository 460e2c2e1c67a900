"""The server's side of the template process: start it, ask it to fork, follow the children.

One :class:`ForkServer` per Python interpreter (the kernel spec's) and server process; started
on the first fork request and kept for the server's lifetime. The template dies with the server
(see ``_template``); :meth:`ForkServer.close` ends it earlier.
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

_servers: dict[str, ForkServer] = {}
_servers_lock = threading.Lock()


def fork_server(python: str) -> ForkServer:
    """The process-wide fork server for the interpreter ``python``."""
    key = os.path.abspath(python)  # not realpath: a venv's python is a symlink that matters
    with _servers_lock:
        server = _servers.get(key)
        if server is None or server.closed:
            server = _servers[key] = ForkServer(key)
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

    def __init__(self, python: str) -> None:
        self.python = python
        self.process: subprocess.Popen[bytes] | None = None
        self.template_pid: int | None = None
        self.closed = False
        self._sock: socket.socket | None = None
        self._buffer = b""
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._failed_at = -RETRY_AFTER_S

    def _get_lock(self) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    async def fork(self, argv: list[str], cwd: str, env: dict[str, str]) -> ForkedProcess:
        """A new kernel process running ``ipykernel_launcher`` with ``argv``; raises on failure."""
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

    async def _start(self) -> None:
        ours, theirs = socket.socketpair()
        try:
            # spawning is one fork+exec: not worth a thread
            self.process = subprocess.Popen(  # noqa: ASYNC220
                [self.python, TEMPLATE, str(theirs.fileno()), str(os.getpid())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                close_fds=True,
                start_new_session=True,
            )
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        reply = await self._read_line(START_TIMEOUT_S)
        self.template_pid = int(reply["ready"])
        log.info("exec-sessions: kernel template process %d ready", self.template_pid)

    async def _call(self, request: dict[str, Any], timeout: float) -> dict[str, Any]:
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(self._sock, json.dumps(request).encode() + b"\n")
        return await self._read_line(timeout)

    async def _read_line(self, timeout: float) -> dict[str, Any]:
        assert self._sock is not None
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while b"\n" not in self._buffer:
                chunk = await loop.sock_recv(self._sock, 65536)
                if not chunk:
                    raise RuntimeError("the kernel template process exited")
                self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        result: dict[str, Any] = json.loads(line)
        return result

    def _reset(self) -> None:
        """Forget a template that failed; the next request starts a new one."""
        sock, self._sock, self._buffer = self._sock, None, b""
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
