"""Crash clean-up: kill what a previous run of *this* server left behind.

Each confined kernel's directory holds a pidfile (launcher pid and its start time). Kernels
normally die with the server (``--die-with-parent``); if anything survived a SIGKILL of the
server, the next start of the same server (same state directory) kills it: processes of each
leftover kernel cgroup, and launchers whose pid and start time still match. Only this server's
own state directory and cgroup are ever swept.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from pathlib import Path

__all__ = ["start_time", "sweep", "write_pidfile"]


def start_time(pid: int) -> str | None:
    """A process's start time (clock ticks since boot), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def write_pidfile(kernel_dir: Path, pid: int) -> None:
    """Record the launcher's pid and start time in the kernel directory."""
    (kernel_dir / "pid").write_text(f"{pid} {start_time(pid) or ''}\n")


def _kill_tree(pid: int) -> None:
    from ._memory import descendants

    for p in reversed(descendants(pid)):
        with contextlib.suppress(OSError):
            os.kill(p, signal.SIGKILL)


def sweep(state_dir: Path, cgroup_parent: Path | None) -> int:
    """Kill and remove every leftover kernel of this state directory; how many were found."""
    found = 0
    pid: int
    if cgroup_parent is not None and cgroup_parent.is_dir():
        for child in cgroup_parent.iterdir():
            if not child.is_dir():
                continue
            found += 1
            with contextlib.suppress(OSError):
                for member in (child / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        os.kill(int(member), signal.SIGKILL)
            with contextlib.suppress(OSError):
                child.rmdir()
    if state_dir.is_dir():
        for kdir in state_dir.iterdir():
            pidfile = kdir / "pid"
            with contextlib.suppress(OSError, ValueError):
                pid_text, _, started = pidfile.read_text().strip().partition(" ")
                pid = int(pid_text)
                if started and start_time(pid) == started:
                    _kill_tree(pid)
                    found += 1
            shutil.rmtree(kdir, ignore_errors=True)
    return found
