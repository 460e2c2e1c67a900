"""The template process: kernel imports done once, a fresh kernel forked per request.

Run as a script (``python _template.py FD``) by :class:`~.server.ForkServer`; it imports
nothing of this package. ``FD`` is its end of a socket pair with the server. The template:

- imports what an ipykernel needs (ipykernel, IPython, zmq, tornado, jupyter_client, the
  standard library modules the project's in-kernel helper uses), and nothing more: no event
  loop, no zmq context and no thread exist in it, ever — so a fork copies no running machinery;
- reads one JSON request per line (``argv``, ``cwd``, ``env``) and answers ``{"pid": N}`` or
  ``{"error": "..."}``;
- dies with the server (``PR_SET_PDEATHSIG``, and on end-of-file of its socket); its children
  die with it the same way, as a launched kernel dies with its server.

Each child starts a session of its own (its process group is the kernel's, for interrupts and
kills), closes every descriptor but stdio, moves to its working directory, takes its environment,
reseeds ``random``, forgets cached temp-dir state, and runs ``IPKernelApp`` with its own connection
file (ports, key, transport). What a fork cannot renew: the string-hash secret
(``PYTHONHASHSEED``) is the template's for all its kernels, and modules imported in the
template read the server's environment at import time. The template reaps nothing: ``SIGCHLD``
is ignored, so exited kernels never linger as zombies (the server follows a kernel through a
pidfd).
"""

from __future__ import annotations

import sys

# The script's own directory must not shadow anything in the kernel.
if sys.path and sys.path[0].endswith("forkserver"):
    del sys.path[0]

import contextlib
import ctypes
import gc
import json
import os
import random
import signal
import socket
import tempfile
import threading
from typing import Any

_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent: int) -> None:
    """SIGKILL this process when ``parent`` (the process that started it) exits."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except Exception:  # pragma: no cover - non-Linux: the socket's end-of-file still ends us
        pass
    if os.getppid() != parent:  # the parent exited before prctl took effect
        os._exit(0)


def preload() -> None:
    """Import what a kernel needs, without creating a loop, a context or a thread."""
    import asyncio  # noqa: F401
    import base64  # noqa: F401
    import codeop  # noqa: F401
    import faulthandler  # noqa: F401
    import hashlib  # noqa: F401
    import hmac  # noqa: F401
    import pdb  # noqa: F401
    import pty  # noqa: F401
    import selectors  # noqa: F401
    import shlex  # noqa: F401
    import shutil  # noqa: F401
    import sqlite3  # noqa: F401
    import subprocess  # noqa: F401
    import uuid  # noqa: F401

    import IPython
    import IPython.core.completer
    import IPython.core.completerlib
    import IPython.core.debugger
    import IPython.core.interactiveshell
    import IPython.core.oinspect
    import IPython.extensions.storemagic
    import IPython.utils.wildcard  # noqa: F401
    import jupyter_client  # noqa: F401
    import tornado.ioloop
    import tornado.platform.asyncio  # noqa: F401
    import zmq
    import zmq.asyncio  # noqa: F401
    from ipykernel import ipkernel, kernelapp, zmqshell  # noqa: F401

    # ipykernel.debugger pulls in debugpy's vendored pydevd: the largest single import of a
    # kernel's start, and (checked before every fork) it starts no thread.
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    with contextlib.suppress(Exception):  # colour themes are JSON files read on first use
        from IPython.utils import PyColorize

        for name in getattr(PyColorize, "_BUILTIN_THEMES", {}):
            PyColorize.theme_table[name]
    for optional in ("comm", "jedi", "matplotlib_inline.backend_inline", "ipykernel.debugger"):
        with contextlib.suppress(Exception):
            __import__(optional)


def _child(request: dict[str, Any], template_pid: int) -> None:
    """Become the kernel described by ``request``; never returns."""
    code = 1
    try:
        os.setsid()
        _die_with_parent(template_pid)
        # back to what a freshly started Python has (SIGPIPE and SIGXFSZ stay ignored)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.closerange(3, _max_fd())
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ["JPY_PARENT_PID"] = str(template_pid)
        cwd = request.get("cwd") or os.getcwd()
        os.chdir(cwd)
        # Fresh random streams and temp-dir state: nothing the template drew is shared.
        random.seed()
        tempfile.tempdir = None
        # The kernel watches the template as a launched kernel watches its server.
        argv = [*request["argv"], f"--IPKernelApp.parent_handle={template_pid}"]
        if not any(a.startswith("--HistoryManager.hist_file") for a in argv):
            # Each container's input history stays its own (not one SQLite file in the home
            # directory shared by every kernel), and no history thread or file is set up.
            argv.append("--HistoryManager.hist_file=:memory:")
        sys.argv = ["ipykernel_launcher", *argv]
        from ipykernel import kernelapp

        kernelapp.launch_new_instance(argv=argv)
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:  # pragma: no cover - reported on the inherited stderr
        import traceback

        traceback.print_exc()
    finally:
        os._exit(code)


def _max_fd() -> int:
    try:
        return max(256, min(int(os.sysconf("SC_OPEN_MAX")), 1 << 20))
    except (ValueError, OSError):  # pragma: no cover
        return 65536


def serve(fd: int, parent: int) -> None:
    """Answer fork requests on the socket ``fd`` until it closes."""
    _die_with_parent(parent)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # exited kernels are reaped by the OS
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server's Ctrl-C is not ours
    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    preload()
    # Everything imported so far is permanent: keep the collector from touching (and so
    # copying) those pages in every child.
    gc.collect()
    gc.freeze()
    reader = sock.makefile("rb")
    me = os.getpid()
    sock.sendall(json.dumps({"ready": me}).encode() + b"\n")
    for line in reader:
        try:
            request = json.loads(line)
            if threading.active_count() != 1:
                raise RuntimeError("the template has a thread; it cannot fork safely")
            pid = os.fork()
        except Exception as e:
            reply: dict[str, Any] = {"error": f"{type(e).__name__}: {e}"}
        else:
            if pid == 0:
                reader.close()
                sock.close()
                _child(request, me)
            reply = {"pid": pid}
        sock.sendall(json.dumps(reply).encode() + b"\n")


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]))
