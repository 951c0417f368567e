"""No read answers 500 because of what is stored: rows an older version could write (a lone surrogate, a
NUL, odd JSON in labels, a matcher that no longer parses) are inserted with SQL, and every read endpoint
and console page still answers 200, showing such a row as unreadable instead of failing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, insert, text

from storyloom.alerting.publish import AlertSignal, fire_many
from storyloom.api.app import create_app
from storyloom.api.routers.events import events_after
from storyloom.clock import FrozenClock
from storyloom.domain.readable import REPLACEMENT
from storyloom.runtime import Runtime
from storyloom.services.tokens import create_token
from storyloom.store.db import Database
from storyloom.store.events import ALERT_STATE
from storyloom.store.tables import deliveries, silences, workflow_events
from tests.conftest import make_config
from tests.support.health_seed import new_plan

SURROGATE = "\ud800"  # valid in JSON text (as an escape), but no UTF-8 response can carry it


def as_stored(value: Any) -> str:
    """JSON text as an older version stored it (`json.dumps` escapes the lone surrogate)."""
    return json.dumps(value)


POISONED_LABELS = {
    "surrogate": as_stored(
        {"alert_id": "poison:surrogate", "severity": "warning", "source": "ingest", "v": SURROGATE}
    ),
    "list": as_stored(["alert_id", "poison:list"]),
    "odd-values": as_stored(
        {
            "alert_id": "poison:odd",
            "severity": "warning",
            "source": "ingest",
            "n": 5,
            "o": {"k": [1]},
            "z": None,
        }
    ),
    "null": as_stored(None),
}
POISONED_MATCHERS = {
    "bad-regex": as_stored(['v=~"("']),
    "not-a-matcher": as_stored(["this is no matcher"]),
    "surrogate": as_stored([f'v="{SURROGATE}"']),
    "not-a-list": as_stored({"v": "x"}),
}
POISONED_DELIVERIES = {  # (fingerprints, notification)
    "surrogate": (
        as_stored(["abc"]),
        as_stored({"alerts": [{"alert_id": "poison", "labels": {"v": SURROGATE}}]}),
    ),
    "odd-json": (as_stored({"not": "a list"}), as_stored(["not", "an", "object"])),
    "odd-alerts": (as_stored(None), as_stored({"alerts": [5, {"alert_id": 7}], "status": "firing"})),
}


@pytest.fixture
def rt(db: Database, clock: FrozenClock) -> Runtime:
    alerting = {
        "receivers": [{"name": "ops", "url": "http://127.0.0.1:9000/ops"}],
        "route": {"receiver": "ops", "group_by": ["..."], "group_wait": "0s"},
        "inhibit_rules": [{"source_matchers": ['alert_id="a"'], "target_matchers": ['alert_id="b"']}],
    }
    return Runtime(config=make_config(alerting=alerting), db=db, clock=clock)


def _json_param(conn: Connection, name: str = "raw") -> str:
    """A bound JSON text as the column's type on this database (PostgreSQL needs the cast)."""
    return f"CAST(:{name} AS JSON)" if conn.dialect.name == "postgresql" else f":{name}"


def _fire_outside(conn: Connection, signal: AlertSignal, now: datetime) -> str:
    """An alert id outside the catalog, stored as ingest stores one (`fire` refuses unknown ids)."""
    return fire_many(conn, [signal], now)[0]


