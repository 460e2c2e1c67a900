"""Maps a Python execution's IOPub messages to outputs, under an output budget.

Used by ``engine.session``. Text outputs (stdout/stderr logs and the ``text/plain`` of results)
share one budget of ``limit`` characters. Past it the final outputs keep the first 60% and the
last 40% with a marker line between, and every text character (in order) goes to a local spool
that the engine then copies into the container through the kernel. Live deltas go to the sink
up to the limit, then one marker delta, then no more text deltas (images, displays and errors
still flow). Memory stays bounded by the budget plus the message being handled.
"""

from __future__ import annotations

import base64
import logging
import re
import tempfile
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any, Union

from .._contract import OutputSink
from ..models import (
    DisplayOutput,
    ErrorOutput,
    ExitOutcome,
    ImageOutput,
    LogsOutput,
    Output,
    ResultOutput,
    ShellCallOutput,
    TimeoutOutcome,
)
from .kernel.helper import RESULT_MIME, STREAM_MIME
from .kernel.shell import stream_marker, truncation_marker

__all__ = ["PythonOutputs", "shell_outputs", "strip_ansi", "timeout_error"]

log = logging.getLogger(__name__)

_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml")
_PRIVATE = (RESULT_MIME, STREAM_MIME)
_INPUT_MESSAGE = (
    "input() is not available: code runs without a terminal or a user to answer; "
    "pass data in the code or in files instead"
)
_CHUNK = 8 * 1024 * 1024
_SPOOL_SLICE = 1024 * 1024

#: ("logs", "stdout" | "stderr") or ("result", n): consecutive pieces with one key merge.
_Key = tuple[str, Union[str, int]]


def strip_ansi(text: str) -> str:
    """Remove ANSI escape sequences (colours, cursor moves, OSC links)."""
    return _ANSI.sub("", text)


def timeout_error(
    timeout_s: float, *, lost: bool, traceback: list[str] | None = None
) -> ErrorOutput:
    """The error output of a run that exceeded its timeout."""
    value = f"Execution exceeded the {timeout_s:g}s timeout and was interrupted; " + (
        "it did not stop, so the kernel must be restarted (interpreter state lost; files "
        "in the working directory are kept)."
        if lost
        else "interpreter state is kept."
    )
    return ErrorOutput(name="TimeoutError", value=value, traceback=traceback or [])


def image_output(data: dict[str, Any]) -> ImageOutput | None:
    """The first image of a MIME bundle (SVG text is base64-encoded), if any."""
    for mime in _IMAGE_TYPES:
        value = data.get(mime)
        if isinstance(value, str):
            if mime == "image/svg+xml":
                value = base64.b64encode(value.encode("utf-8")).decode("ascii")
            return ImageOutput(mime_type=mime, data=value)
    return None


def shell_outputs(commands: list[dict[str, Any]]) -> tuple[list[ShellCallOutput], list[Output]]:
    """The helper's per-command results as ``shell_output`` and as merged logs outputs."""
    shell: list[ShellCallOutput] = []
    outputs: list[Output] = []
    for c in commands:
        oc = c["outcome"]
        outcome = TimeoutOutcome() if oc["type"] == "timeout" else ExitOutcome(**oc)
        shell.append(
            ShellCallOutput(
                command=c["command"], stdout=c["stdout"], stderr=c["stderr"], outcome=outcome
            )
        )
        for stream in ("stdout", "stderr"):
            if not c[stream]:
                continue
            last = outputs[-1] if outputs else None
            if isinstance(last, LogsOutput) and last.stream == stream:
                last.text += c[stream]
            else:
                outputs.append(LogsOutput(stream=stream, text=c[stream]))
    return shell, outputs


@dataclass
class _Piece:
    key: _Key | None  # None: a non-text output
    text: str = ""
    output: Output | None = None
    marker: bool = False


