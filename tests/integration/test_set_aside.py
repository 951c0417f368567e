"""Poison-proof passes: a stored row the notifier, the dispatcher or the scheduler cannot process is set
aside with its error (API, console, metric) and the pass goes on: the next alert is still delivered."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert, select, update

from storyloom.alerting import publish
from storyloom.alerting.aggregation.ingest import PASS_NAME
from storyloom.alerting.delivery.worker import DeliveryDispatcher
from storyloom.alerting.flush import FLUSH_PASS_NAME
from storyloom.alerting.notifier import Notifier
from storyloom.alerting.publish import AlertSignal
from storyloom.api.app import create_app
from storyloom.clock import FrozenClock
from storyloom.engine.scheduler import SET_ASIDE_PASS as SCHEDULER_PASS
from storyloom.engine.scheduler import Scheduler
from storyloom.runtime import Runtime
from storyloom.services.plans import list_backlog
from storyloom.store import set_aside
from storyloom.store.db import Database
from storyloom.store.tables import aggregation_groups, alert_changes, alerts, backlog_items, deliveries
from tests.conftest import make_config
from tests.support.deliveries import SECRET, SECRET_ENV, PrivateReceiver, receiver, runtime, wall_clock
from tests.support.engine import seed_plan
from tests.support.receivers import standard_webhook
from tests.support.server import ADMIN_TOKEN

POISON_FP = "0" * 32


@pytest.fixture
def clock() -> FrozenClock:
    return wall_clock()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[PrivateReceiver]:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    monkeypatch.setenv("STORYLOOM_ADMIN_TOKEN", ADMIN_TOKEN)
    with PrivateReceiver(standard_webhook(SECRET)) as srv:
        yield srv


@pytest.fixture
def rt(db: Database, clock: FrozenClock, server: PrivateReceiver) -> Runtime:
    return runtime(db, clock, receiver("ops", server.url_for("/hooks/ops")))


def set_aside_count(rt: Runtime, pass_name: str) -> float:
    """`storyloom_set_aside_rows{pass}` as /metrics serves it."""
    with TestClient(create_app(rt)) as client:
        text_ = client.get("/metrics").text
    for family in text_string_to_metric_families(text_):
        for sample in family.samples:
            if sample.name == "storyloom_set_aside_rows" and sample.labels["pass"] == pass_name:
                return sample.value
    return 0.0


def inject_poison(rt: Runtime, clock: FrozenClock) -> None:
    """An alert row whose labels are no mapping (as a bad write or manual edit leaves it), with its change
    row, and a due group whose labels are no mapping: straight into the database."""
    now = clock.now()
    with rt.db.begin() as conn:
        conn.execute(
            insert(alerts).values(
                fingerprint=POISON_FP,
                alert_id="poison",
                status="firing",
                severity="warning",
                title="poison",
                description="",
                labels="not a mapping",
                annotations={},
                source="ingest",
                starts_at=now,
                generated_at=now,
                updated_at=now,
            )
        )
        conn.execute(insert(alert_changes).values(fingerprint=POISON_FP, status="firing", created_at=now))
        conn.execute(
            insert(aggregation_groups).values(
                group_key="poisoned-group",
                route_id="0",
                receiver="ops",
                group_labels="not a mapping",
                first_alert_at=now,
                next_flush_at=now,
                last_firing=[],
                last_resolved=[],
            )
        )


def test_a_poisoned_row_is_set_aside_and_the_next_alert_is_still_delivered(
    rt: Runtime, clock: FrozenClock, server: PrivateReceiver
) -> None:
    before = set_aside_count(rt, PASS_NAME), set_aside_count(rt, FLUSH_PASS_NAME)
    inject_poison(rt, clock)
    with rt.db.begin() as conn:
        good = publish.fire(conn, AlertSignal("tool:failed", {"plan_id": "plan_1"}, "next one"), clock.now())

    result = Notifier(rt).tick()
    assert result.held and result.deliveries == 1
    dispatcher = DeliveryDispatcher(rt)
    assert asyncio.run(dispatcher.run_once()) == 1
    server.wait_for(1)
    assert [a["fingerprint"] for a in server.requests[0].json["alerts"]] == [good]

    assert set_aside_count(rt, PASS_NAME) == before[0] + 1
    assert set_aside_count(rt, FLUSH_PASS_NAME) == before[1] + 1
    with TestClient(create_app(rt)) as client:
        listed = client.get("/api/set-aside", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).json()
        assert {(r["pass"], r["item"]) for r in listed} == {
            (PASS_NAME, POISON_FP),
            (FLUSH_PASS_NAME, "poisoned-group"),
        }
        assert all(r["error"] for r in listed)
        metrics = client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).text
        assert 'storyloom_set_aside_rows{pass="notifier"} 1.0' in metrics
        client.get(f"/login?token={ADMIN_TOKEN}", follow_redirects=False)  # (the overview reads the poison)
        page = client.get("/deliveries").text
        assert "Set aside by background passes" in page and POISON_FP in page and "poisoned-group" in page

    # The passes go on: the poison is not retried, a later alert flushes and is sent.
    with rt.db.begin() as conn:
        later = publish.fire(conn, AlertSignal("tool:timeout", {"plan_id": "plan_2"}, "later"), clock.now())
    assert Notifier(rt).tick().deliveries == 1
    assert asyncio.run(dispatcher.run_once()) == 1
    server.wait_for(2)
    assert [a["fingerprint"] for a in server.requests[1].json["alerts"]] == [later]


def test_an_alert_that_breaks_the_set_based_batch_is_isolated_and_the_rest_is_notified(
    db: Database, clock: FrozenClock, server: PrivateReceiver
) -> None:
    """A lone surrogate in a label value (valid JSON) stores as an escaped JSON string, but its group key
    (`group_by: ['...']`) cannot be written: the notifier's batch fails, is retried alert by alert, and
    only that alert waits."""
    alerting = {
        "receivers": [receiver("ops", server.url_for("/hooks/ops"))],
        "route": {"receiver": "ops", "group_by": ["..."], "group_wait": "0s"},
    }
    rt = Runtime(config=make_config(alerting=alerting), db=db, clock=clock)
    with rt.db.begin() as conn:
        signal = AlertSignal("tool:failed", {"plan_id": "plan_1", "tool": "\ud800"}, "poison")
        poison = publish.fire(conn, signal, clock.now())
        good = publish.fire(conn, AlertSignal("tool:failed", {"plan_id": "plan_1"}, "fine"), clock.now())

    result = Notifier(rt).tick()

    assert result.consumed == 2 and result.deliveries == 1
    with rt.db.read() as conn:
        carried = conn.execute(select(deliveries.c.fingerprints)).scalars().all()
        listed = set_aside.list_set_aside(conn, PASS_NAME)
    assert carried == [[good]]
    assert [(r["item"], "UnicodeEncodeError" in r["error"]) for r in listed] == [(poison, True)]
    assert Notifier(rt).tick().consumed == 0  # not retried pass after pass


def test_a_backlog_item_the_scheduler_cannot_judge_is_set_aside_and_the_others_are_claimed(
    db: Database, clock: FrozenClock
) -> None:
    rt = Runtime(config=make_config(), db=db, clock=clock)
    poisoned_plan, healthy_plan = seed_plan(rt), seed_plan(rt)
    with rt.db.begin() as conn:
        poisoned = (
            conn.execute(
                update(backlog_items)
                .where(backlog_items.c.plan_id == poisoned_plan, backlog_items.c.status == "pending")
                .values(inputs=5)  # not a list: the readiness check raises on it
                .returning(backlog_items.c.id)
            )
            .scalars()
            .all()
        )
    before = set_aside_count(rt, SCHEDULER_PASS)
    enqueued: list[str] = []
    scheduler = Scheduler(rt, lambda task_id, _provider, _first: enqueued.append(task_id))

    assert scheduler.claim_ready(clock.now()) == 1
    assert scheduler.claim_ready(clock.now()) == 0  # set aside once, not re-judged pass after pass

    with rt.db.read() as conn:
        claimed = {
            i["plan_id"] for p in (poisoned_plan, healthy_plan) for i in list_backlog(conn, p) if i["task_id"]
        }
        listed = set_aside.list_set_aside(conn, SCHEDULER_PASS)
    assert claimed == {healthy_plan}
    assert sorted(r["item"] for r in listed) == sorted(str(i) for i in poisoned)
    assert set_aside_count(rt, SCHEDULER_PASS) == before + len(poisoned)
