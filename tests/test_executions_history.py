"""The executions history: ``GET …/containers/{id}/executions`` and ``…/executions/{exec_id}``.

What the JupyterLab panel's timeline reads: a cursor page (newest first by default) of a
container's recent executions, bounded per container by ``execution_history_size``, stored
in the registry so it survives a restart, owned like the container itself.
"""

from __future__ import annotations

import time
from typing import Any

import httpx2 as httpx
import pytest
from helpers import RunningServer, launch, read_events

IDP = ["--ServerApp.identity_provider_class=idp.MultiUserIdentityProvider"]


def run(http: httpx.Client, cid: str, body: dict[str, Any]) -> dict[str, Any]:
    r = http.post(f"containers/{cid}/executions", json=body)
    assert r.status_code == 200, r.text
    result: dict[str, Any] = r.json()
    return result


def create(http: httpx.Client, name: str, **extra: Any) -> str:
    r = http.post("containers", json={"name": name, **extra})
    assert r.status_code in (200, 201), r.text
    return str(r.json()["id"])


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A server keeping 4 executions per container, outputs on the newest 2."""
    srv = launch(
        tmp_path_factory.mktemp("hist"),
        pool_size=1,
        execution_history_size=4,
        execution_history_outputs=2,
    )
    yield srv
    srv.stop()


def test_the_history_lists_executions_newest_first_with_what_the_timeline_shows(
    small: RunningServer,
) -> None:
    with small.http() as http:
        cid = create(http, "timeline")
        meta = {"session_id": "conv-1", "turn_id": "turn-1"}
        first = run(http, cid, {"code": "x = 41\nx + 1", "metadata": meta})
        second = run(http, cid, {"code": "1/0", "metadata": {"session_id": "conv-1"}})
        third = run(http, cid, {"type": "shell", "commands": ["echo hi", "false"]})
        page = http.get(f"containers/{cid}/executions").json()
    assert page["object"] == "list" and page["has_more"] is False
    assert [e["id"] for e in page["data"]] == [third["id"], second["id"], first["id"]]
    assert page["first_id"] == third["id"] and page["last_id"] == first["id"]
    shell, failed, ok = page["data"]
    assert ok["object"] == "container.execution" and ok["container_id"] == cid
    assert ok["type"] == "python" and ok["status"] == "completed"
    assert ok["code"] == "x = 41\nx + 1" and ok["commands"] is None
    assert (ok["session_id"], ok["turn_id"]) == ("conv-1", "turn-1")
    assert ok["created_at"] <= ok["started_at"] <= ok["completed_at"]
    assert ok["duration_ms"] == first["duration_ms"] > 0
    assert ok["state_reset"] is False and ok["truncated"] is False
    assert ok["outputs"] is None  # only the newest 2 carry outputs in a listing
    assert failed["status"] == "failed" and failed["turn_id"] is None
    assert failed["outputs"][0]["type"] == "error"
    assert failed["outputs"][0]["name"] == "ZeroDivisionError"
    assert shell["type"] == "shell" and shell["commands"] == ["echo hi", "false"]
    assert shell["code"] is None
    exits = [o["outcome"]["exit_code"] for o in shell["shell_output"]]
    assert exits == [0, 1]


def test_one_execution_is_retrieved_whole_with_its_outputs(small: RunningServer) -> None:
    with small.http() as http:
        cid = create(http, "whole")
        long_code = "y = 1\n" + "# padding\n" * 400 + "print('done')"
        done = run(http, cid, {"code": long_code})
        for _ in range(3):
            run(http, cid, {"code": "pass"})
        listed = http.get(f"containers/{cid}/executions?order=asc").json()["data"][0]
        whole = http.get(f"containers/{cid}/executions/{done['id']}").json()
    assert listed["id"] == done["id"]
    assert listed["preview_truncated"] is True and len(listed["code"]) < len(long_code)
    assert listed["outputs"] is None
    assert whole["code"] == long_code and whole["preview_truncated"] is False
    assert whole["outputs"] == [{"type": "logs", "stream": "stdout", "text": "done\n"}]
    assert whole["status"] == "completed"


def test_pages_follow_cursors_in_both_orders(small: RunningServer) -> None:
    with small.http() as http:
        cid = create(http, "pages")
        ids = [run(http, cid, {"code": str(i)})["id"] for i in range(4)]
        p1 = http.get(f"containers/{cid}/executions?limit=3").json()
        p2 = http.get(f"containers/{cid}/executions?limit=3&after={p1['last_id']}").json()
        asc = http.get(f"containers/{cid}/executions?order=asc&limit=2").json()
        asc2 = http.get(f"containers/{cid}/executions?order=asc&after={asc['last_id']}").json()
        for bad in ("0", "101", "x"):
            r = http.get(f"containers/{cid}/executions?limit={bad}")
            assert r.status_code == 400 and r.json()["error"]["param"] == "limit"
        r = http.get(f"containers/{cid}/executions?order=sideways")
        assert r.status_code == 400 and r.json()["error"]["param"] == "order"
    assert [e["id"] for e in p1["data"]] == ids[::-1][:3] and p1["has_more"] is True
    assert [e["id"] for e in p2["data"]] == ids[:1] and p2["has_more"] is False
    assert [e["id"] for e in asc["data"] + asc2["data"]] == ids


def test_the_history_is_bounded_per_container(small: RunningServer) -> None:
    with small.http() as http:
        cid = create(http, "bounded")
        other = create(http, "neighbour")
        kept_elsewhere = run(http, other, {"code": "'other'"})["id"]
        ids = [run(http, cid, {"code": f"{i}"})["id"] for i in range(6)]
        data = http.get(f"containers/{cid}/executions?limit=100").json()["data"]
        assert [e["id"] for e in data] == ids[::-1][:4]  # execution_history_size=4
        r = http.get(f"containers/{cid}/executions/{ids[0]}")
        assert r.status_code == 404
        assert r.json()["error"]["code"] == "execution_not_found"
        neighbour = http.get(f"containers/{other}/executions").json()["data"]
        assert [e["id"] for e in neighbour] == [kept_elsewhere]


def test_unknown_containers_and_executions_are_404s_in_openai_shape(
    small: RunningServer,
) -> None:
    with small.http() as http:
        cid = create(http, "unknowns")
        mine = run(http, cid, {"code": "1"})["id"]
        other = create(http, "someone-else")
        for path in (
            "containers/cntr_nope/executions",
            f"containers/cntr_nope/executions/{mine}",
            f"containers/{cid}/executions/exec_nope",
            f"containers/{other}/executions/{mine}",  # exists, but in another container
        ):
            r = http.get(path)
            assert r.status_code == 404, path
            assert set(r.json()["error"]) == {"message", "type", "param", "code"}
        assert http.get(f"containers/{other}/executions").json()["data"] == []


def test_another_users_history_is_a_404(start_server) -> None:  # type: ignore[no-untyped-def]
    srv = start_server(pool_size=1, extra_args=IDP)
    alice = {"Authorization": "Bearer alice-secret"}
    bob = {"Authorization": "Bearer bob-secret"}
    with httpx.Client(base_url=srv.api_base + "/", headers=alice, timeout=60) as http:
        cid = create(http, "alice-box")
        eid = run(http, cid, {"code": "secret = 1"})["id"]
        assert len(http.get(f"containers/{cid}/executions").json()["data"]) == 1
    with httpx.Client(base_url=srv.api_base + "/", headers=bob, timeout=60) as http:
        assert http.get(f"containers/{cid}/executions").status_code == 404
        assert http.get(f"containers/{cid}/executions/{eid}").status_code == 404


def test_an_expired_containers_history_stays_readable(start_server) -> None:  # type: ignore[no-untyped-def]
    srv = start_server(pool_size=1, minute_seconds=0.5, reaper_interval=0.2)
    with srv.http() as http:
        cid = create(http, "short", expires_after={"anchor": "last_active_at", "minutes": 4})
        eid = run(http, cid, {"code": "print('before expiry')"})["id"]
        read_events(
            srv.api_base,
            srv.headers,
            until=lambda ev: any(e["type"] == "container.expired" for e in ev),
            timeout=20,
        )
        assert http.get(f"containers/{cid}").json()["status"] == "expired"
        page = http.get(f"containers/{cid}/executions").json()
        assert [e["id"] for e in page["data"]] == [eid]
        one = http.get(f"containers/{cid}/executions/{eid}").json()
        assert one["outputs"][0]["text"] == "before expiry\n"
        # reading the history does not revive it
        assert http.get(f"containers/{cid}").json()["status"] == "expired"
        assert http.delete(f"containers/{cid}").status_code == 200
        assert http.get(f"containers/{cid}/executions").status_code == 404


def test_the_history_survives_a_server_restart_and_deletion_removes_it(start_server) -> None:  # type: ignore[no-untyped-def]
    first = start_server(pool_size=0)
    with first.http() as http:
        cid = create(http, "durable")
        eid = run(http, cid, {"code": "21 * 2", "metadata": {"session_id": "s"}})["id"]
    first.stop()
    second = start_server(pool_size=0, data_dir=first.data_dir)
    with second.http() as http:
        data = http.get(f"containers/{cid}/executions").json()["data"]
        assert [(e["id"], e["session_id"]) for e in data] == [(eid, "s")]
        whole = http.get(f"containers/{cid}/executions/{eid}").json()
        assert whole["outputs"] == [{"type": "result", "data": {"text/plain": "42"}}]
        assert http.delete(f"containers/{cid}").status_code == 200
        assert http.get(f"containers/{cid}/executions/{eid}").status_code == 404


def test_a_running_execution_is_listed_in_progress_and_an_interrupt_ends_it(
    small: RunningServer,
) -> None:
    import threading

    with small.http() as http:
        cid = create(http, "running")
        answer: dict[str, Any] = {}

        def slow() -> None:
            with small.http() as h:
                answer.update(run(h, cid, {"code": "import time\ntime.sleep(60)"}))

        t = threading.Thread(target=slow)
        t.start()
        deadline = time.monotonic() + 20
        while True:
            data = http.get(f"containers/{cid}/executions").json()["data"]
            if data and data[0]["status"] == "in_progress":
                break
            assert time.monotonic() < deadline, data
            time.sleep(0.05)
        assert data[0]["completed_at"] is None and data[0]["duration_ms"] is None
        assert http.post(f"containers/{cid}/interrupt", json={}).json()["interrupted"]
        t.join(timeout=30)
        assert not t.is_alive()
        done = http.get(f"containers/{cid}/executions").json()["data"][0]
    assert answer["status"] == "cancelled" == done["status"]
    assert done["completed_at"] is not None
