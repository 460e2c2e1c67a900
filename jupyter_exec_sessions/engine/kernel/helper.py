"""Helper module that the engine installs inside every kernel.

This file has two lives. On the server, the engine imports it for its constants and reads its
source text. Inside the kernel, that source is executed as the module
``sys.modules["_jupyter_exec_sessions_kernel"]`` (it survives ``%reset`` and never touches the
user namespace); the engine calls it with one-line silent executes such as
``__import__("sys").modules["_jupyter_exec_sessions_kernel"].call()``.

Rules for this file: standard library only (IPython is imported lazily, it is always there in
an IPython kernel), Python 3.8+ syntax, no import of other package modules. Arguments arrive as
JSON in the execute request's content under :data:`PAYLOAD_KEY` (read through
``kernel.get_parent()``, ~25x cheaper than a string literal IPython must tokenize) or inline
when a proxy dropped that field. Results go back as one ``display_data`` of :data:`RESULT_MIME`;
live shell output as ``display_data`` of :data:`STREAM_MIME` (``{"i", "name", "text"}``), a
framing that cannot be confused with anything a command prints.
"""

from __future__ import annotations

import base64
import errno
import json
import os
import re
import shutil
import stat
import sys
import tempfile
from typing import Any

MODULE_NAME = "_jupyter_exec_sessions_kernel"
SHELL_MODULE_NAME = "_jupyter_exec_sessions_kernel_shell"
PAYLOAD_KEY = "jupyter_exec_sessions"
RESULT_MIME = "application/vnd.jupyter-exec-sessions.result+json"
STREAM_MIME = "application/vnd.jupyter-exec-sessions.stream+json"
OUTPUT_DIR = ".exec_output"
#: How the API names the container directory (the sandbox mounts it there): file paths shown
#: to users are under it in every mode. Same value as ``_contract.CONTAINER_ROOT``.
PUBLIC_ROOT = "/mnt/data"
MAX_LIST_ENTRIES = 10_000

#: Names of container directories (siblings of this kernel's workdir) the helper may remove.
_CONTAINER_DIR = re.compile(r"^cntr_[0-9a-f]{32,64}$")

#: Per-kernel state: ``workdir`` (as given), ``root`` (its realpath), ``shell_dir``.
_state: dict[str, Any] = {}


