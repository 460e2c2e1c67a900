"""The template process: imports and the shell built once, a kernel forked per request.

Run as a script (``python _template.py FD PARENT [PRELOAD]``) by :class:`~.server.ForkServer`;
it imports nothing of this package. ``FD`` is its end of a socket pair with the server,
``PARENT`` the server's pid, ``PRELOAD`` an optional Python file it runs once before any fork
(the server's in-kernel helper modules, so that no kernel compiles them). The template:

- imports what an ipykernel needs (ipykernel, IPython, zmq, tornado, jupyter_client, the
  standard library modules the project's in-kernel helper uses), and nothing more: no event
  loop, no zmq context and no thread exist in it, ever — so a fork copies no running machinery;
- builds, once, what every kernel would otherwise build for itself: the ``InteractiveShell``
  (traitlets config, an in-memory history, magics, completer, colour themes, the default
  extension) with the configuration a kernel loads (profile config files included);
- reads one JSON request per line (``argv``, ``cwd``, ``env``) and answers ``{"pid": N}`` or
  ``{"error": "..."}``; the child itself writes ``{"kernel_ready": N}`` on the same socket once
  its sockets are bound and its shell is ready (``{"kernel_failed": N}`` if it could not start),
  then closes it before the kernel runs any code;
- dies with the server (``PR_SET_PDEATHSIG``, and on end-of-file of its socket); its children
  die with it the same way, as a launched kernel dies with its server.

Each child starts a session of its own (its process group is the kernel's, for interrupts and
kills), closes every descriptor but stdio, moves to its working directory, takes its environment,
reseeds ``random``, forgets cached temp-dir state, and runs ``IPKernelApp`` with its own
connection file (ports, key, transport). Its kernel adopts the template's shell only when the
child's configuration is the one the shell was built with (else it builds its own, as a
launched kernel does); the adopted shell gets the child's kernel and config, a fresh in-memory
history database, the child's working directory and environment. The shell holds no user
state: it never ran code. What a fork cannot renew: the string-hash secret (``PYTHONHASHSEED``)
is the template's for all its kernels, and modules imported in the template read the server's
environment at import time. The template reaps nothing: ``SIGCHLD`` is ignored, so exited
kernels never linger as zombies (the server follows a kernel through a pidfd).
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
    # Not matplotlib (nor numpy): a kernel does not import them until user code does, and
    # every module the template holds costs each kernel private pages at its start (ipykernel
    # lists all modules' files): the two cost ~4 MiB per kernel, measured.
    for optional in ("comm", "jedi", "ipykernel.debugger", "psutil"):
        with contextlib.suppress(Exception):
            __import__(optional)


#: What the template's shell is built with: options every forked kernel gets (see ``_child``).
SHELL_ARGV = ["--HistoryManager.hist_file=:memory:"]
#: Options of a kernel's app that do not concern its shell (``tqdm``: a marker the shell
#: itself sets when the app's section is missing).
_OWN_OPTIONS = ("connection_file", "parent_handle", "tqdm")


class Prebuilt:
    """The kernel app and shell of the template, and what they were built from.

    The app is ``IPKernelApp``'s singleton with the configuration loaded (profile config files
    read once, here); a child whose command line holds only its own options
    (:func:`_own_options`) takes it as is, else makes an app of its own.
    """

    def __init__(
        self, app: Any, shell: Any, config: dict[str, Any], ipython_dir: str, profile: str
    ) -> None:
        self.app = app
        self.shell = shell
        self.config = config
        self.ipython_dir = ipython_dir
        self.profile = profile


_prebuilt: Prebuilt | None = None


def _config_key(config: Any) -> dict[str, Any]:
    """A kernel app's configuration minus what only concerns its own process."""
    data = {str(k): dict(v) if isinstance(v, dict) else v for k, v in config.items()}
    own = data.get("IPKernelApp")
    if isinstance(own, dict):
        for key in _OWN_OPTIONS:
            own.pop(key, None)
    return {k: v for k, v in data.items() if v != {}}


