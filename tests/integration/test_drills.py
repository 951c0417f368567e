"""Drills through the real path: the drill alert is routed, grouped, signed and delivered to loopback
receivers, each receiver's answer and latency is reported, and the alert is resolved afterwards."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from fastapi.testclient import TestClient
from sqlalchemy import select

from storyloom.alerting import publish
from storyloom.alerting.delivery.worker import DeliveryDispatcher
from storyloom.alerting.notifier import Notifier
from storyloom.alerting.publish import AlertSignal, alert_labels
from storyloom.alerting.setup import SecretPlaceholders, routing_without_secrets
from storyloom.api.app import create_app
from storyloom.clock import FrozenClock
from storyloom.demo_receiver import served_routing
from storyloom.domain.alerts import RESOLVED
from storyloom.domain.catalog import CATALOG, Severity
from storyloom.domain.routing import receivers_for
from storyloom.health.report import health_status
from storyloom.runtime import Runtime, load_checked_config
from storyloom.services import drills
from storyloom.services.actors import SYSTEM
from storyloom.store.db import Database
from storyloom.store.tables import alerts
from tests.support.deliveries import SECRET, SECRET_ENV, PrivateReceiver, receiver, runtime, wall_clock
from tests.support.plan_seed import token
from tests.support.receivers import Reply, standard_webhook

STEP = timedelta(milliseconds=250)


@pytest.fixture
def clock() -> FrozenClock:
    return wall_clock()


@pytest.fixture
def hooks() -> Iterator[tuple[PrivateReceiver, PrivateReceiver]]:
    with PrivateReceiver(standard_webhook(SECRET)) as ops, PrivateReceiver(standard_webhook(SECRET)) as chat:
        yield ops, chat


@pytest.fixture
def rt(
    db: Database,
    clock: FrozenClock,
    hooks: tuple[PrivateReceiver, PrivateReceiver],
    monkeypatch: pytest.MonkeyPatch,
) -> Runtime:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    ops, chat = hooks
    return runtime(
        db,
        clock,
        receiver("ops", ops.url_for("/h"), retry={"schedule": ["0s"]}),
        receiver("chat", chat.url_for("/h"), send_resolved=False),
    )


@pytest.fixture
def pump(rt: Runtime, clock: FrozenClock) -> Iterator[Callable[[float], None]]:
    """A pause between polls that moves the clock and runs this runtime's notifier and dispatcher once."""
    loop = asyncio.new_event_loop()
    notifier, dispatcher = Notifier(rt), DeliveryDispatcher(rt)

    def step(_seconds: float) -> None:
        clock.advance(STEP)
        notifier.tick()
        loop.run_until_complete(dispatcher.run_once())

    yield step
    loop.run_until_complete(dispatcher.aclose())
    loop.close()


def drill_alert(rt: Runtime, fingerprint: str) -> Any:
    with rt.db.read() as conn:
        return conn.execute(select(alerts).where(alerts.c.fingerprint == fingerprint)).mappings().one()


def test_a_drill_reaches_every_routed_receiver_marked_as_a_drill_and_is_resolved(
    rt: Runtime, hooks: tuple[PrivateReceiver, PrivateReceiver], pump: Callable[[float], None]
) -> None:
    ops, chat = hooks
    report = drills.run_drill(rt, SYSTEM, pause=pump)

    assert [(r["receiver"], r["outcome"], r["status_code"]) for r in report["receivers"]] == [
        ("ops", "delivered", 204),
        ("chat", "delivered", 204),
    ]
    assert all(r["latency_ms"] >= 0 for r in report["receivers"])
    [told] = ops.requests
    [alert] = told.json["alerts"]
    assert alert["drill"] is True and alert["labels"]["drill"] == "true"
    assert alert["alert_id"] == drills.DRILL_ALERT_ID == report["alert_id"]
    assert drill_alert(rt, report["fingerprint"])["status"] == RESOLVED

    for _ in range(8):  # the group's next flush (group_interval 1s) tells ops, which sends resolved
        pump(0)
    assert [r.json["status"] for r in ops.requests] == ["firing", "resolved"]
    assert len(chat.requests) == 1  # send_resolved: false