class PythonOutputs:
    """Collects one Python execution's outputs (an ``output_hook`` for IOPub messages)."""

    def __init__(self, limit: int, full_path: str, sink: OutputSink | None) -> None:
        self.limit = limit
        self.head_limit = limit * 3 // 5
        self.tail_limit = limit - self.head_limit
        self.full_path = full_path
        self.sink = sink
        self.head: list[_Piece] = []
        self.head_len = 0
        self.tail: deque[_Piece] = deque()
        self.tail_len = 0
        self.middle: list[_Piece] = []
        self.total = 0
        self.spool: IO[bytes] | None = None
        self.streamed = 0
        self.stream_stopped = False
        #: Set when the deadline passed: the KeyboardInterrupt that follows is the timeout's.
        self.timeout_s: float | None = None
        self.has_error = False
        self.results: dict[int, dict[str, Any]] = {}
        self.result_len: dict[int, int] = {}

    @property
    def truncated(self) -> bool:
        """Whether text was dropped from the final outputs."""
        return self.total > self.limit

    # ----------------------------------------------------------------- messages
    def handle(self, msg: dict[str, Any]) -> None:
        """Take one IOPub message of the execution."""
        kind = msg["header"]["msg_type"]
        content = msg["content"]
        if kind == "stream":
            self._text(("logs", content.get("name", "stdout")), content.get("text", ""))
        elif kind == "execute_result":
            data = dict(content.get("data", {}))
            image = image_output(data)
            if image is not None:
                self._other(image)
                data = {k: v for k, v in data.items() if k not in _IMAGE_TYPES}
            text = data.pop("text/plain", None)
            if isinstance(text, str):
                n = len(self.results)
                self.results[n] = data
                self.result_len[n] = len(text)
                self._text(("result", n), text)
            elif data:
                self._other(ResultOutput(data=data))
        elif kind in ("display_data", "update_display_data"):
            data = content.get("data", {})
            if any(m in data for m in _PRIVATE):
                return
            self._other(image_output(data) or DisplayOutput(data=data))
        elif kind == "error":
            self._other(self.error_output(content))

    def error_output(self, content: dict[str, Any]) -> ErrorOutput:
        """An ``error`` message as an ANSI-free ErrorOutput (with clearer input/timeout text)."""
        self.has_error = True
        name = str(content.get("ename", "Error"))
        value = str(content.get("evalue", ""))
        tb = [strip_ansi(line) for line in content.get("traceback", [])]
        if name == "StdinNotImplementedError":
            value = _INPUT_MESSAGE
        if name == "KeyboardInterrupt" and self.timeout_s is not None:
            return timeout_error(self.timeout_s, lost=False, traceback=tb)
        return ErrorOutput(name=name, value=value, traceback=tb)

    def add(self, output: Output) -> None:
        """Add an output the engine made (kernel died, timeout), streamed like the others."""
        self._other(output)

    # ----------------------------------------------------------------- live deltas
    def _emit(self, output: Output) -> None:
        if self.sink is None:
            return
        try:
            self.sink(output, None)
        except Exception:  # a broken consumer must not break the execution
            log.exception("output sink failed; no more live output for this execution")
            self.sink = None

    def _make(self, key: _Key, text: str, *, whole: bool) -> Output:
        if key[0] == "logs":
            return LogsOutput(stream="stderr" if key[1] == "stderr" else "stdout", text=text)
        data = self.results[int(key[1])] if whole else {}
        return ResultOutput(data={"text/plain": text, **data})

    def _stream(self, key: _Key, text: str) -> None:
        if self.stream_stopped:
            return
        part = text[: self.limit - self.streamed]
        self.streamed += len(part)
        if part:
            self._emit(self._make(key, part, whole=len(part) == len(text)))
        if len(part) < len(text):
            self.stream_stopped = True
            stream = "stderr" if key == ("logs", "stderr") else "stdout"
            self._emit(LogsOutput(stream=stream, text=stream_marker(self.limit, self.full_path)))

    # ----------------------------------------------------------------- budget
    def _other(self, output: Output) -> None:
        self._emit(output)
        piece = _Piece(key=None, output=output)
        if self.tail:
            self.tail.append(piece)
        else:
            self.head.append(piece)

    def _text(self, key: _Key, text: str) -> None:
        if not text:
            return
        self._stream(key, text)
        n = len(text)
        if self.total + n > self.limit:  # over budget: everything goes to the spool
            if self.spool is None:  # first overflow: nothing was dropped yet
                self.spool = tempfile.TemporaryFile()  # noqa: SIM115 - closed in spool_chunks
                for p in (*self.head, *self.tail):
                    self._spool(p.text)
            self._spool(text)
        self.total += n
        pos = 0
        if not self.tail and self.head_len < self.head_limit:
            take = text[: self.head_limit - self.head_len]
            self.head.append(_Piece(key=key, text=take))
            self.head_len += len(take)
            pos = len(take)
        if pos >= n:
            return
        if self.total > self.limit:  # copy only what can survive in the tail
            pos = max(pos, n - self.tail_limit)
        self.tail.append(_Piece(key=key, text=text[pos:]))
        self.tail_len += n - pos
        if self.total <= self.limit:
            return
        while self.tail and self.tail_len - len(self.tail[0].text) >= self.tail_limit:
            first = self.tail.popleft()
            self.tail_len -= len(first.text)
            if first.key is None:
                self.middle.append(first)
        while self.tail and self.tail[0].key is None:
            self.middle.append(self.tail.popleft())
        if self.tail_len > self.tail_limit:
            first = self.tail[0]
            first.text = first.text[self.tail_len - self.tail_limit :]
            self.tail_len = self.tail_limit

    def _spool(self, text: str) -> None:
        assert self.spool is not None
        for i in range(0, len(text), _SPOOL_SLICE):  # bounded extra memory for huge messages
            self.spool.write(text[i : i + _SPOOL_SLICE].encode("utf-8", errors="replace"))

    def spool_chunks(self) -> Iterator[bytes]:
        """The full text output in chunks of at most 8 MiB (closes the spool)."""
        if self.spool is None:
            return
        with self.spool:
            self.spool.seek(0)
            while chunk := self.spool.read(_CHUNK):
                yield chunk

    def close(self) -> None:
        """Release the spool if it was not consumed."""
        if self.spool is not None:
            self.spool.close()

    # ----------------------------------------------------------------- final
    def finish(self, full_output_file: str | None) -> list[Output]:
        """The final outputs: consecutive text of one stream/result merged, marker inserted."""
        pieces: list[_Piece] = list(self.head)
        if self.truncated:
            last = next((p.key for p in reversed(self.head) if p.key is not None), None)
            dropped = self.total - self.head_len - self.tail_len
            text = truncation_marker(dropped, full_output_file)
            pieces.append(_Piece(key=last or ("logs", "stdout"), text=text, marker=True))
        pieces += self.middle
        pieces += self.tail
        kept: dict[int, int] = {}
        merged: list[_Piece] = []
        for p in pieces:
            if p.key is not None and p.key[0] == "result" and not p.marker:
                n = int(p.key[1])
                kept[n] = kept.get(n, 0) + len(p.text)
            if p.key is not None and merged and merged[-1].key == p.key:
                merged[-1] = _Piece(key=p.key, text=merged[-1].text + p.text)
            else:
                merged.append(p)
        outputs: list[Output] = []
        for p in merged:
            if p.key is None:
                assert p.output is not None
                outputs.append(p.output)
            else:
                whole = p.key[0] == "result" and kept.get(int(p.key[1])) == self.result_len.get(
                    int(p.key[1])
                )
                outputs.append(self._make(p.key, p.text, whole=whole))
        return outputs