class HelperError(Exception):
    """An operation failed for a reason the engine maps to an error (``code``, ``message``)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def publish(mime: str, obj: Any) -> None:
    """Send ``obj`` to the client as a ``display_data`` with a private MIME type."""
    from IPython import get_ipython

    get_ipython().display_pub.publish({mime: obj}, metadata={})


def setup(workdir: str, drop: str | None = None, shell_dir: str | None = None) -> dict[str, Any]:
    """Create and enter the working directory; make the shell state dir.

    A different workdir than the previous setup's (a pre-warmed pool kernel given to a
    container) starts a fresh shell state. ``drop``: a container directory beside the new
    workdir to remove (the one a pool kernel prepared and that no container claimed).
    ``shell_dir``: where the shell state lives (the server removes it with the kernel); without
    one, a new directory in the temp dir.
    """
    os.makedirs(workdir, exist_ok=True)
    os.chdir(workdir)
    sibling = drop and os.path.dirname(drop) == os.path.dirname(workdir) and drop != workdir
    if sibling and _CONTAINER_DIR.match(os.path.basename(drop or "")):
        shutil.rmtree(drop or "", ignore_errors=True)
    if _state.get("workdir") not in (None, workdir) and _state.get("shell_dir"):
        state_file = os.path.join(_state["shell_dir"], "state.sh")
        if os.path.exists(state_file):
            os.remove(state_file)
    _state["workdir"] = workdir
    _state["root"] = os.path.realpath(workdir)
    if shell_dir:
        os.makedirs(shell_dir, mode=0o700, exist_ok=True)
        _state["shell_dir"] = shell_dir
    shell_dir = _state.get("shell_dir")
    if not shell_dir or not os.path.isdir(shell_dir):
        shell_dir = tempfile.mkdtemp(prefix="jupyter-exec-sessions-shell-")
        _state["shell_dir"] = shell_dir
    return {"ok": True, "cwd": os.getcwd(), "pid": os.getpid(), "shell_dir": shell_dir}


def resolve(rel: Any) -> str:
    """Absolute path of ``rel`` inside the working directory, or ``HelperError("invalid_path")``."""
    root = _state["root"]
    if not isinstance(rel, str) or not rel or "\x00" in rel or os.path.isabs(rel):
        raise HelperError("invalid_path", f"invalid path {rel!r}: must be relative to the workdir")
    path = os.path.realpath(os.path.join(root, rel))
    if not path.startswith(root + os.sep):
        raise HelperError("invalid_path", f"invalid path {rel!r}: it resolves outside the workdir")
    return path


def _stat(path: str) -> dict[str, Any]:
    st = os.stat(path)
    rel = os.path.relpath(path, _state["root"]).replace(os.sep, "/")
    return {"path": rel, "bytes": st.st_size, "mtime": st.st_mtime}


def op_list(args: dict[str, Any]) -> dict[str, Any]:
    """Every file under the workdir (hidden ones too), capped at ``limit`` entries."""
    root = _state["root"]
    limit = int(args.get("limit", MAX_LIST_ENTRIES))
    files: list[dict[str, Any]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            if len(files) >= limit:
                return {"ok": True, "files": files, "capped": True}
            full = os.path.join(dirpath, name)
            try:
                st = os.lstat(full)
                if stat.S_ISLNK(st.st_mode):
                    if not os.path.realpath(full).startswith(root + os.sep):
                        continue  # unreadable through the file API: do not list it
                    st = os.stat(full)
            except OSError:
                continue  # dangling symlink or raced deletion
            if stat.S_ISREG(st.st_mode):
                rel = os.path.relpath(full, root).replace(os.sep, "/")
                files.append({"path": rel, "bytes": st.st_size, "mtime": st.st_mtime})
    return {"ok": True, "files": files, "capped": False}


#: errno values that mean the requested name itself cannot be a file here (a client error).
_BAD_NAME_ERRNOS = {errno.ENAMETOOLONG, errno.EISDIR, errno.ENOTDIR, errno.EEXIST, errno.EINVAL}


def op_write(args: dict[str, Any]) -> dict[str, Any]:
    """Write (``append`` false) or append base64 ``data`` to a file, creating parent dirs."""
    path = resolve(args["path"])
    if os.path.isdir(path):
        raise HelperError("is_directory", f"{args['path']!r} is a directory")
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "ab" if args.get("append") else "wb") as f:
            f.write(base64.b64decode(args["data"]))
    except (FileExistsError, NotADirectoryError):
        raise HelperError(
            "invalid_path", f"cannot write {args['path']!r}: a parent of it is a file"
        ) from None
    except OSError as e:  # no absolute paths in the message: the workdir is not the client's
        code = "invalid_path" if e.errno in _BAD_NAME_ERRNOS else "io_error"
        raise HelperError(code, f"cannot write {args['path']!r}: {e.strerror}") from None
    return {
        "ok": True,
        "file": _stat(path),
        "abs_path": os.path.join(_state["workdir"], args["path"]),
    }


def op_stat(args: dict[str, Any]) -> dict[str, Any]:
    """Whether one regular file exists, and its size."""
    path = resolve(args["path"])
    if not os.path.isfile(path):
        raise HelperError("not_found", f"no file at path {args['path']!r}")
    return {"ok": True, "file": _stat(path)}


def op_read(args: dict[str, Any]) -> dict[str, Any]:
    """Read up to ``length`` bytes at ``offset``; ``eof`` tells whether the file ended."""
    path = resolve(args["path"])
    if not os.path.exists(path):
        raise HelperError("not_found", f"no file at path {args['path']!r}")
    if not os.path.isfile(path):
        raise HelperError("is_directory", f"{args['path']!r} is not a regular file")
    with open(path, "rb") as f:
        f.seek(int(args.get("offset", 0)))
        data = f.read(int(args["length"]) + 1)
    eof = len(data) <= int(args["length"])
    data = data[: int(args["length"])]
    return {"ok": True, "data": base64.b64encode(data).decode("ascii"), "eof": eof}


def op_delete(args: dict[str, Any]) -> dict[str, Any]:
    """Delete one file (not a directory)."""
    path = resolve(args["path"])
    if not os.path.lexists(path):
        raise HelperError("not_found", f"no file at path {args['path']!r}")
    if os.path.isdir(path):
        raise HelperError("is_directory", f"{args['path']!r} is a directory")
    os.remove(path)
    return {"ok": True}


def op_shell(args: dict[str, Any]) -> dict[str, Any]:
    """Run shell commands in the persistent shell (see ``engine.kernel.shell``)."""
    name = args["execution_id"] + ".txt"
    out_path = os.path.join(_state["workdir"], OUTPUT_DIR, name)
    shell = sys.modules[SHELL_MODULE_NAME]  # installed next to this module (see BOOTSTRAP)
    return shell.run(  # type: ignore[no-any-return]
        commands=args["commands"],
        timeout=float(args["timeout"]),
        limit=int(args["limit"]),
        workdir=_state["workdir"],
        shell_dir=_state["shell_dir"],
        out_path=out_path,
        shown_path=f"{PUBLIC_ROOT}/{OUTPUT_DIR}/{name}",
        emit=lambda i, name, text: publish(STREAM_MIME, {"i": i, "name": name, "text": text}),
    )


def _container_dirs_root() -> str:
    """The directory holding this kernel's workdir and its sibling container directories."""
    return os.path.dirname(str(_state["workdir"]).rstrip("/"))


