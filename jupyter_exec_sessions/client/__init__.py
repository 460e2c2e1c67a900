"""Typed HTTP client for the containers, executions and events API, over httpx2.

``Client`` (sync) and ``AsyncClient`` (async) cover every route of the API and speak the wire
models of :mod:`jupyter_exec_sessions.models`; both are built on one private core
(``client._core``: URLs, requests, error decoding, the SSE reader). Error bodies
``{"error": {...}}`` become the exceptions of :mod:`jupyter_exec_sessions.errors` (one
mapping: :func:`error_from_response`); an unreachable server is a ``ServiceUnavailableError``.
``AsyncClient`` satisfies ``ContainerBackend``, so the MCP tools run unchanged against a
remote server::

    async with AsyncClient("http://127.0.0.1:8888/", token="…") as client:
        container = await client.create_container(name="scratch")
        result = await client.execute(container.id, PythonExecutionRequest(code="1 + 1"))

``url`` is the Jupyter server's base URL; the API lives at ``{url}exec-sessions/v1``.
Executions have no client-side read timeout: the server bounds them (``timeout_ms``).
"""

from __future__ import annotations

from ._async import AsyncClient
from ._core import API_PATH, api_base_url, error_from_response
from ._sync import Client

__all__ = ["API_PATH", "AsyncClient", "Client", "api_base_url", "error_from_response"]