def prebuild() -> Prebuilt | None:
    """Build the kernel's shell the way ``IPythonKernel`` would, before any fork.

    The configuration comes from a stand-in ``IPKernelApp`` that loads what a kernel loads
    (command line ``SHELL_ARGV``, the profile's config files). Raises if building it left an
    event loop, a zmq context or a thread behind (then the template forks without a shell).
    """
    import asyncio

    import zmq
    from ipykernel.compiler import XCachingCompiler
    from ipykernel.ipkernel import IPythonKernel
    from ipykernel.kernelapp import IPKernelApp
    from ipykernel.zmqshell import ZMQInteractiveShell
    from IPython.core.application import BaseIPythonApplication

    excepthook = sys.excepthook
    app: Any = IPKernelApp.instance()  # the children's app, its config files loaded
    initialize: Any = BaseIPythonApplication.initialize
    try:
        initialize(app, list(SHELL_ARGV))
    finally:
        sys.excepthook = excepthook
    config = _config_key(app.config)  # before the shell adds its own entries
    kernel_config = config.get("IPythonKernel", {})
    if app.kernel_class is not IPythonKernel or {"shell_class", "compiler_class"} & set(
        kernel_config
    ):
        return None
    shell: Any = ZMQInteractiveShell.instance(
        parent=app,
        profile_dir=app.profile_dir,
        user_module=None,
        user_ns=None,
        kernel=None,
        compiler_class=XCachingCompiler,
    )
    # the default extension (the kernel loads it again: a no-op once loaded); not when it
    # would read stored variables into the namespace
    store = config.get("StoreMagics", {})
    if "storemagic" in app.default_extensions and not store.get("autorestore", False):
        shell.extension_manager.load_extension("storemagic")
    warm(shell)
    policy = asyncio.get_event_loop_policy()
    if getattr(getattr(policy, "_local", None), "_loop", None) is not None:
        raise RuntimeError("building the shell made an event loop")
    if getattr(zmq.Context, "_instance", None) is not None:
        raise RuntimeError("building the shell made a zmq context")
    if threading.active_count() != 1:
        raise RuntimeError("building the shell started a thread")
    return Prebuilt(app, shell, config, os.path.abspath(app.ipython_dir), app.profile_dir.location)


def warm(shell: Any) -> None:
    """Take, once and here, the paths every kernel's first cells take; keep no trace of it.

    A silent, history-free ``None`` cell (input transformers, compiler, the run machinery,
    their regular expressions and caches), the formatting of a result, and one message through
    a throw-away session: done in each child, that is CPU and copied pages per kernel. The
    cell leaves no name, no history entry, no execution count; what it cached under its own
    name in ``linecache`` is removed.
    """
    import linecache

    from jupyter_client.session import Session

    cached = set(linecache.cache)
    shell.run_cell("None", store_history=False, silent=True)
    shell.display_formatter.format(2)
    # the message layer (signing, packing, header dates) with a throw-away key
    session: Any = Session(key=os.urandom(16).hex().encode())
    request = session.msg("execute_request", {"code": "None", "silent": False})
    parts = session.serialize(request)
    session.deserialize(session.feed_identities(parts)[1])
    for name in set(linecache.cache) - cached:
        linecache.cache.pop(name, None)
    shell.last_execution_result = None
    shell.last_execution_succeeded = True


def _adoptable(app: Any, pre: Prebuilt) -> bool:
    """Whether the child's kernel app would build the very shell the template built."""
    from ipykernel.ipkernel import IPythonKernel

    return (
        app.kernel_class is IPythonKernel
        and app.user_ns is None
        and os.path.abspath(app.ipython_dir) == pre.ipython_dir
        and app.profile_dir.location == pre.profile
        and _config_key(app.config) == pre.config
    )


def _adopt(kernel: Any, pre: Prebuilt) -> None:
    """Make the template's shell this child's own: its kernel, history, directory, env."""
    shell = kernel.shell
    assert shell is pre.shell
    shell.parent = kernel
    shell.config = kernel.config  # equal to the one it was built with (``_adoptable``)
    shell.kernel = kernel
    shell.init_environment()  # the variables it sets went with the template's environment
    cwd = os.getcwd()
    shell.starting_dir = cwd
    history = shell.history_manager
    with contextlib.suppress(Exception):  # the template's copy of its in-memory database
        history.db.close()
    history.init_db()
    history.new_session()
    history.dir_hist[:] = [cwd]  # the list ``_dh`` is


def _tell(sock: socket.socket, message: dict[str, Any]) -> None:
    """One line to the server (one ``send``: lines of children and template never mix)."""
    with contextlib.suppress(OSError):
        sock.sendall(json.dumps(message).encode() + b"\n")


def _own_options(argv: list[str]) -> dict[str, Any] | None:
    """A kernel's own options (connection file, parent handle) from its command line.

    None when ``argv`` holds anything else but ``SHELL_ARGV`` (what the template's app was
    configured with).
    """
    own: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "-f" and i + 1 < len(argv):
            own["connection_file"] = argv[i + 1]
            i += 2
            continue
        if arg.startswith("--IPKernelApp.parent_handle="):
            own["parent_handle"] = int(arg.partition("=")[2])
        elif arg not in SHELL_ARGV:
            return None
        i += 1
    return own if "connection_file" in own else None


