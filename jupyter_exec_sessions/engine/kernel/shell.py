"""Persistent shell, run inside the kernel by the helper module (see ``engine.kernel.helper``).

Installed in the kernel as ``sys.modules["_jupyter_exec_sessions_kernel_shell"]``; standard
library only, Python 3.8+. Each command is its own ``bash`` process in its own session (process
group). Before the command, :data:`WRAPPER` sources the saved shell state (cwd, variables with
their export flags, functions, aliases); an ``EXIT`` trap dumps the new state to ``state.sh.new``,
which is committed only when the command ended by itself, so a command killed on timeout leaves
the state from before it. Output is read from pipes as it comes, streamed through ``emit`` up to
the limit, kept as head + tail per stream, and written in full to ``out_path`` when truncated.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import selectors
import shutil
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable
from typing import Any

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_"
#: Variables bash manages itself (or we use): never saved, never restored.
_SPECIAL = (
    "BASH*|COMP_*|DIRSTACK|EPOCHREALTIME|EPOCHSECONDS|FUNCNAME|GROUPS|HISTCMD|LINENO|OPTARG|"
    "OPTIND|PIPESTATUS|PPID|PWD|RANDOM|SECONDS|SHLVL|SRANDOM|_|__jes_*|__JES_*|COLUMNS|LINES"
)
#: Script run by ``bash -c``; the command is read from the file ``$__JES_CMD`` (no size limit,
#: unlike an environment variable), the state file is ``$__JES_STATE``. ``${!X@}`` lists
#: variables without forking; ``${!n@a}`` (bash >= 4.4) gives attributes: readonly ones are
#: skipped.
WRAPPER = (
    "__jes_state=$__JES_STATE; IFS= builtin read -r -d '' __jes_cmd < \"$__JES_CMD\"\n"
    "unset __JES_STATE __JES_CMD\n"
    "shopt -s expand_aliases\n"
    'if [ -f "$__jes_state" ]; then builtin . "$__jes_state"; fi\n'
    "__jes_save() {\n"
    "  local __jes_n\n"
    "  {\n"
    "    builtin printf 'builtin cd -- %q 2>/dev/null\\n' \"$PWD\"\n"
    "    for __jes_n in " + " ".join("${!" + c + "@}" for c in _LETTERS) + "; do\n"
    "      case $__jes_n in " + _SPECIAL + ") continue ;; esac\n"
    '      case "${!__jes_n@a}" in *r*) continue ;; esac\n'
    '      builtin declare -p -- "$__jes_n"\n'
    "    done\n"
    "    builtin declare -f\n"
    "    builtin alias -p\n"
    '  } > "$__jes_state.new" 2>/dev/null\n'
    "}\n"
    "trap __jes_save EXIT\n"
    'builtin eval "$__jes_cmd"\n'
)
_READ = 65536
_POLL_S = 0.05


def truncation_marker(dropped: int, path: str | None) -> str:
    """The line put between head and tail of a truncated output."""
    where = f"full output in {path}" if path else "full output not available"
    return f"\n[... {dropped:,} characters truncated: {where} ...]\n"


def stream_marker(limit: int, path: str | None) -> str:
    """The last live delta of a stream that passed its limit."""
    where = f"full output will be in {path}" if path else "full output not available"
    return f"\n[... output exceeds {limit:,} characters: live output stops here; {where} ...]\n"


class HeadTail:
    """Keeps the first 60% and the last 40% of ``limit`` characters of a growing text."""

    def __init__(self, limit: int) -> None:
        self.head_limit = limit * 3 // 5
        self.tail_limit = limit - self.head_limit
        self.limit = limit
        self.head: list[str] = []
        self.head_len = 0
        self.tail: deque[str] = deque()
        self.tail_len = 0
        self.total = 0

    @property
    def truncated(self) -> bool:
        """Whether some text was dropped."""
        return self.total > self.limit

    def add(self, text: str) -> None:
        """Append text."""
        self.total += len(text)
        if not self.tail and self.head_len < self.head_limit:
            take = text[: self.head_limit - self.head_len]
            self.head.append(take)
            self.head_len += len(take)
            text = text[len(take) :]
        if text:
            self.tail.append(text)
            self.tail_len += len(text)
        if self.total > self.limit:
            while self.tail and self.tail_len - len(self.tail[0]) >= self.tail_limit:
                self.tail_len -= len(self.tail.popleft())
            if self.tail_len > self.tail_limit:
                first = self.tail.popleft()
                keep = first[self.tail_len - self.tail_limit :]
                self.tail.appendleft(keep)
                self.tail_len = self.tail_limit

    def value(self, path: str | None) -> str:
        """Head + marker + tail (or everything when it fits)."""
        middle = ""
        if self.truncated:
            middle = truncation_marker(self.total - self.head_len - self.tail_len, path)
        return "".join(self.head) + middle + "".join(self.tail)


class FullLog:
    """Everything all commands printed, in order; written to ``path`` only when needed."""

    def __init__(self, path: str, spill_at: int, shown: str | None = None) -> None:
        self.path = path
        self.shown = shown or path  # the path as the API names it (under /mnt/data)
        self.spill_at = spill_at
        self.mem: list[str] = []
        self.mem_len = 0
        self.fh: Any = None
        self.needed = False

    def write(self, text: str) -> None:
        """Record text (spills to the file once memory use passes ``spill_at``)."""
        if self.fh is not None:
            self.fh.write(text)
            return
        self.mem.append(text)
        self.mem_len += len(text)
        if self.mem_len > self.spill_at:
            self.spill()

    def spill(self) -> None:
        """Open the file and move what is in memory into it."""
        if self.fh is None:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            self.fh = open(self.path, "w", encoding="utf-8", errors="replace")  # noqa: SIM115
            self.fh.write("".join(self.mem))
            self.mem = []

    def close(self) -> str | None:
        """Finish; the path when the file is kept (some output was truncated), else None."""
        if self.needed:
            self.spill()
        if self.fh is not None:
            self.fh.close()
            if not self.needed:
                os.remove(self.path)
        return self.path if self.needed else None


class _Stream:
    def __init__(self, index: int, name: str, limit: int, log: FullLog, emit: Any) -> None:
        self.index, self.name, self.limit, self.log, self.emit = index, name, limit, log, emit
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.kept = HeadTail(limit)
        self.streamed = 0

    def feed(self, data: bytes, final: bool = False) -> None:
        """Decode, keep head/tail, log, and stream (up to the limit) a chunk of output."""
        text = self.decoder.decode(data, final)
        if not text:
            return
        self.kept.add(text)
        self.log.write(text)
        if self.kept.truncated:
            self.log.needed = True
            self.log.spill()
        if self.streamed < self.limit:
            part = text[: self.limit - self.streamed]
            self.streamed += len(part)
            self.emit(self.index, self.name, part)
            if len(part) < len(text):
                self.streamed = self.limit
                self.emit(self.index, self.name, stream_marker(self.limit, self.log.shown))


def _env(state: str, command_file: str) -> dict[str, str]:
    env = dict(os.environ)
    for key in ("MPLBACKEND", "CLICOLOR_FORCE", "FORCE_COLOR"):
        env.pop(key, None)
    env.update(TERM="dumb", NO_COLOR="1", PAGER="cat", GIT_PAGER="cat", GIT_TERMINAL_PROMPT="0")
    env.update(__JES_STATE=state, __JES_CMD=command_file)
    return env


def _drain(fd: int, stream: _Stream) -> None:
    for _ in range(64):
        try:
            data = os.read(fd, _READ)
        except (BlockingIOError, OSError):
            return
        if not data:
            return
        stream.feed(data)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def run_one(
    index: int,
    command: str,
    bash: str,
    timeout: float,
    limit: int,
    workdir: str,
    shell_dir: str,
    log: FullLog,
    emit: Callable[[int, str, str], None],
) -> dict[str, Any]:
    """Run one command; returns ``{command, stdout, stderr, outcome, interrupted}``."""
    state = os.path.join(shell_dir, "state.sh")
    if os.path.exists(state + ".new"):
        os.remove(state + ".new")
    os.makedirs(workdir, exist_ok=True)  # user code may have removed it
    os.makedirs(shell_dir, exist_ok=True)  # or a temp-dir cleaner
    command_file = os.path.join(shell_dir, "command.sh")
    with open(command_file, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write(command)
    log.write(f"$ {command}\n")
    proc = subprocess.Popen(
        [bash, "--noprofile", "--norc", "-c", WRAPPER, "bash"],
        cwd=workdir,
        env=_env(state, command_file),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    out = _Stream(index, "stdout", limit, log, emit)
    err = _Stream(index, "stderr", limit, log, emit)
    streams = {proc.stdout.fileno(): out, proc.stderr.fileno(): err}
    sel = selectors.DefaultSelector()
    for fd in streams:
        os.set_blocking(fd, False)
        sel.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    timed_out = interrupted = False
    try:
        while True:
            remaining = deadline - time.monotonic()
            if not sel.get_map():
                try:
                    proc.wait(timeout=max(remaining, 0))
                except subprocess.TimeoutExpired:
                    timed_out = True
                break
            if proc.poll() is not None:  # exited; background children may hold the pipes
                break
            if remaining <= 0:
                timed_out = True
                break
            for key, _ in sel.select(min(remaining, _POLL_S)):
                try:
                    data = os.read(key.fd, _READ)
                except BlockingIOError:
                    continue
                if data:
                    streams[key.fd].feed(data)
                else:
                    sel.unregister(key.fd)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if timed_out or interrupted:
            _kill_group(proc)
        proc.wait()
        for key in list(sel.get_map().values()):
            _drain(key.fd, streams[key.fd])
        sel.close()
        for stream in streams.values():
            stream.feed(b"", final=True)
        proc.stdout.close()
        proc.stderr.close()
    if not (timed_out or interrupted) and os.path.exists(state + ".new"):
        os.replace(state + ".new", state)
    rc = proc.returncode if proc.returncode >= 0 else 128 - proc.returncode
    outcome: dict[str, Any] = {"type": "timeout"} if timed_out else {"type": "exit"}
    if not timed_out:
        outcome["exit_code"] = 130 if interrupted else rc
    return {
        "command": command,
        "stdout": out.kept,
        "stderr": err.kept,
        "outcome": outcome,
        "interrupted": interrupted,
    }


def run(
    commands: list[str],
    timeout: float,
    limit: int,
    workdir: str,
    shell_dir: str,
    out_path: str,
    emit: Callable[[int, str, str], None],
    shown_path: str | None = None,
) -> dict[str, Any]:
    """Run ``commands`` one after the other; the structured result for the engine.

    ``shown_path`` is how markers and the result name ``out_path`` (default: itself).
    """
    bash = shutil.which("bash")
    log = FullLog(out_path, spill_at=max(8 * 1024 * 1024, 2 * limit), shown=shown_path)
    done: list[dict[str, Any]] = []
    interrupted = False
    try:
        for index, command in enumerate(commands):
            if bash is None:
                kept = HeadTail(limit)
                kept.add("bash: not found in the kernel's environment\n")
                done.append(
                    {
                        "command": command,
                        "stdout": HeadTail(limit),
                        "stderr": kept,
                        "outcome": {"type": "exit", "exit_code": 127},
                    }
                )
                continue
            done.append(
                run_one(index, command, bash, timeout, limit, workdir, shell_dir, log, emit)
            )
            if done[-1].pop("interrupted"):
                interrupted = True
                break
    except KeyboardInterrupt:
        interrupted = True
    path = log.shown if log.close() is not None else None
    results = [
        {**d, "stdout": d["stdout"].value(path), "stderr": d["stderr"].value(path)} for d in done
    ]
    return {
        "ok": True,
        "commands": results,
        "truncated": path is not None,
        "full_output_file": path,
        "interrupted": interrupted,
    }
