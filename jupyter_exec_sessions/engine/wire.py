"""Push-mode helpers of ``_engine_channel``: waking a waiter, decoding a received message."""

from __future__ import annotations

import asyncio
from hmac import compare_digest
from typing import Any

from jupyter_client.adapter import adapt
from jupyter_client.session import Session

__all__ = ["deserialize", "wake"]


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
    return adapt({
        "header": header, "msg_id": header["msg_id"], "msg_type": header["msg_type"],
        "parent_header": unpack(msg_list[2]), "metadata": unpack(msg_list[3]),
        "content": unpack(msg_list[4]), "buffers": [memoryview(b) for b in msg_list[5:]],
    })  # fmt: skip