def _poison(rt: Runtime) -> dict[str, str]:
    """Stored rows no current write path would accept; returns the fingerprints by poison name."""
    now = rt.clock.now()
    fingerprints: dict[str, str] = {}
    with rt.db.begin() as conn:
        for name, stored in POISONED_LABELS.items():
            fp = _fire_outside(
                conn, AlertSignal(f"poison:{name}", {"case": name}, "stored by an older version"), now
            )
            conn.execute(
                text(f"UPDATE alerts SET labels = {_json_param(conn)} WHERE fingerprint = :fp"),
                {"raw": stored, "fp": fp},
            )
            fingerprints[name] = fp
        fp = _fire_outside(
            conn, AlertSignal("poison:annotations", {"case": "annotations"}, "odd annotations"), now
        )
        conn.execute(
            text(f"UPDATE alerts SET annotations = {_json_param(conn)} WHERE fingerprint = :fp"),
            {"raw": as_stored({"summary": SURROGATE, "n": 1}), "fp": fp},
        )
        fingerprints["annotations"] = fp
        if conn.dialect.name == "sqlite":  # PostgreSQL text holds neither a NUL nor bytes that are not UTF-8
            fingerprints["nul"] = _fire_outside(
                conn, AlertSignal("poison:nul", {"case": "nul"}, "a\x00b"), now
            )
            fp = _fire_outside(conn, AlertSignal("poison:bytes", {"case": "bytes"}, "not UTF-8"), now)
            conn.execute(
                text("UPDATE alerts SET title = CAST(X'66ff6f' AS TEXT) WHERE fingerprint = :fp"), {"fp": fp}
            )
            fingerprints["bytes"] = fp
        for name, stored in POISONED_MATCHERS.items():
            conn.execute(
                insert(silences).values(
                    id=f"sil_{name}",
                    matchers=[],
                    starts_at=now,
                    ends_at=now.replace(year=now.year + 1),
                    comment=f"poison {name}",
                    created_by="older version",
                    created_at=now,
                    updated_at=now,
                )
            )
            conn.execute(
                text(f"UPDATE silences SET matchers = {_json_param(conn)} WHERE id = :id"),
                {"raw": stored, "id": f"sil_{name}"},
            )
        for name, (fps, notification) in POISONED_DELIVERIES.items():
            conn.execute(
                insert(deliveries).values(
                    id=f"dlv_{name}",
                    webhook_id=f"msg_{name}",
                    receiver="ops",
                    receiver_type="webhook",
                    group_key="{}",
                    status="dead",
                    alert_status="firing",
                    fingerprints=[],
                    notification={},
                    attempts=1,
                    last_error="a\x00b" if conn.dialect.name == "sqlite" else "refused",
                    created_at=now,
                )
            )
            conn.execute(
                text(
                    f"UPDATE deliveries SET fingerprints = {_json_param(conn, 'fps')}, "
                    f"notification = {_json_param(conn)} WHERE id = :id"
                ),
                {"fps": fps, "raw": notification, "id": f"dlv_{name}"},
            )
        conn.execute(insert(workflow_events).values(kind=ALERT_STATE, payload={}, created_at=now))
        conn.execute(
            text(f"UPDATE workflow_events SET payload = {_json_param(conn)} WHERE kind = :kind"),
            {"raw": as_stored(["not", "an", "object", SURROGATE]), "kind": ALERT_STATE},
        )
    return fingerprints


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt), follow_redirects=False, raise_server_exceptions=False) as c:
        with rt.db.begin() as conn:
            token, _ = create_token(conn, name="admin-user", role="admin", agent_ids=[], now=rt.clock.now())
        c.headers["Authorization"] = f"Bearer {token}"
        assert c.get(f"/login?token={token}").status_code == 303
        yield c


def test_every_read_answers_despite_poisoned_rows(rt: Runtime, client: TestClient) -> None:
    fingerprints = _poison(rt)
    paths = [
        "/api/alerts",
        "/api/alerts?status=firing",
        *(f"/api/alerts/{fp}" for fp in fingerprints.values()),
        "/api/silences",
        *(f"/api/silences/sil_{name}" for name in POISONED_MATCHERS),
        "/api/diagnostics/planner",
        "/api/deliveries",
        "/metrics",
        "/",
        "/alerts",
        "/alerts?state=all",
        *(f"/alerts/{fp}" for fp in fingerprints.values()),
        "/silences",
        "/deliveries",
        "/inbox",
    ]
    answers = {path: client.get(path) for path in paths}
    failed = {path: f"{r.status_code} {r.text[:300]}" for path, r in answers.items() if r.status_code != 200}
    assert not failed, failed
    for path in paths:
        if not path.startswith(("/api", "/metrics")):
            assert 'id="status-chip"' in answers[path].text, path  # the whole page, not an error page