def op_list_dirs(args: dict[str, Any]) -> dict[str, Any]:
    """Names of the container directories beside this kernel's workdir (its own excluded)."""
    root = _container_dirs_root()
    own = os.path.basename(_state["workdir"].rstrip("/"))
    try:
        names = sorted(os.listdir(root))
    except FileNotFoundError:
        names = []
    dirs = [n for n in names if _CONTAINER_DIR.match(n) and n != own]
    return {"ok": True, "dirs": dirs}


def op_remove_dirs(args: dict[str, Any]) -> dict[str, Any]:
    """Remove container directories (by name) beside this kernel's workdir, its own included.

    Removing its own workdir moves the kernel to the parent directory first.
    """
    root = _container_dirs_root()
    removed = []
    for name in args["names"]:
        if not isinstance(name, str) or not _CONTAINER_DIR.match(name):
            raise HelperError("invalid_path", f"{name!r} is not a container directory name")
        path = os.path.join(root, name)
        if path == _state["workdir"].rstrip("/"):
            os.chdir(root)
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path):
            removed.append(name)
    return {"ok": True, "removed": removed}


_OPS = {
    "list_dirs": op_list_dirs,
    "remove_dirs": op_remove_dirs,
    "list": op_list,
    "write": op_write,
    "read": op_read,
    "stat": op_stat,
    "delete": op_delete,
    "shell": op_shell,
}


def _payload() -> Any:
    try:
        from IPython import get_ipython

        return get_ipython().kernel.get_parent()["content"][PAYLOAD_KEY]
    except Exception:  # dropped by a proxy, or a kernel without get_parent()
        raise HelperError("no_payload", "the execute request carried no payload") from None


def call(inline: str | None = None) -> None:
    """Run one operation (arguments from the payload or ``inline`` JSON); publish its result."""
    try:
        args = json.loads(inline) if inline is not None else _payload()
        result = _OPS[args["op"]](args)
    except HelperError as e:
        result = {"ok": False, "error": e.code, "message": e.message}
    except OSError as e:
        # strerror only: str(e) names the absolute path, which is not the client's business
        result = {"ok": False, "error": "os_error", "message": f"{type(e).__name__}: {e.strerror}"}
    publish(RESULT_MIME, result)


#: Executed with globals ``A`` (the payload) to install the helper modules in a kernel:
#: ``A["modules"]`` is a list of ``[module_name, source]``, the main module last, ``A["hash"]``
#: identifies their version. Modules already installed with that hash are kept (no compile: a
#: pre-warmed kernel's setup is ~1 ms); per-kernel state of an older copy is carried over.
BOOTSTRAP = """
import sys, types
_m = sys.modules.get(A["modules"][-1][0])
if any(getattr(sys.modules.get(n), "SOURCE_HASH", None) != A["hash"] for n, _ in A["modules"]):
    for _name, _src in A["modules"]:
        _m = types.ModuleType(_name)
        exec(compile(_src, "<" + _name + ">", "exec"), _m.__dict__)
        _m.SOURCE_HASH = A["hash"]
        _old = sys.modules.get(_name)
        if _old is not None and isinstance(getattr(_old, "_state", None), dict):
            _m._state.update(_old._state)
        sys.modules[_name] = _m
_r = _m.setup(A["workdir"], A.get("drop"), A.get("shell_dir"))
if A.get("publish"):
    _m.publish(_m.RESULT_MIME, _r)
"""
