"""The OpenAPI 3.1 document: served live, covering every route, and fuzzed with schemathesis.

The schemathesis run generates a bounded number of requests per operation from the live
server's own document (authenticated), and checks that no answer is a 500, that every answer
matches the document, and that every error body has the OpenAI shape.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any, cast

import httpx2 as httpx
import pytest
import schemathesis
from helpers import RunningServer, launch
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import CheckContext, GenerationMode, Response
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.failures import FailureGroup
from tornado import web

from jupyter_exec_sessions.extension.handlers import ROUTES
from jupyter_exec_sessions.extension.openapi import build_openapi

VERBS = ("get", "post", "put", "patch", "delete")
#: Examples generated per operation (keeps the whole run to a couple of minutes).
EXAMPLES = 12


def implemented_verbs(handler: type[web.RequestHandler]) -> set[str]:
    """The HTTP verbs a handler class defines itself (not tornado's 405 defaults)."""
    return {v for v in VERBS if getattr(handler, v) is not getattr(web.RequestHandler, v)}


def test_the_document_has_exactly_the_registered_routes_and_verbs() -> None:
    doc = build_openapi()
    registered = {template: implemented_verbs(handler) for template, handler in ROUTES}
    documented = {path: set(item) for path, item in doc["paths"].items()}
    assert documented == registered


def test_executions_document_both_the_json_and_the_event_stream_answer() -> None:
    doc = build_openapi()
    ok = doc["paths"]["/containers/{container_id}/executions"]["post"]["responses"]["200"]
    assert set(ok["content"]) == {"application/json", "text/event-stream"}
    events = doc["paths"]["/events"]["get"]["responses"]["200"]["content"]
    assert "text/event-stream" in events
    assert doc["openapi"] == "3.1.0"
    for item in doc["paths"].values():
        for operation in item.values():
            for status, answer in operation["responses"].items():
                if status != "200":
                    schema = answer["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorBody"}


def test_the_live_document_is_served_with_this_servers_base_and_needs_credentials(
    server: RunningServer,
) -> None:
    r = httpx.get(f"{server.api_base}/openapi.json", headers=server.headers, timeout=30)
    assert r.status_code == 200
    doc = r.json()
    assert doc["servers"] == [{"url": "/exec-sessions/v1"}]
    assert doc["paths"] == json.loads(json.dumps(build_openapi()["paths"]))
    denied = httpx.get(f"{server.api_base}/openapi.json", timeout=30)
    assert denied.status_code == 401


# ------------------------------------------------------------------ schemathesis
@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server whose quotas make random creates cheap (a few kernels, then 429s)."""
    srv = launch(
        tmp_path_factory.mktemp("fuzz"),
        pool_size=1,
        max_containers_per_user=2,
        max_containers=4,
        max_upload_bytes=64 * 1024,
        default_timeout_ms=5000,
        max_timeout_ms=5000,
    )
    yield srv
    srv.stop()


@schemathesis.check
def openai_error_shape(ctx: CheckContext, response: Response, case: Any) -> bool | None:
    """Every error answer is ``{"error": {"message", "type", "param", "code"}}``."""
    if response.status_code < 400:
        return None
    body = json.loads(response.content)
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict), f"not an OpenAI error body: {body!r}"
    missing = {"message", "type", "param", "code"} - set(error)
    assert not missing, f"error body lacks {sorted(missing)}: {body!r}"
    assert isinstance(error["message"], str) and error["message"]
    return True


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    openai_error_shape,
]


@pytest.mark.timeout(900)
def test_fuzzing_the_api_never_answers_500_and_errors_have_the_openai_shape(
    fuzzed: RunningServer,
) -> None:
    api = schemathesis.openapi.from_url(f"{fuzzed.api_base}/openapi.json", headers=fuzzed.headers)
    failures: list[str] = []
    calls: Counter[int] = Counter()
    operations: set[str] = set()
    # A second pass pins the ids to a real container and file, so that bodies reach the
    # service instead of a 404 (executions excluded: random shell commands are not run here;
    # deletes excluded: they would end the pass).
    http = fuzzed.http()
    cid = http.post("containers", json={"name": "fuzz"}).json()["id"]
    fid = http.post(f"containers/{cid}/files", files={"file": ("a.txt", b"a")}).json()["id"]
    real = {"container_id": cid, "file_id": fid}
    passes: list[tuple[Any, dict[str, Any] | None]] = []
    for result in api.get_all_operations():
        operation = cast(Any, result).ok()
        if operation.path == "/events":
            continue  # an endless stream; its document is checked above
        operations.add(f"{operation.method.lower()} {operation.path}")
        passes.append((operation, None))
        pinnable = "{container_id}" in operation.path and operation.method.lower() != "delete"
        if pinnable and not operation.path.endswith("/executions"):
            ids = {k: v for k, v in real.items() if "{" + k + "}" in operation.path}
            passes.append((operation, ids))
    for operation, pinned in passes:
        for mode in GenerationMode:

            @given(case=operation.as_strategy(generation_mode=mode, path_parameters=pinned))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],  # no shrinking: bounded time
                suppress_health_check=list(HealthCheck),
            )
            def run(case: Any) -> None:
                # always authenticated: the fuzzing is about what an authenticated client sends
                case.headers = {**(case.headers or {}), **fuzzed.headers}
                response = case.call(base_url=fuzzed.api_base, timeout=60)
                calls[response.status_code] += 1
                case.validate_response(response, checks=CHECKS)

            try:
                run()
            except (Exception, FailureGroup) as e:
                failures.append(f"{operation.method.upper()} {operation.path} ({mode.value}): {e}")
    print(f"{len(operations)} operations, responses by status: {dict(sorted(calls.items()))}")
    assert calls[500] == 0
    assert not failures, "\n\n".join(failures)
    documented = build_openapi()["paths"]
    skipped = {"/events", "/openapi.json"}  # an endless stream; the document the run loaded
    assert operations == {
        f"{verb} {path}"
        for path, item in documented.items()
        if path not in skipped
        for verb in item
    }