def test_poisoned_alerts_are_shown_repaired_and_marked(rt: Runtime, client: TestClient) -> None:
    fingerprints = _poison(rt)
    clean = _fire_clean(rt)
    listed = {a["fingerprint"]: a for a in client.get("/api/alerts").json()}
    assert set(fingerprints.values()) <= set(listed)
    surrogate = listed[fingerprints["surrogate"]]
    assert surrogate["labels"]["v"] == "\ufffd"
    assert surrogate["unreadable"] == ["labels.v: holds a lone surrogate or NUL"]
    assert listed[fingerprints["list"]]["labels"] == {}
    assert listed[fingerprints["list"]]["unreadable"] == ["labels: stored as a list, not an object"]
    odd = listed[fingerprints["odd-values"]]
    assert (odd["labels"]["n"], odd["labels"]["o"], odd["labels"]["z"]) == ("5", '{"k": [1]}', "null")
    assert "labels.o: stored as an object, not text" in odd["unreadable"]
    if "bytes" in fingerprints:
        assert listed[fingerprints["bytes"]]["title"] == "f\ufffdo"
    annotations = client.get(f"/api/alerts/{fingerprints['annotations']}").json()
    assert annotations["annotations"]["summary"] == "\ufffd"
    assert "unreadable" not in listed[clean]  # a sound row is not marked
    page = client.get(f"/alerts/{fingerprints['surrogate']}").text
    assert 'id="unreadable"' in page and "labels.v: holds a lone surrogate or NUL" in page
    assert "unreadable" in client.get("/alerts").text


def test_poisoned_silences_mute_nothing_are_marked_and_can_be_expired(
    rt: Runtime, client: TestClient
) -> None:
    fingerprints = _poison(rt)
    silences_by_id = {s["id"]: s for s in client.get("/api/silences").json()}
    bad_regex = silences_by_id["sil_bad-regex"]
    assert bad_regex["status"] == "active" and bad_regex["matchers"] == ['v=~"("']
    assert bad_regex["unreadable"][0].startswith("matchers.0: invalid regex")
    assert silences_by_id["sil_not-a-list"]["unreadable"] == ["matchers: stored as an object, not a list"]
    assert silences_by_id["sil_surrogate"]["matchers"] == ['v="\ufffd"']
    # an unreadable silence mutes nothing (the surrogate alert's `v` would otherwise match sil_surrogate)
    assert client.get(f"/api/alerts/{fingerprints['surrogate']}").json()["silenced_by"] == []
    expired = client.delete("/api/silences/sil_surrogate")
    assert expired.status_code == 200, expired.text
    assert expired.json()["status"] == "expired"


def test_poisoned_deliveries_and_events_are_marked(rt: Runtime, client: TestClient) -> None:
    _poison(rt)
    listed = {d["id"]: d for d in client.get("/api/deliveries").json()}
    assert listed["dlv_surrogate"]["alert_ids"] == ["poison"] and "unreadable" not in listed["dlv_surrogate"]
    assert listed["dlv_odd-json"]["unreadable"] == [
        "notification: stored as a list, not a notification",
        "fingerprints: stored as an object, not a list",
    ]
    assert listed["dlv_odd-alerts"]["alert_ids"] == ["7"]
    assert "unreadable" in client.get("/deliveries").text
    with rt.db.read() as conn:
        events = events_after(conn, 0)
    assert events[-1]["event"] == "alert"
    assert events[-1]["data"]["unreadable"] == ["payload: stored as a list, not an object"]


def test_any_json_response_or_page_encodes_a_stored_lone_surrogate(rt: Runtime, client: TestClient) -> None:
    """Beyond the alerting rows: a plan's backlog JSON holding a lone surrogate (say, from an LLM's output)."""
    plan_id = new_plan(rt)["id"]
    with rt.db.begin() as conn:
        conn.execute(
            text(f"UPDATE backlog_items SET outputs = {_json_param(conn)} WHERE plan_id = :plan"),
            {"raw": as_stored([f"scroll-{SURROGATE}"]), "plan": plan_id},
        )
    backlog = client.get(f"/api/fiction/plans/{plan_id}/backlog")
    assert backlog.status_code == 200, backlog.text
    assert f"scroll-{REPLACEMENT}" in backlog.json()[0]["outputs"]
    for path in ("/api/diagnostics/planner", f"/api/fiction/plans/{plan_id}", f"/plans/{plan_id}", "/"):
        assert client.get(path).status_code == 200, path


def _fire_clean(rt: Runtime) -> str:
    with rt.db.begin() as conn:
        return _fire_outside(
            conn, AlertSignal("sound:alert", {"case": "clean"}, "nothing odd"), rt.clock.now()
        )
