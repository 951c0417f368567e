"""Alerts, silences, alert routes and the v2 ingest over HTTP (FastAPI TestClient, real database)."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from storyloom import signals
from storyloom.alerting import publish
from storyloom.alerting.notifier import Notifier
from storyloom.alerting.publish import AlertSignal
from storyloom.clock import FrozenClock
from storyloom.runtime import Runtime
from storyloom.services.tokens import create_token
from storyloom.store.db import Database
from storyloom.store.events import BACKLOG_ACTION, SILENCE_ACTION
from storyloom.store.tables import alerts, workflow_events
from tests.conftest import make_config
from tests.support.plan_seed import seed_world

SECRET = "whsec_" + base64.b64encode(b"api-test-secret-never-shown-0123").decode()
PD_KEY = "PDINTEGRATIONKEY0123456789abcdef"
HEADER_VALUE = "Bearer header-token-never-shown"
H = timedelta(hours=1)
M = timedelta(minutes=1)


def alerting() -> dict[str, Any]:
    return {
        "receivers": [
            {
                "name": "ops",
                "url": "http://127.0.0.1:9000/hooks/ops?token=abc",
                "secret_env": "API_TEST_SECRET",
                "routing_key": "fiction-ops",
                "headers": {"Authorization": HEADER_VALUE},
            },
            {
                "name": "pager",
                "type": "pagerduty",
                "url": "http://127.0.0.1:9000/pd",
                "routing_key": PD_KEY,
                "send_resolved": False,
            },
        ],
        "route": {
            "receiver": "ops",
            "group_by": ["alert_id", "plan_id"],
            "group_wait": "0s",
            "group_interval": "1m",
            "routes": [
                {"matchers": ['severity=~"error|critical"'], "receiver": "pager", "continue": True},
                {"receiver": "ops"},
            ],
        },
        "inhibit_rules": [
            {
                "source_matchers": ['alert_id="planner:provider-unavailable"'],
                "target_matchers": ['alert_id="planner:phase-failed"'],
                "equal": ["provider"],
            }
        ],
        "slo_thresholds": [{"matchers": ['severity="warning"'], "threshold": "1h"}],
    }


@pytest.fixture
def rt(db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    monkeypatch.setenv("API_TEST_SECRET", SECRET)
    return Runtime(
        config=make_config(alerting=alerting(), public_url="http://console.test"), db=db, clock=clock
    )


def token(rt: Runtime, role: str) -> dict[str, str]:
    with rt.db.begin() as conn:
        plain, _ = create_token(conn, name=f"{role}-token", role=role, agent_ids=[], now=rt.clock.now())
    return {"Authorization": f"Bearer {plain}"}


@pytest.fixture
def viewer(rt: Runtime) -> dict[str, str]:
    return token(rt, "viewer")


@pytest.fixture
def operator(rt: Runtime) -> dict[str, str]:
    return token(rt, "operator")


def fire(rt: Runtime, alert_id: str, **labels: str) -> str:
    with rt.db.begin() as conn:
        return publish.fire(conn, AlertSignal(alert_id, labels, "something happened"), rt.clock.now())


# --- alerts -------------------------------------------------------------------------------------------


def test_alerts_need_a_token(client: TestClient) -> None:
    response = client.get("/api/alerts")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


def test_list_and_filter_alerts(
    client: TestClient, rt: Runtime, clock: FrozenClock, viewer: dict[str, str]
) -> None:
    failed = fire(rt, "planner:phase-failed", plan_id="p1", provider="openai")
    stale = fire(rt, "backlog:stale", plan_id="p2", backlog_id="b1")
    gone = fire(rt, "tool:failed", plan_id="p1", tool="search")
    clock.advance(2 * H)
    with rt.db.begin() as conn:
        publish.resolve(conn, [gone], clock.now())

    everything = client.get("/api/alerts", headers=viewer).json()
    assert [a["fingerprint"] for a in everything][2:] == [gone]  # firing first
    assert {a["fingerprint"] for a in everything} == {failed, stale, gone}

    def fps(**params: str) -> set[str]:
        response = client.get("/api/alerts", params=params, headers=viewer)
        assert response.status_code == 200, response.text
        return {a["fingerprint"] for a in response.json()}

    assert fps(status="firing") == {failed, stale}
    assert fps(status="resolved") == {gone}
    assert fps(severity="error") == {failed}
    assert fps(plan_id="p1") == {failed, gone}
    assert fps(alert_id="backlog:stale") == {stale}
    assert fps(receiver="pager") == {failed}
    assert fps(receiver="ops") == {failed, stale, gone}
    assert client.get("/api/alerts", params={"status": "bogus"}, headers=viewer).status_code == 422

    shown = next(a for a in everything if a["fingerprint"] == stale)
    assert shown["labels"] == {
        "alert_id": "backlog:stale",
        "severity": "warning",
        "source": "health",
        "plan_id": "p2",
        "backlog_id": "b1",
    }
    assert shown["status"] == "firing" and shown["ends_at"] is None
    assert shown["starts_at"] == "2026-11-25T20:00:00Z"
    assert shown["slo_minutes"] == 60 and shown["slo_breached"] is True
    assert shown["runbook_url"] == "http://console.test/runbooks/backlog:stale"
    assert shown["console_url"] == f"http://console.test/alerts/{stale}"
    assert shown["silenced_by"] == [] and shown["inhibited_by"] == []


def test_mute_state_is_computed_at_read_time(
    client: TestClient, rt: Runtime, viewer: dict[str, str], operator: dict[str, str]
) -> None:
    target = fire(rt, "planner:phase-failed", plan_id="p1", provider="openai")
    source = fire(rt, "planner:provider-unavailable", provider="openai")
    created = client.post(
        "/api/silences",
        headers=operator,
        json={"matchers": ['plan_id="p1"'], "ends_at": "2026-11-25T22:00:00Z", "comment": "investigating"},
    )
    assert created.status_code == 201, created.text
    shown = client.get(f"/api/alerts/{target}", headers=viewer).json()
    assert shown["inhibited_by"] == [source]
    assert shown["silenced_by"] == [created.json()["id"]]
    with rt.db.read() as conn:  # reading sends nothing
        assert conn.execute(select(alerts.c.status)).scalars().all() == ["firing", "firing"]


def test_alert_detail_has_history_and_notifications(
    client: TestClient, rt: Runtime, clock: FrozenClock, viewer: dict[str, str]
) -> None:
    fp = fire(rt, "planner:phase-failed", plan_id="p1")
    Notifier(rt).tick()
    clock.advance(M)
    with rt.db.begin() as conn:
        publish.resolve(conn, [fp], clock.now())
    detail = client.get(f"/api/alerts/{fp}", headers=viewer).json()
    assert [h["status"] for h in detail["history"]] == ["firing", "resolved"]
    assert detail["history"][0]["at"] == "2026-11-25T20:00:00Z"
    assert sorted(n["receiver"] for n in detail["notifications"]) == ["ops", "pager"]
    assert all(
        n["status"] == "pending" and n["webhook_id"].startswith("msg_") for n in detail["notifications"]
    )
    assert detail["receivers"] == ["pager", "ops"]
    assert detail["status"] == "resolved" and detail["ends_at"] == "2026-11-25T20:01:00Z"
    assert client.get("/api/alerts/0000000000000000", headers=viewer).status_code == 404


def test_an_alert_that_fires_again_keeps_its_fingerprint_and_history(
    client: TestClient, rt: Runtime, clock: FrozenClock, viewer: dict[str, str]
) -> None:
    fp = fire(rt, "backlog:stale", plan_id="p1", backlog_id="b1")
    clock.advance(M)
    with rt.db.begin() as conn:
        publish.resolve(conn, [fp], clock.now())
    clock.advance(M)
    assert fire(rt, "backlog:stale", plan_id="p1", backlog_id="b1") == fp

    [listed] = client.get("/api/alerts", headers=viewer).json()
    assert listed["fingerprint"] == fp and listed["status"] == "firing"
    detail = client.get(f"/api/alerts/{fp}", headers=viewer).json()
    assert [(h["status"], h["reason"], h["at"]) for h in detail["history"]] == [
        ("firing", "fired", "2026-11-25T20:00:00Z"),
        ("resolved", "cause cleared", "2026-11-25T20:01:00Z"),
        ("firing", "fired again", "2026-11-25T20:02:00Z"),
    ]
    assert detail["starts_at"] == "2026-11-25T20:02:00Z" and detail["ends_at"] is None


# --- silences -----------------------------------------------------------------------------------------


def test_silence_create_list_and_expire(
    client: TestClient, rt: Runtime, clock: FrozenClock, viewer: dict[str, str], operator: dict[str, str]
) -> None:
    wake = signals.waiter("notify")
    wake(0)
    body = {
        "matchers": ['alert_id="tool:failed"', 'tool=~"search|fetch"'],
        "ends_at": "2026-11-25T21:00:00Z",
        "comment": "noisy tools",
    }
    assert client.post("/api/silences", headers=viewer, json=body).status_code == 403
    created = client.post("/api/silences", headers=operator, json=body)
    assert created.status_code == 201, created.text
    silence = created.json()
    assert silence["status"] == "active" and silence["starts_at"] == "2026-11-25T20:00:00Z"
    assert silence["matchers"] == ['alert_id="tool:failed"', 'tool=~"search|fetch"']
    assert silence["created_by"] == "operator-token"
    assert wake(0)

    listed = client.get("/api/silences", headers=viewer).json()
    assert [s["id"] for s in listed] == [silence["id"]]
    assert client.get("/api/silences", params={"state": "expired"}, headers=viewer).json() == []

    clock.advance(M)
    expired = client.delete(f"/api/silences/{silence['id']}", headers=operator)
    assert expired.status_code == 200
    assert expired.json()["status"] == "expired" and expired.json()["ends_at"] == "2026-11-25T20:01:00Z"
    assert client.delete("/api/silences/sil_nope", headers=operator).status_code == 404

    with rt.db.read() as conn:
        events = conn.execute(
            select(workflow_events.c.kind, workflow_events.c.payload).order_by(workflow_events.c.id)
        ).all()
    actions = [(k, p["action"]) for k, p in events if k in (SILENCE_ACTION, BACKLOG_ACTION)]
    assert actions == [
        (SILENCE_ACTION, "silence-create"),
        (BACKLOG_ACTION, "silence-create"),
        (SILENCE_ACTION, "silence-expire"),
        (BACKLOG_ACTION, "silence-expire"),
    ]
    payload = events[-1].payload
    assert payload["actor"] == "operator-token" and payload["source"] == "api" and payload["actor_id"]
    assert [p["status"] for k, p in events if k == BACKLOG_ACTION] == ["active", "expired"]


def test_a_silence_pinned_to_a_plan_shows_in_that_plans_action_log(
    rt: Runtime, client: TestClient, operator: dict[str, str]
) -> None:
    plan_id = seed_world(rt).plan_id
    body = {
        "matchers": [f'plan_id="{plan_id}"', 'backlog_id="scroll-1"', 'alert_id=~"planner:.*"'],
        "ends_at": "2026-11-25T21:00:00Z",
        "comment": "rewriting chapter 1 by hand",
    }
    assert client.post("/api/silences", headers=operator, json=body).status_code == 201
    action = client.get(f"/api/fiction/plans/{plan_id}/backlog/actions", headers=operator).json()[0]
    assert (action["action"], action["plan_id"], action["backlog_id"], action["status"]) == (
        "silence-create",
        plan_id,
        "scroll-1",
        "active",
    )
    assert action["actor"] == "operator-token" and action["source"] == "api" and action["time"]
    assert action["agent_id"] is None and action["task_id"] is None, "not pinned by an equality matcher"


def test_silence_validation_points_at_the_field(client: TestClient, operator: dict[str, str]) -> None:
    bad = client.post(
        "/api/silences",
        headers=operator,
        json={
            "matchers": ['alert_id="tool:failed"', "nonsense"],
            "ends_at": "2026-11-25T21:00:00Z",
            "comment": "x",
        },
    )
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert [e["loc"] for e in bad.json()["errors"]] == [["body", "matchers", 1]]

    past = client.post(
        "/api/silences",
        headers=operator,
        json={"matchers": ['alert_id="x"'], "ends_at": "2026-11-25T19:00:00Z", "comment": "x"},
    )
    assert past.status_code == 422 and ["body", "ends_at"] in [e["loc"] for e in past.json()["errors"]]

    everything = client.post(
        "/api/silences",
        headers=operator,
        json={"matchers": ['alert_id=~".*"'], "ends_at": "2026-11-25T21:00:00Z", "comment": "x"},
    )
    assert everything.status_code == 422

    extra = client.post(
        "/api/silences",
        headers=operator,
        json={"matchers": ['alert_id="x"'], "ends_at": "2026-11-25T21:00:00Z", "comment": "x", "surprise": 1},
    )
    assert extra.status_code == 422

    naive = client.post(
        "/api/silences",
        headers=operator,
        json={"matchers": ['alert_id="x"'], "ends_at": "2026-11-25T21:00:00", "comment": "x"},
    )
    assert naive.status_code == 422


# --- routes -------------------------------------------------------------------------------------------


def test_routes_are_shown_with_secrets_redacted(client: TestClient, viewer: dict[str, str]) -> None:
    response = client.get("/api/alert-routes", headers=viewer)
    assert response.status_code == 200
    for secret in (SECRET, PD_KEY, HEADER_VALUE, "token=abc", "hooks/ops"):
        assert secret not in response.text
    data = response.json()
    assert data["route"]["receiver"] == "ops"
    assert [r["receiver"] for r in data["route"]["routes"]] == ["pager", "ops"]
    ops = next(r for r in data["receivers"] if r["name"] == "ops")
    assert ops["signed"] is True and ops["routing_key"] == "fiction-ops"
    assert ops["headers"] == {"Authorization": "<redacted>"} and ops["url"].startswith(
        "http://127.0.0.1:9000/"
    )
    pager = next(r for r in data["receivers"] if r["name"] == "pager")
    assert pager["routing_key"] == "<redacted>" and pager["signed"] is False
    assert data["inhibit_rules"][0]["equal"] == ["provider"]


def test_route_test(client: TestClient, viewer: dict[str, str]) -> None:
    hit = client.post(
        "/api/alert-routes/test",
        headers=viewer,
        json={"labels": {"alert_id": "planner:phase-failed", "severity": "error"}},
    )
    assert hit.status_code == 200 and hit.json()["receivers"] == ["pager", "ops"]
    calm = client.post("/api/alert-routes/test", headers=viewer, json={"labels": {"severity": "info"}})
    assert calm.json()["receivers"] == ["ops"]
    assert client.post("/api/alert-routes/test", headers=viewer, json={"labels": ["x"]}).status_code == 422
    assert client.post("/api/alert-routes/test", headers=viewer, json={}).status_code == 422


# --- v2 ingest ----------------------------------------------------------------------------------------


def test_v2_ingest_fires_and_resolves(
    client: TestClient, rt: Runtime, clock: FrozenClock, viewer: dict[str, str], operator: dict[str, str]
) -> None:
    batch = [
        {
            "labels": {"alertname": "DiskFull", "instance": "db1"},
            "annotations": {"summary": "Disk full", "description": "/var at 99%"},
            "startsAt": "2026-11-25T19:50:00Z",
            "generatorURL": "http://prometheus/graph",
        },
        {"labels": {"alert_id": "custom:thing", "severity": "critical"}},
    ]
    assert client.post("/api/v2/alerts", headers=viewer, json=batch).status_code == 403
    response = client.post("/api/v2/alerts", headers=operator, json=batch)
    assert response.status_code == 200, response.text
    fired = response.json()["fired"]
    assert len(fired) == 2
    disk = client.get(f"/api/alerts/{fired[0]}", headers=viewer).json()
    assert (
        disk["alert_id"] == "DiskFull"
        and disk["severity"] == "warning"
        and disk["labels"]["source"] == "ingest"
    )
    assert disk["title"] == "Disk full" and disk["description"] == "/var at 99%"
    assert disk["starts_at"] == "2026-11-25T19:50:00Z"
    assert disk["annotations"]["generator_url"] == "http://prometheus/graph"
    thing = client.get(f"/api/alerts/{fired[1]}", headers=viewer).json()
    assert thing["severity"] == "critical" and thing["labels"]["alert_id"] == "custom:thing"

    clock.advance(M)
    done = client.post(
        "/api/v2/alerts",
        headers=operator,
        json=[{"labels": {"alertname": "DiskFull", "instance": "db1"}, "endsAt": "2026-11-25T20:00:30Z"}],
    )
    assert done.json()["resolved"] == [fired[0]]
    assert client.get(f"/api/alerts/{fired[0]}", headers=viewer).json()["status"] == "resolved"


def test_v2_ingest_keeps_the_valid_alerts_of_a_partly_bad_batch(
    client: TestClient, rt: Runtime, operator: dict[str, str]
) -> None:
    """As Alertmanager does: the valid alerts are stored, the refused ones are named by index."""
    response = client.post(
        "/api/v2/alerts",
        headers=operator,
        json=[
            {"labels": {"alertname": "Fine"}},
            {"labels": {"instance": "x"}},
        ],
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", 1, "labels"]
    assert response.json()["accepted"] == 1 and response.json()["refused"] == [1]
    bad_severity = client.post(
        "/api/v2/alerts", headers=operator, json=[{"labels": {"alertname": "X", "severity": "page"}}]
    )
    assert bad_severity.status_code == 422
    assert client.post("/api/v2/alerts", headers=operator, json={"labels": {}}).status_code == 422
    with rt.db.read() as conn:
        assert conn.execute(select(alerts.c.alert_id)).scalars().all() == ["Fine"]
