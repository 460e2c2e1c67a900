"""Request/response over one kernel's channels: the messaging core of the engine.

``execute_interactive``'s loop (send an ``execute_request``, hand each IOPub message of it to an
output hook until ``idle``, then take the reply), written over ``channel.get_msg`` rather than raw
zmq sockets so that jupyter_server's gateway client (no sockets) works too, and extended with what
a server needs: a deadline that interrupts then gives up after a grace period, ``is_alive``
polling to notice a dead kernel, cancellation that interrupts, and a JSON payload in the request
content for the helper module. Every message is routed by its parent ``msg_id``; messages of
other requests (or other clients) are ignored.

With zmq sockets (local kernels) one reader task per channel receives every message and routes
it (push), and a request just waits to be woken. A client that offers ``set_router`` (the
websocket client for remote kernels) pushes its messages the same way; any other client is
pulled with ``get_msg``.

Kernel death: a local kernel is polled with ``is_alive``; a remote one is restarted by its
gateway, which says so with an IOPub ``status`` of ``restarting`` (or ``dead``) that no request
is the parent of. Either way the request in flight ends as ``died`` and the session is lost, so
the next use gets a fresh kernel and reports the state reset.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from hmac import compare_digest
from queue import Empty
from typing import Any

import zmq
import zmq.asyncio
from jupyter_client.adapter import adapt
from jupyter_client.session import Session
from jupyter_core.utils import ensure_async

from .. import errors
from .kernel import helper as _kernel_code
from .kernel import shell as _kernel_shell
from .kernel.helper import MODULE_NAME, PAYLOAD_KEY, RESULT_MIME, SHELL_MODULE_NAME

__all__ = ["KernelChannel", "Outcome", "Req", "preload_source"]

log = logging.getLogger(__name__)

#: The helper modules' sources, installed by the setup (shell first: the main one uses it).
_MODULES = [
    [SHELL_MODULE_NAME, inspect.getsource(_kernel_shell)],
    [MODULE_NAME, inspect.getsource(_kernel_code)],
]
_HASH = hashlib.sha256(json.dumps(_MODULES).encode()).hexdigest()[:16]
_GET_PAYLOAD = (
    f'__import__("IPython").get_ipython().kernel.get_parent()["content"][{PAYLOAD_KEY!r}]'
)
#: One-line silent executes; they leave no name in the user namespace.
SETUP_CODE = f'(lambda A: __import__("builtins").exec(A["boot"], {{"A": A}}))({_GET_PAYLOAD})'
_CALL_CODE = f'__import__("sys").modules[{MODULE_NAME!r}].call()'
#: an interrupted cell still running after this long gets the interrupt again (at most
#: ``MAX_REINTERRUPTS`` times: code that catches KeyboardInterrupt is not flooded)
REINTERRUPT_S = 0.5
MAX_REINTERRUPTS = 3


def preload_source() -> str:
    """Python that installs the helper modules as the setup does, without setting anything up.

    Run once by a process that kernels are forked from (``forkserver``): a forked kernel's
    setup then finds the modules with the current ``SOURCE_HASH`` and compiles nothing. The
    modules define functions and constants only; their state is filled in by each kernel's
    own setup.
    """
    return (
        "import sys, types\n"
        f"for _name, _src in {_MODULES!r}:\n"
        "    _m = types.ModuleType(_name)\n"
        '    exec(compile(_src, "<" + _name + ">", "exec"), _m.__dict__)\n'
        f"    _m.SOURCE_HASH = {_HASH!r}\n"
        "    sys.modules[_name] = _m\n"
    )


# --------------------------------------------------------------------------- push-mode helpers
def wake(fut: asyncio.Future[None]) -> None:
    """Resolve ``fut`` unless it is already done."""
    if not fut.done():
        fut.set_result(None)


def deserialize(session: Session, parts: list[bytes]) -> dict[str, Any]:
    """``session.deserialize`` (same checks) without parsing header dates: nothing reads them."""
    msg_list: list[bytes] = session.feed_identities(parts)[1]  # type: ignore[assignment]
    if session.auth is not None:
        sig = msg_list[0]
        if not sig or sig in session.digest_history:
            raise ValueError(f"Unsigned or duplicate signature: {sig!r}")
        session._add_digest(sig)
        if not compare_digest(sig, session.sign(msg_list[1:5])):
            raise ValueError(f"Invalid Signature: {sig!r}")
    if len(msg_list) < 5:
        raise TypeError("malformed message, must have at least 5 elements")
    unpack = session.unpack
    header = unpack(msg_list[1])
    return adapt(
        {
            "header": header,
            "msg_id": header["msg_id"],
            "msg_type": header["msg_type"],
            "parent_header": unpack(msg_list[2]),
            "metadata": unpack(msg_list[3]),
            "content": unpack(msg_list[4]),
            "buffers": [memoryview(b) for b in msg_list[5:]],
        }
    )


@dataclass
class Req:
    """One execute request in flight and what came back for it."""

    msg_id: str
    on_iopub: Callable[[dict[str, Any]], None] | None
    idle: bool = False
    reply: dict[str, Any] | None = None
    result: Any = None
    background: bool = False
    waiter: asyncio.Future[None] | None = None  # set while the request waits for a push
    #: the kernel has begun this request (its ``busy`` status came): a signal now reaches it
    busy: bool = False
    on_busy: asyncio.Future[None] | None = None  # set while an interrupt waits for ``busy``
    #: when the last interrupt was sent for this request, and how many were sent again
    interrupted_at: float | None = None
    reinterrupts: int = 0


@dataclass
class Outcome:
    """How an execute request ended."""

    req: Req
    timed_out: bool = False
    died: bool = False
    lost: bool = False  # died, or did not stop within the grace period


class KernelChannel:
    """Sends execute requests to one kernel and collects what comes back.

    No concurrency control here: callers send one request at a time (they hold a lock).
    """

    def __init__(
        self,
        kernel: Any,
        workdir: str,
        *,
        interrupt_grace_s: float,
        alive_poll_s: float,
        shell_dir: str | None = None,
    ) -> None:
        self.kernel = kernel
        self.workdir = workdir
        #: where the kernel keeps its shell's state (None: a temp dir of the kernel's own)
        self.shell_dir = shell_dir
        self.interrupt_grace_s = interrupt_grace_s
        self.alive_poll_s = alive_poll_s
        self._client: Any = None
        self._reqs: dict[str, Req] = {}
        self._setup_error: str | None = None
        self._lost = False
        self._closed = False
        self._running = False
        self._interrupted = False
        self._user_req: Req | None = None  # the user's request in flight, if any
        self._inline = False  # a proxy dropped the payload field: pass arguments in the code
        self._readers: list[asyncio.Task[None]] = []  # push mode: one reader per channel
        self._push_error: Exception | None = None
        self._push_dead: Exception | None = None
        self._shell_sync: zmq.Socket[bytes] | None = None  # push mode: a sync shadow of shell
        self._routed = False  # the client pushes its messages to us (set_router)
        self._died = False  # the kernel died (or its gateway restarted it) under this session

    def _usable(self) -> None:
        if self._closed or self._client is None:
            raise errors.KernelError("The kernel session is closed or was never started.")
        if self._lost:
            raise errors.KernelError("The kernel was lost; a new kernel session is needed.")

    def _check_setup(self) -> None:
        if self._setup_error is not None:
            message, self._setup_error = self._setup_error, None
            raise errors.KernelError(f"kernel setup failed: {message}")

    async def _wait_ready(self, timeout: float) -> None:
        """kernel_info answered on shell, and any IOPub message seen (our subscription works).

        Like ``wait_for_ready`` without its fixed 0.2 s IOPub flush: stale IOPub messages are
        harmless because every request only looks at messages whose parent is its own.
        """
        c = self._client
        deadline = time.monotonic() + timeout
        channel, resend = "shell", time.monotonic()
        while True:
            now = time.monotonic()
            if now > deadline:
                raise errors.KernelError(f"The kernel did not answer within {timeout:g}s.")
            if now >= resend:
                c.kernel_info()
                resend = now + (1.0 if channel == "shell" else 0.2)
            try:
                msg = await getattr(c, f"{channel}_channel").get_msg(
                    timeout=max(0.0, min(deadline, resend) - now)
                )
            except Empty:
                if not await self._is_alive():
                    raise errors.KernelError("The kernel died while starting.") from None
                continue
            if channel == "iopub":
                return
            if msg["header"]["msg_type"] == "kernel_info_reply":
                channel, resend = "iopub", time.monotonic() + 0.2

    def _send(
        self,
        code: str,
        *,
        silent: bool,
        payload: Any = None,
        on_iopub: Callable[[dict[str, Any]], None] | None = None,
        user: bool = False,
    ) -> Req:
        self._usable()
        content: dict[str, Any] = {
            "code": code,
            "silent": silent,
            "store_history": user,
            "user_expressions": {},
            "allow_stdin": False,
            "stop_on_error": False,
        }
        if payload is not None:
            content[PAYLOAD_KEY] = payload
        msg = self._client.session.msg("execute_request", content)
        if self._shell_sync is not None:  # what shell_channel.send does, minus a new shadow
            self._client.session.send(self._shell_sync, msg)
            # the send may have consumed the socket's edge-triggered wake-up: have the async
            # socket re-check for messages to receive (what its own send does)
            self._client.shell_channel.socket.get(zmq.EVENTS)
        else:
            self._client.shell_channel.send(msg)
        req = Req(msg_id=msg["header"]["msg_id"], on_iopub=on_iopub)
        self._reqs[req.msg_id] = req
        return req

    async def _run_user(self, code: str, **kw: Any) -> Outcome:
        self._running, self._interrupted = True, False
        try:
            return await self._run_code(code, **kw)
        finally:
            self._running = False

    async def _run_code(
        self,
        code: str,
        *,
        silent: bool,
        timeout_s: float,
        payload: Any = None,
        on_iopub: Callable[[dict[str, Any]], None] | None = None,
        user: bool = False,
        on_timeout: Callable[[], None] | None = None,
    ) -> Outcome:
        """Send one execute; collect until idle + reply, the deadline, or kernel death.

        At the deadline: ``on_timeout()``, interrupt, and wait ``interrupt_grace_s`` more;
        then give up with the kernel lost.
        """
        req = self._send(code, silent=silent, payload=payload, on_iopub=on_iopub, user=user)
        if user:
            self._user_req = req
        out = Outcome(req)
        deadline = time.monotonic() + timeout_s
        next_alive = time.monotonic() + self.alive_poll_s
        try:
            while not (req.idle and req.reply is not None):
                now = time.monotonic()
                if now >= deadline:
                    if out.timed_out:
                        out.lost = self._lost = True
                        return out
                    out.timed_out = True
                    deadline = now + self.interrupt_grace_s
                    if on_timeout is not None:
                        on_timeout()
                    await self._interrupt_kernel()
                    req.interrupted_at = time.monotonic()
                    continue
                if (
                    req.interrupted_at is not None
                    and now - req.interrupted_at >= REINTERRUPT_S
                    and req.reinterrupts < MAX_REINTERRUPTS
                ):
                    # ipykernel publishes ``busy`` a moment before it lets SIGINT interrupt
                    # the cell: a signal that landed in between was ignored. Send it again.
                    req.reinterrupts += 1
                    req.interrupted_at = now
                    await self._interrupt_kernel()
                    continue
                if self._died or now >= next_alive:
                    if self._died or not await self._is_alive():
                        out.died = out.lost = self._lost = True
                        return out
                    next_alive = now + self.alive_poll_s
                wait = max(0.0, min(deadline, next_alive) - now)
                if self._readers or self._routed:
                    await self._wait_push(req, wait)
                else:
                    await self._pump("shell" if req.idle else "iopub", wait)
            return out
        except asyncio.CancelledError:
            if user:
                await self._until_started(self.interrupt_grace_s)
            await self._interrupt_kernel()
            raise
        finally:
            self._reqs.pop(req.msg_id, None)
            if self._user_req is req:
                self._user_req = None

    async def _until_started(self, timeout: float) -> None:
        """Wait (at most ``timeout`` s) until the kernel has begun the user's request.

        An interrupt sent earlier is lost: ipykernel ignores SIGINT between requests, and a
        setup queued ahead of the request would take it instead.
        """
        req = self._user_req
        if req is None or req.busy:
            return
        fut = req.on_busy = asyncio.get_running_loop().create_future()
        try:
            await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            req.on_busy = None

    async def _pump(self, channel: str, timeout: float) -> None:
        """Receive at most one message of ``channel`` and route it to its request."""
        try:
            msg = await getattr(self._client, f"{channel}_channel").get_msg(timeout=timeout)
        except Empty:
            return
        except Exception as e:  # a closed socket, a dropped gateway websocket...
            raise errors.KernelError(f"Lost the connection to the kernel: {e!r}") from e
        self._route(channel, msg)

    # ------------------------------------------------------------------ push mode
    def start_push(self) -> None:
        """Start one reader task per channel when both are zmq.asyncio sockets (else pull).

        A client with ``set_router`` pushes its messages itself.
        """
        if hasattr(self._client, "set_router"):
            self._client.set_router(self._route_pushed, self._connection_closed)
            self._routed = True
            return
        shell = getattr(self._client.shell_channel, "socket", None)
        iopub = getattr(self._client.iopub_channel, "socket", None)
        if self._readers or not isinstance(shell, zmq.asyncio.Socket):
            return
        if isinstance(iopub, zmq.asyncio.Socket):
            self._shell_sync = zmq.Socket.shadow(shell.underlying)
            read = self._read
            self._readers = [
                asyncio.ensure_future(read("shell", shell)),
                asyncio.ensure_future(read("iopub", iopub)),
            ]

    async def stop_push(self) -> None:
        """Cancel the reader tasks (before the sockets are closed)."""
        if self._routed and self._client is not None:
            self._client.set_router(None)
            self._routed = False
        readers, self._readers = self._readers, []
        self._shell_sync = None
        for t in readers:
            t.cancel()
        if readers:
            await asyncio.gather(*readers, return_exceptions=True)

    async def _read(self, channel: str, sock: zmq.asyncio.Socket) -> None:
        session = self._client.session
        while True:
            try:
                parts = await sock.recv_multipart()
                msg = deserialize(session, parts)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # a closed socket, a message that does not deserialize...
                err = errors.KernelError(f"Lost the connection to the kernel: {e!r}")
                err.__cause__ = e
                self._fail(err)
                if sock.closed:  # no reader any more: every later request fails at once
                    self._push_dead = err
                    return
                continue
            try:
                self._route(channel, msg)
            except Exception as e:  # an output hook failed: the waiting request raises it
                self._fail(e)

    def _route_pushed(self, channel: str, msg: dict[str, Any]) -> None:
        try:
            self._route(channel, msg)
        except Exception as e:  # an output hook failed: the waiting request raises it
            self._fail(e)

    def _connection_closed(self, error: Exception) -> None:
        """The client's connection ended: the kernel is gone for this session."""
        if not self._closed:
            log.warning("kernel connection ended: %s", error)
            self._kernel_died()

    def kernel_replaced(self) -> None:
        """The kernel's process was replaced behind this session (its manager restarted it).

        A request sent to the old process never gets a reply: every waiting request ends as
        died now, and the session is unusable (interpreter state is gone).
        """
        if not self._closed:
            self._kernel_died()

    def _kernel_died(self) -> None:
        self._died = self._lost = True
        for req in self._reqs.values():
            if req.waiter is not None:
                wake(req.waiter)

    def _fail(self, e: Exception) -> None:
        self._push_error = e
        for req in self._reqs.values():
            if req.waiter is not None:
                wake(req.waiter)

    async def _wait_push(self, req: Req, timeout: float) -> None:
        """Wait until the readers complete ``req`` (idle + reply), fail, or ``timeout``."""
        if self._push_dead is not None:
            raise self._push_dead
        if self._push_error is None:
            loop = asyncio.get_running_loop()
            fut = req.waiter = loop.create_future()
            timer = loop.call_later(timeout, wake, fut)
            try:
                await fut
            finally:
                timer.cancel()
                req.waiter = None
        if self._push_error is not None:
            e, self._push_error = self._push_error, None
            raise e

    def _route(self, channel: str, msg: dict[str, Any]) -> None:
        """Hand one message of ``channel`` to the request it answers, if any."""
        kind = msg["header"]["msg_type"]
        content = msg["content"]
        if kind == "status" and content.get("execution_state") in ("restarting", "dead"):
            self._kernel_died()  # a gateway restarted the kernel or gave up on it
            return
        req = self._reqs.get(msg.get("parent_header", {}).get("msg_id", ""))
        if req is None:
            return
        if channel == "shell":
            req.reply = msg
            if req.background:  # a setup sent without waiting: only its failure matters
                self._reqs.pop(req.msg_id, None)
                if content.get("status") != "ok":
                    self._setup_error = f"{content.get('ename')}: {content.get('evalue')}"
        elif kind == "status":
            req.idle = req.idle or content.get("execution_state") == "idle"
            req.busy = True  # busy, or idle (the kernel is past it)
            if req.on_busy is not None:
                wake(req.on_busy)
        elif kind == "display_data" and RESULT_MIME in content.get("data", {}):
            req.result = content["data"][RESULT_MIME]
        elif req.on_iopub is not None:
            req.on_iopub(msg)
        if req.waiter is not None and req.idle and req.reply is not None:
            wake(req.waiter)

    async def _is_alive(self) -> bool:
        try:
            return bool(await ensure_async(self.kernel.is_alive()))
        except Exception:
            log.debug("is_alive failed", exc_info=True)
            return False

    async def _interrupt_kernel(self) -> None:
        try:
            await asyncio.wait_for(ensure_async(self.kernel.interrupt_kernel()), 10)
        except Exception:
            log.warning("could not interrupt the kernel", exc_info=True)

    # ------------------------------------------------------------------ helper calls
    def setup_payload(self, publish: bool, drop: str | None = None) -> dict[str, Any]:
        """Arguments of the setup: bootstrap, helper sources, workdir (and a dir to drop)."""
        return {
            "boot": _kernel_code.BOOTSTRAP,
            "modules": _MODULES,
            "hash": _HASH,
            "workdir": self.workdir,
            "shell_dir": self.shell_dir,
            "publish": publish,
            "drop": drop,
        }

    async def setup(self, timeout_s: float) -> None:
        """Install the helper and enter the workdir; falls back to inline arguments."""
        if not self._inline:
            o = await self._run_code(
                SETUP_CODE, silent=True, payload=self.setup_payload(True), timeout_s=timeout_s
            )
            if o.req.result is not None:
                return
            if o.lost or o.timed_out:
                raise errors.KernelError(f"kernel setup failed: {self.describe(o, None)}")
            self._inline = True  # e.g. the payload did not arrive: try with it in the code
        payload = json.dumps(self.setup_payload(True))
        boot = _kernel_code.BOOTSTRAP
        code = (
            f'__import__("builtins").exec({boot!r}, {{"A": __import__("json").loads({payload!r})}})'
        )
        o = await self._run_code(code, silent=True, timeout_s=timeout_s)
        if o.req.result is None:
            raise errors.KernelError(f"kernel setup failed: {self.describe(o, None)}")

    async def call(
        self, args: dict[str, Any], timeout_s: float, on_iopub: Callable[..., None] | None
    ) -> tuple[Outcome, Any]:
        """Run one helper operation; re-installs the helper if it vanished from the kernel."""
        for attempt in range(3):
            if self._inline:
                code = f'__import__("sys").modules[{MODULE_NAME!r}].call({json.dumps(args)!r})'
                o = await self._run_code(code, silent=True, on_iopub=on_iopub, timeout_s=timeout_s)
            else:
                o = await self._run_code(
                    _CALL_CODE, silent=True, payload=args, on_iopub=on_iopub, timeout_s=timeout_s
                )
            self._check_setup()
            r = o.req.result
            if o.lost or o.timed_out or attempt == 2:
                return o, r
            if isinstance(r, dict) and r.get("error") == "no_payload":
                self._inline = True
                continue
            c = (o.req.reply or {}).get("content", {})
            if r is None and c.get("ename") == "KeyError" and MODULE_NAME in str(c.get("evalue")):
                await self.setup(timeout_s)  # e.g. the user deleted it from sys.modules
                continue
            return o, r
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def describe(o: Outcome, result: Any) -> str:
        """A short description of why a helper call produced no usable result."""
        if o.died:
            return "the kernel died"
        if o.timed_out:
            return "timed out"
        if isinstance(result, dict) and result.get("message"):
            return str(result["message"])
        c = (o.req.reply or {}).get("content", {})
        return f"{c.get('ename', 'no result')}: {c.get('evalue', '')}".strip()