def test_a_firing_drill_never_counts_in_health_while_a_real_alert_of_its_id_does(rt: Runtime) -> None:
    with rt.db.read() as conn:
        before = health_status(conn)
    with rt.db.begin() as conn:
        drills.start_drill(conn, rt.alerting, SYSTEM, rt.clock.now(), alert_id="planner:phase-failed")
    with rt.db.read() as conn:
        assert health_status(conn) == before
    with rt.db.begin() as conn:
        publish.fire(conn, AlertSignal("planner:phase-failed", {"plan_id": "p1"}, "real"), rt.clock.now())
    with rt.db.read() as conn:
        assert health_status(conn)["firing"] == {**before["firing"], "error": 1}


def test_a_forced_receiver_is_the_only_one_told_and_a_dead_delivery_is_reported(
    rt: Runtime, hooks: tuple[PrivateReceiver, PrivateReceiver], pump: Callable[[float], None]
) -> None:
    ops, chat = hooks
    ops.script(Reply(500))

    report = drills.run_drill(rt, SYSTEM, receiver="ops", alert_id="planner:phase-failed", pause=pump)

    [answer] = report["receivers"]
    assert (answer["receiver"], answer["outcome"], answer["status_code"]) == ("ops", "dead", 500)
    assert report["labels"]["drill_receiver"] == "ops"
    assert len(ops.requests) == 1 and chat.requests == []


def test_no_answer_before_the_timeout_is_reported_as_no_delivery(rt: Runtime) -> None:
    report = drills.run_drill(rt, SYSTEM, timeout=timedelta(milliseconds=1), pause=lambda _s: None)

    assert {r["outcome"] for r in report["receivers"]} == {drills.NO_DELIVERY}
    assert drill_alert(rt, report["fingerprint"])["status"] == RESOLVED


def test_the_api_runs_a_drill_as_an_operator_and_logs_who_ran_it(
    rt: Runtime, pump: Callable[[float], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(drills, "between_polls", pump)
    client = TestClient(create_app(rt))
    with structlog.testing.capture_logs() as logs:
        response = client.post("/api/drills", json={}, headers=token(rt, "operator", name="ops-ana"))

    assert response.status_code == 200, response.text
    assert {r["outcome"] for r in response.json()["receivers"]} == {"delivered"}
    [line] = [entry for entry in logs if entry["event"] == "operator action"]
    assert (line["action"], line["actor"], line["drill_id"]) == (
        "drill",
        "ops-ana",
        response.json()["drill_id"],
    )


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"receiver": "nobody"}, ["body", "receiver"]),
        ({"alert_id": "Not An Id"}, ["body", "alert_id"]),
        ({"timeout": "soon"}, ["body", "timeout"]),
        ({"timeout": "1h"}, ["body", "timeout"]),
        ({"page": True}, ["body", "page"]),
    ],
)
def test_an_invalid_drill_is_a_422_naming_the_field(
    rt: Runtime, body: dict[str, Any], loc: list[str]
) -> None:
    client = TestClient(create_app(rt))
    response = client.post("/api/drills", json=body, headers=token(rt, "operator"))
    assert response.status_code == 422, response.text
    assert [e["loc"] for e in response.json()["errors"]] == [loc]
    with rt.db.read() as conn:
        assert conn.execute(select(alerts)).first() is None  # nothing fired


def test_the_routes_page_button_runs_a_drill_and_shows_each_answer(
    rt: Runtime, pump: Callable[[float], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(drills, "between_polls", pump)
    client = TestClient(create_app(rt), follow_redirects=False)
    plain = token(rt, "operator", name="ops-ana")["Authorization"].removeprefix("Bearer ")
    client.get(f"/login?token={plain}")

    page = client.post(
        "/routes/drill", data={"csrf_token": client.cookies["storyloom_csrf"], "receiver": "chat"}
    )

    assert page.status_code == 200, page.text
    assert re.search(r'data-receiver="chat">.*?delivered.*?\d+ ms', page.text, re.S)
    assert 'data-receiver="ops"' not in page.text


EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "docs" / "examples").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_config_routes_drills_away_from_pagerduty(path: Path) -> None:
    served = routing_without_secrets(served_routing(load_checked_config(path, env=SecretPlaceholders())))
    assert served.route is not None
    pagers = {name for name, spec in served.receivers.items() if spec.type == "pagerduty"}
    for alert_id in [drills.DRILL_ALERT_ID, *CATALOG]:
        for severity in Severity:
            signal = AlertSignal(
                alert_id, {"drill": "true", "drill_id": "drl_x"}, "", severity=severity.value
            )
            reached = set(receivers_for(served.route, alert_labels(signal)))
            assert reached and not reached & pagers, f"{path.name}: a {severity} drill of {alert_id} pages"
