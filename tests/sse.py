"""Test helper: read the events feed (server-sent events) with a bounded wait."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx2 as httpx


def read_events(
    api_base: str,
    headers: dict[str, str],
    *,
    until: Callable[[list[dict[str, Any]]], bool],
    last_event_id: int | None = None,
    timeout: float = 20.0,
) -> list[dict[str, Any]]:
    """Collect events from ``GET {api_base}/events`` until ``until(events)`` holds.

    Raises ``AssertionError`` with what was seen if the deadline passes first.
    """
    events: list[dict[str, Any]] = []
    hdrs = dict(headers)
    if last_event_id is not None:
        hdrs["Last-Event-ID"] = str(last_event_id)
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=httpx.Timeout(timeout, read=1.0)) as client:
        while time.monotonic() < deadline:
            try:
                with client.stream("GET", f"{api_base}/events", headers=hdrs) as r:
                    assert r.status_code == 200, r.read()
                    assert r.headers["content-type"].startswith("text/event-stream")
                    data: list[str] = []
                    for line in r.iter_lines():
                        if line.startswith("data:"):
                            data.append(line[5:].strip())
                        elif line == "" and data:
                            events.append(json.loads("\n".join(data)))
                            hdrs["Last-Event-ID"] = str(events[-1]["seq"])
                            data = []
                            if until(events):
                                return events
                        if time.monotonic() > deadline:
                            break
            except httpx.ReadTimeout:
                if until(events):
                    return events
                continue
    raise AssertionError(f"condition not met within {timeout}s; events seen: {events}")
