"""Memory limits per confined kernel: cgroup v2, cgroup v1, or rlimits.

A :class:`MemoryLimiter` is created per kernel before it starts. With a writable cgroup memory
controller the kernel's whole process tree is placed in a cgroup of its own (the launcher writes
itself into ``cgroup.procs`` before it executes bubblewrap), whose limit can be set or changed
at any time — so a warm pool kernel gets its container's limit when it is handed out. Exceeding
the limit makes the kernel's OOM killer end the largest process (the kernel), and the cgroup's
``oom_kill`` counter tells us why it died. Without a writable cgroup, ``RLIMIT_AS`` is set on
every process of the sandbox (``prlimit``): allocations beyond it fail with ``MemoryError``
instead of killing the kernel.
"""

from __future__ import annotations

import contextlib
import os
import resource
import signal
from pathlib import Path

__all__ = ["MemoryLimiter", "memory_bytes", "probe_cgroup"]

_UNITS = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def memory_bytes(limit: str) -> int:
    """``"1g"`` → 1 GiB in bytes (k/m/g/t suffixes, powers of 1024)."""
    text = limit.strip().lower()
    if text and text[-1] in _UNITS:
        return int(float(text[:-1]) * _UNITS[text[-1]])
    return int(text)


def _own_cgroup() -> tuple[str | None, str | None]:
    """The cgroup v2 path of this process and cgroup v1 memory path (relative, or None)."""
    v2 = v1 = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            num, controllers, path = line.split(":", 2)
            if num == "0" and controllers == "":
                v2 = path
            elif "memory" in controllers.split(","):
                v1 = path
    return v2, v1


def _try_base(base: Path, version: str) -> Path | None:
    try:
        base.mkdir(exist_ok=True)
        if version == "v2":
            sub = base / "cgroup.subtree_control"
            if "memory" not in (base / "cgroup.controllers").read_text().split():
                return None
            if "memory" not in sub.read_text().split():
                sub.write_text("+memory")
            probe = base / "probe"
            probe.mkdir(exist_ok=True)
            ok = (probe / "memory.max").exists()
            probe.rmdir()
        else:
            probe = base / "probe"
            probe.mkdir(exist_ok=True)
            (probe / "memory.limit_in_bytes").write_text("-1")
            ok = True
            probe.rmdir()
        return base if ok else None
    except OSError:
        with contextlib.suppress(OSError):
            base.rmdir()
        return None


def probe_cgroup(tag: str) -> tuple[str, Path | None]:
    """The mechanism available here and, for cgroups, the parent cgroup of our kernels.

    ``tag`` names this server's own parent cgroup (one per data directory), so a sweep after
    a crash only ever touches this server's kernels. Answers ``("cgroup-v2", path)``,
    ``("cgroup-v1", path)`` or ``("rlimit", None)``.
    """
    v2, v1 = _own_cgroup()
    root = Path("/sys/fs/cgroup")
    if v2 is not None and (root / "cgroup.controllers").exists():
        own = root / v2.lstrip("/")
        # cgroup v2 forbids processes in inner nodes: only usable when our parent is delegated
        base = _try_base(own / tag, "v2")
        if base is not None:
            return "cgroup-v2", base
    if v1 is not None and (root / "memory").is_dir():
        base = _try_base(root / "memory" / v1.lstrip("/") / tag, "v1")
        if base is not None:
            return "cgroup-v1", base
    return "rlimit", None


class MemoryLimiter:
    """The memory limit of one kernel's process tree."""

    def __init__(self, mechanism: str, parent: Path | None, name: str) -> None:
        self.mechanism = mechanism
        self.limit: str | None = None
        self._oom_base = 0
        self._root_pid: int | None = None
        self.path: Path | None = None
        if parent is not None:
            self.path = parent / name
            self.path.mkdir(exist_ok=True)

    @property
    def procs_file(self) -> str | None:
        """The ``cgroup.procs`` a launcher writes itself into (None without cgroups)."""
        return str(self.path / "cgroup.procs") if self.path is not None else None

    def attach(self, root_pid: int) -> None:
        """Remember the sandbox's root process (for rlimits) and apply a pending limit."""
        self._root_pid = root_pid
        if self.limit is not None and self.mechanism == "rlimit":
            self._apply_rlimit(memory_bytes(self.limit))

    def set_limit(self, limit: str | None) -> None:
        """Set (or lift, with None) the limit, e.g. ``"1g"``; effective at once."""
        self.limit = limit
        value = memory_bytes(limit) if limit else None
        if self.path is not None:
            if self.mechanism == "cgroup-v2":
                (self.path / "memory.max").write_text(str(value) if value else "max")
                swap = self.path / "memory.swap.max"
                if swap.exists():
                    swap.write_text("0" if value else "max")
            else:
                (self.path / "memory.limit_in_bytes").write_text(str(value or -1))
                memsw = self.path / "memory.memsw.limit_in_bytes"
                if memsw.exists():
                    with contextlib.suppress(OSError):
                        memsw.write_text(str(value or -1))
            self._oom_base = self._oom_kills()
        elif self._root_pid is not None:
            self._apply_rlimit(value)

    def _apply_rlimit(self, value: int | None) -> None:
        lim = value if value else resource.RLIM_INFINITY
        for pid in self.pids():
            with contextlib.suppress(OSError):
                resource.prlimit(pid, resource.RLIMIT_AS, (lim, lim))

    def _oom_kills(self) -> int:
        if self.path is None:
            return 0
        name = "memory.events" if self.mechanism == "cgroup-v2" else "memory.oom_control"
        with contextlib.suppress(OSError, ValueError):
            for line in (self.path / name).read_text().splitlines():
                key, _, num = line.partition(" ")
                if key == "oom_kill":
                    return int(num)
        return 0

    def exceeded(self) -> bool:
        """True when the OOM killer acted in this kernel's cgroup since the limit was set."""
        return self.limit is not None and self._oom_kills() > self._oom_base

    def pids(self) -> list[int]:
        """Every process of the sandbox (cgroup members, or the root process's descendants)."""
        if self.path is not None:
            with contextlib.suppress(OSError):
                text = (self.path / "cgroup.procs").read_text()
                return [int(p) for p in text.split()]
            return []
        if self._root_pid is None:
            return []
        return descendants(self._root_pid)

    def kill_all(self) -> None:
        """SIGKILL every process of the sandbox."""
        for pid in self.pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)

    def remove(self) -> None:
        """Kill what is left and remove the cgroup."""
        self.kill_all()
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.rmdir()


def descendants(root: int) -> list[int]:
    """``root`` and every process below it (from ``/proc``)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            stat = Path(f"/proc/{entry}/stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out
