"""``ForkProvisioner``: kernels forked from a warm template process instead of launched.

Registered as ``exec-sessions-fork`` under the ``jupyter_client.kernel_provisioners`` entry
point and selected by a kernel spec's ``metadata.kernel_provisioner``, so jupyter_server's
kernel manager, the warm pool and the engine are unchanged. The kernel manager prepares the
launch as usual (connection file with fresh ports and key, environment, working directory);
instead of ``Popen`` the provisioner asks the template (:mod:`.server`) to fork a kernel for
that connection file, and returns once the child reports its kernel listening (so the clients
jupyter_server and the pool connect next find it bound: no reconnect delay, no polling). A
command that is not ``<the template's python> -m ipykernel_launcher``, any failure of the
template, or a child that dies before it is ready falls back to a normal launch (logged once per
reason).

Its kernels (forked or launched) listen on ``ipc`` sockets beside their connection file in the
server's runtime directory instead of loopback TCP ports: no port chosen for one kernel can be
taken by another process before the kernel binds it (many kernels starting at once made that
race real), and only the server's OS user can reach the sockets. A runtime directory whose path
is too long for a unix socket keeps TCP.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from typing import Any

from jupyter_client.provisioning.local_provisioner import LocalProvisioner
from traitlets import Unicode

from .server import ForkServer, fork_server, template_supported

__all__ = ["PROVISIONER_NAME", "ForkProvisioner", "fork_argv"]

PROVISIONER_NAME = "exec-sessions-fork"
#: a unix socket path holds at most 107 bytes: the prefix, "-", the socket's number
MAX_IPC_PREFIX = 100

_warned: set[str] = set()


def fork_argv(cmd: list[str]) -> list[str] | None:
    """The kernel's own arguments when ``cmd`` runs ``ipykernel_launcher``, else ``None``."""
    if len(cmd) >= 3 and cmd[1:3] == ["-m", "ipykernel_launcher"] and os.path.isabs(cmd[0]):
        return list(cmd[3:])
    return None


class ForkProvisioner(LocalProvisioner):
    """Forks the kernel from the template; launches it normally when that cannot be done."""

    forked = False
    preload = Unicode(
        "", config=True, help="Python file the template runs once before forking (optional)."
    )

    async def pre_launch(self, **kwargs: Any) -> dict[str, Any]:
        """Put the kernel's sockets on ``ipc`` beside its connection file, then prepare."""
        km = self.parent
        if km is not None and km.transport == "tcp" and km.connection_file:
            prefix = os.path.splitext(km.connection_file)[0] + "-ipc"
            if len(prefix.encode()) <= MAX_IPC_PREFIX:
                km.transport = "ipc"
                km.ip = prefix
        return await super().pre_launch(**kwargs)

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> Any:
        """Fork a kernel for this connection; on any failure launch it as usual."""
        argv = fork_argv(cmd)
        reason = None
        if not template_supported():
            reason = "this platform cannot fork kernels"
        elif argv is None:
            reason = f"kernel command is not '<python> -m ipykernel_launcher': {cmd[:3]}"
        if reason is None:
            server: ForkServer = fork_server(cmd[0], self.preload)
            env = {str(k): str(v) for k, v in (kwargs.get("env") or os.environ).items()}
            cwd = str(kwargs.get("cwd") or os.getcwd())
            try:
                process = await server.fork(argv or [], cwd, env)
            except Exception as e:
                reason = f"fork failed ({e}); launching instead"
            else:
                try:
                    await server.wait_ready(process)
                except Exception as e:
                    reason = f"a forked kernel did not start ({e}); launching instead"
                    process.kill()  # and let go of its ports before the launch binds them
                    with contextlib.suppress(Exception):
                        await asyncio.to_thread(process.wait, 10)
            if reason is None:
                self.process = process  # type: ignore[assignment]  # Popen-like
                self.pid = self.pgid = process.pid  # the child started its own session
                self.cwd = cwd
                self.forked = True
                return self.connection_info
        if reason not in _warned:
            _warned.add(reason)
            self.log.warning("exec-sessions: %s", reason)
        self.forked = False
        return await super().launch_kernel(cmd, **kwargs)
