"""``BwrapProvisioner``: a jupyter_client kernel provisioner that confines kernels with bubblewrap.

Registered as ``exec-sessions-bwrap`` under the ``jupyter_client.kernel_provisioners`` entry
point and selected by a kernel spec's ``metadata.kernel_provisioner``, so jupyter_server's
kernel manager, the warm pool and the engine use confined kernels unchanged.

Per kernel it:

- makes a private kernel directory (``state_dir/<id>``) holding a connection file with
  ``transport="ipc"`` whose sockets live in that directory, and binds it at ``/run/kernel``
  inside the sandbox (the manager keeps its own copy, with the outside paths, in the runtime
  directory — which the sandbox never sees);
- binds the kernel's working directory (the container directory) at ``/mnt/data``;
- puts the whole sandbox in a memory cgroup of its own (or uses rlimits), see ``_memory``;
- launches ``bwrap`` with its arguments passed through a pipe (``--args``), so not even the
  sandbox's own ``/proc`` shows the server's paths;
- on hand-out, :meth:`confine` applies the container's memory limit and network policy; an
  ``allowlist`` starts a :class:`FilteringProxy` on ``/run/kernel/proxy.sock``;
- on shutdown kills every process of the sandbox and removes its directory and cgroup.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from jupyter_client.provisioning.local_provisioner import LocalProvisioner
from traitlets import Dict, Unicode

from ._command import INSIDE_KERNEL_DIR, PROXY_PORT, bwrap_args, python_roots, sandbox_env
from ._forwarder import FORWARDER_SOURCE
from ._leftovers import write_pidfile
from ._memory import MemoryLimiter, probe_cgroup
from ._proxy import FilteringProxy

__all__ = ["BwrapProvisioner", "NetworkPolicy", "cgroup_tag"]

#: ``None`` (the host's network, only without a sandbox), ``{"type": "disabled"}`` or
#: ``{"type": "allowlist", "allowed_domains": [...]}``.
NetworkPolicy = dict[str, Any] | None

_PROBES: dict[str, tuple[str, Path | None]] = {}


def cgroup_tag(state_dir: str) -> str:
    """The name of this server's parent cgroup: one per state directory."""
    return "jes-" + hashlib.sha1(state_dir.encode()).hexdigest()[:12]


def memory_mechanism(state_dir: str) -> tuple[str, Path | None]:
    """The memory-limit mechanism for kernels of ``state_dir`` (probed once per process)."""
    if state_dir not in _PROBES:
        _PROBES[state_dir] = probe_cgroup(cgroup_tag(state_dir))
    return _PROBES[state_dir]


