"""Kernels forked from a warm template process (``kernel_start = fork``).

A kernel launched the usual way spends most of its start importing ipykernel, IPython, zmq
and tornado. Here one template process per server does those imports once and forks a fresh
kernel per start request; the ``exec-sessions-fork`` kernel provisioner makes that invisible
to jupyter_server and the pool. See :mod:`.provisioner` and the template's own docstring for
what each child gets of its own (connection, key, working directory, random streams,
descriptors, process group) and how nothing outlives the server.
"""

from __future__ import annotations

from .kernelspec import can_fork_spec, write_kernelspec
from .provisioner import PROVISIONER_NAME, ForkProvisioner
from .server import ForkedProcess, ForkServer, close_all, fork_server, template_supported

__all__ = [
    "PROVISIONER_NAME",
    "ForkProvisioner",
    "ForkServer",
    "ForkedProcess",
    "can_fork_spec",
    "close_all",
    "fork_server",
    "template_supported",
    "write_kernelspec",
]
