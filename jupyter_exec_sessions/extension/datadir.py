"""One registry per server: an exclusive lock on the data directory.

A server holds ``<data_dir>/server.lock`` (``flock``, released by the OS when the process
ends, however it ends) for its whole life. Two servers therefore never share a registry, and
a start-up sweep of a data directory only ever touches what the sweeping server owns.

Without an explicit ``data_dir`` the server takes ``<jupyter data dir>/exec_sessions``, or,
when another running server holds it, the first free ``exec_sessions-2``, ``exec_sessions-3``,
...: a second server started the same way just works, with its own containers. An explicit
``data_dir`` that another server holds is refused with a message naming the option.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

__all__ = ["DataDirBusyError", "DataDirLock", "claim_data_dir"]

LOCK_NAME = "server.lock"
#: Numbered default directories tried before giving up.
MAX_DEFAULT_DIRS = 64


class DataDirBusyError(RuntimeError):
    """The data directory is held by another running server."""


class DataDirLock:
    """An exclusive, non-blocking ``flock`` on ``<path>/server.lock``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, note: str = "") -> bool:
        """Take the lock; ``False`` (immediately, never waiting) when another process holds it."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} {note}".strip().encode() + b"\n")
        self._fd = fd
        return True

    def holder(self) -> str:
        """What the holding server wrote into the lock file (its pid), for messages."""
        with contextlib.suppress(OSError):
            return (self.path / LOCK_NAME).read_text().strip()
        return "unknown"

    def release(self) -> None:
        """Give the lock up (the OS also does when the process ends)."""
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def claim_data_dir(explicit: str, default_base: Path, note: str = "") -> DataDirLock:
    """Lock the data directory this server will use.

    ``explicit`` (the ``data_dir`` setting, ``""`` when not set) is used as given, or refused
    with :class:`DataDirBusyError`. Otherwise the first free of ``default_base``,
    ``default_base-2``, ... is taken.
    """
    if explicit:
        lock = DataDirLock(Path(explicit))
        if not lock.acquire(note):
            raise DataDirBusyError(
                f"The data directory {explicit} is in use by another running Jupyter server"
                f" ({lock.holder()}). Stop that server, or give this one its own directory"
                " with --ExecSessionsApp.data_dir=/another/dir ."
            )
        return lock
    for n in range(1, MAX_DEFAULT_DIRS + 1):
        path = default_base if n == 1 else default_base.with_name(f"{default_base.name}-{n}")
        lock = DataDirLock(path)
        if lock.acquire(note):
            return lock
    raise DataDirBusyError(
        f"All {MAX_DEFAULT_DIRS} default data directories next to {default_base} are in use"
        " by running servers. Set --ExecSessionsApp.data_dir=/another/dir ."
    )
