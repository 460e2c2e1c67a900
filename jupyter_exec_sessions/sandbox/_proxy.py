"""The filtering network proxy a container with an ``allowlist`` network policy talks to.

One :class:`FilteringProxy` per confined kernel listens on a unix socket in that kernel's
directory (bound into its sandbox). It speaks just enough HTTP proxy protocol: ``CONNECT
host:port`` for HTTPS (and any TLS), and plain HTTP requests in absolute form
(``GET http://host/path``) or origin form with a ``Host`` header. A host is allowed when it
equals one of ``allowed_domains`` or is a subdomain of one (a leading ``*.`` is accepted and
means the same); anything else gets ``403``. Names are resolved by the server (``resolve``
maps names to addresses first, e.g. for tests), never by the sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

__all__ = ["FilteringProxy", "domain_allowed", "normalise_domains"]

log = logging.getLogger("jupyter_exec_sessions.sandbox")

_HEAD_LIMIT = 64 * 1024
_HEAD_TIMEOUT_S = 30.0
_CONNECT_TIMEOUT_S = 10.0


def normalise_domains(domains: Iterable[str]) -> list[str]:
    """Lower-cased domains without ``*.`` prefixes or trailing dots."""
    out = []
    for d in domains:
        d = d.strip().lower().rstrip(".")
        if d.startswith("*."):
            d = d[2:]
        if d:
            out.append(d)
    return out


def domain_allowed(host: str, allowed: Iterable[str]) -> bool:
    """True when ``host`` is one of ``allowed`` or a subdomain of one."""
    h = host.strip().lower().rstrip(".")
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    return any(h == d or h.endswith("." + d) for d in allowed)


def _split_hostport(text: str, default_port: int) -> tuple[str, int]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit():
            host, port = text, ""
    return host, int(port) if port else default_port


class FilteringProxy:
    """A per-container HTTP(S) proxy on a unix socket that lets through allowed hosts only."""

    def __init__(
        self,
        socket_path: str,
        allowed_domains: Iterable[str],
        *,
        resolve: Mapping[str, str] | None = None,
    ) -> None:
        self.socket_path = socket_path
        self.allowed = normalise_domains(allowed_domains)
        self.resolve = {k.lower(): v for k, v in (resolve or {}).items()}
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen on the unix socket (replacing a stale one)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)
        self._server = await asyncio.start_unix_server(
            self._handle, path=self.socket_path, limit=_HEAD_LIMIT
        )
        os.chmod(self.socket_path, 0o666)

    async def close(self) -> None:
        """Stop listening, drop open tunnels and remove the socket."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.socket_path)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _HEAD_TIMEOUT_S)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            await self._refuse(writer, 400, "Bad Request", "malformed request line")
            return
        method, target, version = parts
        headers = [line for line in lines[1:] if line]
        if method.upper() == "CONNECT":
            host, port = _split_hostport(target, 443)
        else:
            if target.startswith("/"):
                host_hdr = next(
                    (h.split(":", 1)[1].strip() for h in headers if h.lower().startswith("host:")),
                    "",
                )
                host, port = _split_hostport(host_hdr, 80)
                path = target
            else:
                url = urlsplit(target)
                if url.scheme != "http" or not url.hostname:
                    await self._refuse(writer, 400, "Bad Request", "only http:// URLs or CONNECT")
                    return
                host, port = url.hostname, url.port or 80
                path = url.path or "/"
                if url.query:
                    path += "?" + url.query
        if not host or not domain_allowed(host, self.allowed):
            await self._refuse(
                writer,
                403,
                "Forbidden",
                f"{host or '(no host)'} is not in this container's network_policy allowed_domains",
            )
            return
        address = self.resolve.get(host.lower().rstrip("."), host)
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(address, port), _CONNECT_TIMEOUT_S
            )
        except (OSError, TimeoutError) as e:
            await self._refuse(writer, 502, "Bad Gateway", f"cannot reach {host}:{port}: {e}")
            return
        try:
            if method.upper() == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
            else:
                kept = [h for h in headers if not h.lower().startswith("proxy-")]
                out = "\r\n".join([f"{method} {path} {version}", *kept]) + "\r\n\r\n"
                up_writer.write(out.encode("latin-1"))
            await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        finally:
            up_writer.close()

    @staticmethod
    async def _refuse(writer: asyncio.StreamWriter, code: int, reason: str, text: str) -> None:
        body = (text + "\n").encode()
        writer.write(
            f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain\r\nContent-Length:"
            f" {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        with contextlib.suppress(OSError):
            await writer.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            if writer.can_write_eof():
                writer.write_eof()
