"""The bubblewrap command line that confines one kernel.

Inside the sandbox the kernel sees: the system (``/usr``, ``/bin``, ``/lib*``, ``/etc`` without
password hashes) and the Python environment read-only, its container directory read-write at
``/mnt/data`` (the working directory), its own kernel directory at ``/run/kernel`` (connection
file, ipc sockets, the network proxy socket), a private ``/tmp`` and ``/dev/shm``, its own
``/proc`` and a minimal ``/dev``. It runs in new PID, network, IPC and UTS namespaces, with no
capabilities, in a session of its own, and dies with the process that started it. The
environment is cleared and rebuilt from a short allowlist: no token or secret of the server
reaches the kernel.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping

__all__ = [
    "INSIDE_DATA",
    "INSIDE_KERNEL_DIR",
    "PROXY_PORT",
    "bwrap_args",
    "python_roots",
    "sandbox_env",
]

#: Where the container directory appears inside the sandbox (OpenAI's convention).
INSIDE_DATA = "/mnt/data"
#: Where the kernel's own directory (connection file, sockets) appears inside the sandbox.
INSIDE_KERNEL_DIR = "/run/kernel"
#: Loopback port of the in-sandbox forwarder to the network proxy (``HTTP(S)_PROXY``).
PROXY_PORT = 3128

_SYSTEM = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt")
_MASKED = ("/etc/shadow", "/etc/gshadow", "/etc/shadow-", "/etc/gshadow-", "/etc/sudoers")
_ENV_KEEP = ("PATH", "LANG", "LANGUAGE", "TZ", "TERM")


def python_roots(argv0: str | None = None) -> list[str]:
    """Directories of the Python environment the kernel needs, outside the system dirs."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    if argv0 and os.path.isabs(argv0):
        real = os.path.realpath(argv0)
        roots.add(os.path.dirname(os.path.dirname(real)))
    out = []
    for root in sorted(roots):
        if any(root == s or root.startswith(s + "/") for s in _SYSTEM):
            continue
        if os.path.isdir(root):
            out.append(root)
    return out


def sandbox_env(source: Mapping[str, str], extra: Mapping[str, str]) -> dict[str, str]:
    """The kernel's whole environment: a few harmless variables of ``source`` plus ``extra``."""
    env = {k: v for k, v in source.items() if k in _ENV_KEEP or k.startswith("LC_")}
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    env.update(
        {
            "HOME": "/tmp",
            "TMPDIR": "/tmp",
            "IPYTHONDIR": "/tmp/.ipython",
            "MPLCONFIGDIR": "/tmp/.matplotlib",
            "JUPYTER_RUNTIME_DIR": "/tmp/.jupyter-runtime",
            "PYTHONNOUSERSITE": "1",
        }
    )
    proxy = f"http://127.0.0.1:{PROXY_PORT}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env[name] = proxy
    env["NO_PROXY"] = env["no_proxy"] = ""
    env.update(extra)
    return env


def bwrap_args(
    *,
    data_dir: str,
    kernel_dir: str,
    env: Mapping[str, str],
    ro_roots: Iterable[str],
    hosts_file: str | None = None,
) -> list[str]:
    """Options for ``bwrap`` (no program name, no command: append ``--`` and the command)."""
    args = [
        "--unshare-pid",
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-uts",
        "--unshare-cgroup-try",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--hostname",
        "sandbox",
    ]
    for path in _SYSTEM:
        args += ["--ro-bind-try", path, path]
    for path in _MASKED:
        if os.path.exists(path):
            args += ["--ro-bind", "/dev/null", path]
    if hosts_file is not None:
        args += ["--ro-bind", hosts_file, "/etc/hosts"]
    args += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",
        "--tmpfs",
        "/dev/shm",
    ]
    # after the private /tmp: a Python environment that lives under /tmp (a CI checkout, a
    # virtualenv made with mktemp) must stay visible, not be hidden by the empty tmpfs
    for root in ro_roots:
        args += ["--ro-bind", root, root]
    args += [
        "--bind",
        data_dir,
        INSIDE_DATA,
        "--bind",
        kernel_dir,
        INSIDE_KERNEL_DIR,
        "--chdir",
        INSIDE_DATA,
        "--clearenv",
    ]
    for key, value in env.items():
        args += ["--setenv", key, value]
    return args