def _run_kernel(argv: list[str], sock: socket.socket) -> None:
    """Run ``IPKernelApp`` as ``ipykernel_launcher`` does, with what the template prepared.

    The template's app (its configuration loaded) takes the child's own options; a command line
    with anything more gets an app of its own, as a launched kernel would. The kernel adopts
    the template's shell when its configuration is the shell's. The server hears from the
    child once its sockets are bound and its shell is ready.
    """
    from ipykernel.kernelapp import IPKernelApp
    from IPython.core.application import BaseIPythonApplication
    from traitlets.config import Config

    pre = _prebuilt
    own = _own_options(argv) if pre is not None else None
    kernel_app: Any = IPKernelApp
    base: Any = BaseIPythonApplication
    load_config = base.initialize
    if pre is not None and own is None:
        kernel_app.clear_instance()
    app: Any = kernel_app.instance()
    if own is not None:
        # the command line a kernel parses after its config files: it overrides them
        app.update_config(Config({"IPKernelApp": own}))
        app.init_crash_handler()
        base.initialize = lambda self, argv=None: None  # the config is loaded already
    if pre is not None:
        init_kernel = app.init_kernel

        def init_kernel_adopting() -> None:
            adopt = _adoptable(app, pre)
            if not adopt:
                from ipykernel.zmqshell import ZMQInteractiveShell

                shell_class: Any = ZMQInteractiveShell
                shell_class.clear_instance()  # the kernel builds its own
            init_kernel()
            if adopt:
                _adopt(app.kernel, pre)

        app.init_kernel = init_kernel_adopting
    try:
        app.initialize(argv)
    except BaseException:
        _tell(sock, {"kernel_failed": os.getpid()})
        raise
    finally:
        base.initialize = load_config
    _tell(sock, {"kernel_ready": os.getpid()})
    sock.close()
    app.start()


def pack_module_files() -> None:
    """Give every module's ``__file__`` an equal string allocated next to the others.

    A kernel's start lists every module's ``__file__`` (ipykernel's debugger set-up): each
    string it touches is a page the child then copies. Strings made one after the other share
    pages: ~700 modules cost a child ~3 MiB less.
    """
    for module in list(sys.modules.values()):
        name = getattr(module, "__file__", None)
        if type(name) is str:
            with contextlib.suppress(Exception):
                module.__file__ = "".join(list(name))


def _child(request: dict[str, Any], template_pid: int, sock: socket.socket) -> None:
    """Become the kernel described by ``request``; never returns.

    ``sock`` (the template's end of the server's socket) stays open until the kernel is ready
    and is closed before the kernel runs any code.
    """
    code = 1
    try:
        os.setsid()
        _die_with_parent(template_pid)
        # back to what a freshly started Python has (SIGPIPE and SIGXFSZ stay ignored)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        keep = sock.fileno()
        os.closerange(3, keep)
        os.closerange(keep + 1, _max_fd())
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
            argv.extend(SHELL_ARGV)
        sys.argv = ["ipykernel_launcher", *argv]
        _run_kernel(argv, sock)
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


def run_preload(path: str) -> None:
    """Run the server's preload file (if any) in a namespace of its own."""
    if not path:
        return
    try:
        with open(path, encoding="utf-8") as f:
            code = compile(f.read(), path, "exec")
        exec(code, {"__name__": "_exec_sessions_preload"})
    except Exception:  # kernels still get what it installs, from their own set-up
        import traceback

        traceback.print_exc()


def serve(fd: int, parent: int, preload_file: str = "") -> None:
    """Answer fork requests on the socket ``fd`` until it closes."""
    _die_with_parent(parent)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # exited kernels are reaped by the OS
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server's Ctrl-C is not ours
    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    preload()
    run_preload(preload_file)
    global _prebuilt
    try:
        _prebuilt = prebuild()
    except Exception:  # forks still work: each kernel builds its own app and shell
        import traceback

        traceback.print_exc()
        with contextlib.suppress(Exception):
            from ipykernel.kernelapp import IPKernelApp
            from ipykernel.zmqshell import ZMQInteractiveShell

            IPKernelApp.clear_instance()
            ZMQInteractiveShell.clear_instance()
    pack_module_files()
    # Everything imported and built so far is permanent: keep the collector from touching (and so
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
                _child(request, me, sock)
            reply = {"pid": pid}
        sock.sendall(json.dumps(reply).encode() + b"\n")


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "")