class BwrapProvisioner(LocalProvisioner):
    """Launches the kernel inside a bubblewrap sandbox; see the module docstring."""

    state_dir = Unicode(
        help="Directory of the per-kernel directories (short: unix socket paths live there)."
    ).tag(config=True)
    bwrap = Unicode("bwrap", help="The bubblewrap executable.").tag(config=True)
    proxy_resolve = Dict(
        help="Names the network proxy resolves itself (name → address), e.g. for tests."
    ).tag(config=True)

    limiter: MemoryLimiter | None = None
    proxy: FilteringProxy | None = None
    network: NetworkPolicy = None
    _args_fd: int | None = None

    # ------------------------------------------------------------------ paths
    @property
    def kernel_dir(self) -> Path:
        """The private directory of this kernel (bound at ``/run/kernel`` inside)."""
        return Path(self.state_dir) / self.kernel_id.replace("-", "")[:12]

    # ------------------------------------------------------------------ launch
    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        """Switch the connection to ipc in the kernel directory and wrap the command."""
        km = self.parent
        assert km is not None, "the provisioner needs its kernel manager"
        kdir = self.kernel_dir
        kdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        data_dir = str(kwargs.get("cwd") or os.getcwd())
        os.makedirs(data_dir, exist_ok=True)
        km.transport = "ipc"
        km.ip = str(kdir / "k")
        kwargs = await super().pre_launch(**kwargs)
        conn_file = km.connection_file
        inside_conn = _write_inside_files(kdir, conn_file)
        kernel_cmd = [inside_conn if a == conn_file else a for a in kwargs.pop("cmd")]
        python = kernel_cmd[0] if os.path.isabs(kernel_cmd[0]) else sys.executable
        command = [
            "/bin/sh",
            "-c",
            '"$0" -I -S "$1" "$2" "$3" </dev/null & shift 3; exec "$@"',
            python,
            f"{INSIDE_KERNEL_DIR}/forwarder.py",
            f"{INSIDE_KERNEL_DIR}/proxy.sock",
            str(PROXY_PORT),
            *kernel_cmd,
        ]
        env = sandbox_env(os.environ, {})
        args = bwrap_args(
            data_dir=data_dir,
            kernel_dir=str(kdir),
            env=env,
            ro_roots=python_roots(kernel_cmd[0]),
        )
        if self.limiter is None:
            mechanism, parent = memory_mechanism(self.state_dir)
            self.limiter = MemoryLimiter(mechanism, parent, kdir.name)
        blob = ("\0".join(args) + "\0").encode()
        read_fd, write_fd = os.pipe()
        try:
            os.write(write_fd, blob)  # a few KiB: fits in the pipe buffer
        finally:
            os.close(write_fd)
        self._args_fd = read_fd
        launcher = [self.bwrap, "--args", str(read_fd), "--", *command]
        procs = self.limiter.procs_file
        if procs is not None:
            launcher = ["/bin/sh", "-c", 'echo 0 > "$0" && exec "$@"', procs, *launcher]
        kwargs["cmd"] = launcher
        kwargs["cwd"] = data_dir
        kwargs["pass_fds"] = (read_fd,)
        return kwargs

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        """Start the launcher; record its pid for the crash sweep."""
        try:
            info = await super().launch_kernel(cmd, **kwargs)
        finally:
            if self._args_fd is not None:
                os.close(self._args_fd)
                self._args_fd = None
        assert self.pid is not None
        write_pidfile(self.kernel_dir, self.pid)
        if self.limiter is not None:
            self.limiter.attach(self.pid)
        return info

    # ------------------------------------------------------------------ confinement
    async def confine(self, memory_limit: str | None, network: NetworkPolicy) -> None:
        """Apply a container's memory limit and network policy to this (running) kernel."""
        if self.limiter is not None and memory_limit != self.limiter.limit:
            self.limiter.set_limit(memory_limit)
        await self._stop_proxy()
        self.network = network
        if network is not None and network.get("type") == "allowlist":
            self.proxy = FilteringProxy(
                str(self.kernel_dir / "proxy.sock"),
                network.get("allowed_domains") or [],
                resolve=self.proxy_resolve,
            )
            await self.proxy.start()

    def death_reason(self) -> str | None:
        """Why the kernel died, when we know: e.g. ``"memory limit 1g exceeded"``."""
        if self.limiter is not None and self.limiter.exceeded():
            return f"memory limit {self.limiter.limit} exceeded"
        return None

    def describe(self) -> dict[str, Any]:
        """How this kernel is confined: mode, memory mechanism, network."""
        net = (self.network or {}).get("type", "disabled")
        return {
            "mode": "bwrap",
            "memory": self.limiter.mechanism if self.limiter else None,
            "network": net,
        }

    async def _stop_proxy(self) -> None:
        if self.proxy is not None:
            proxy, self.proxy = self.proxy, None
            await proxy.close()

    # ------------------------------------------------------------------ teardown
    async def kill(self, restart: bool = False) -> None:
        """Kill the launcher's process group and every process of the sandbox."""
        pids = self.limiter.pids() if self.limiter is not None else []
        await super().kill(restart)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, 9)

    async def cleanup(self, restart: bool = False) -> None:
        """Kill leftovers; unless restarting, stop the proxy and remove directory and cgroup."""
        await super().cleanup(restart)
        if self.limiter is not None:
            self.limiter.kill_all()
        if restart:
            return
        await self._stop_proxy()
        if self.limiter is not None:
            self.limiter.remove()
        shutil.rmtree(self.kernel_dir, ignore_errors=True)


def _write_inside_files(kdir: Path, conn_file: str) -> str:
    """The sandbox's copy of the connection file (inside paths) and the forwarder script."""
    info = json.loads(Path(conn_file).read_text())
    info["ip"] = f"{INSIDE_KERNEL_DIR}/k"
    inside_path = kdir / "kernel.json"
    inside_path.write_text(json.dumps(info))
    inside_path.chmod(0o600)
    (kdir / "forwarder.py").write_text(FORWARDER_SOURCE)
    return f"{INSIDE_KERNEL_DIR}/kernel.json"
