"""The notifier over a real database: changes → groups → timers → mutes → dedup → deliveries (outbox)."""

from __future__ import annotations

import base64
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import func, insert, select

from storyloom import signals
from storyloom.alerting import publish
from storyloom.alerting.notification import notification_from_json
from storyloom.alerting.notifier import LEASE_NAME, Notifier
from storyloom.alerting.publish import AlertSignal
from storyloom.alerting.reads import routes_for_alert
from storyloom.clock import FrozenClock
from storyloom.config import Config
from storyloom.domain.alerts import FIRING, RESOLVED
from storyloom.runtime import Runtime
from storyloom.store.db import Database
from storyloom.store.tables import (
    aggregation_groups,
    alert_changes,
    deliveries,
    group_members,
    leases,
    silences,
)
from tests.conftest import make_config

SECRET = "whsec_" + base64.b64encode(b"notifier-test-secret-0123456789").decode()
S = timedelta(seconds=1)
M = timedelta(minutes=1)
H = timedelta(hours=1)


def alerting_config(**route: Any) -> dict[str, Any]:
    root: dict[str, Any] = {
        "receiver": "ops",
        "group_by": ["alert_id", "plan_id"],
        "group_wait": "0s",
        "group_interval": "1m",
        "repeat_interval": "4h",
        "routes": [
            {"matchers": ['severity=~"error|critical"'], "receiver": "pager", "continue": True},
            {"receiver": "ops"},
        ],
    }
    root.update(route)
    return {
        "source": "storyloom",
        "receivers": [
            {
                "name": "ops",
                "url": "http://127.0.0.1:9000/ops",
                "secret_env": "NOTIFIER_TEST_SECRET",
                "routing_key": "fiction-ops",
            },
            {"name": "pager", "url": "http://127.0.0.1:9000/pager", "send_resolved": False},
        ],
        "route": root,
        "inhibit_rules": [
            {
                "source_matchers": ['alert_id="planner:provider-unavailable"'],
                "target_matchers": ['alert_id="planner:phase-failed"'],
                "equal": ["provider"],
            }
        ],
        "slo_thresholds": [{"matchers": ['alert_id="planner:phase-failed"'], "threshold": "15m"}],
    }


@pytest.fixture
def make_rt(db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Runtime]:
    monkeypatch.setenv("NOTIFIER_TEST_SECRET", SECRET)

    def build(**route: Any) -> Runtime:
        config: Config = make_config(alerting=alerting_config(**route), public_url="http://console.test")
        return Runtime(config=config, db=db, clock=clock)

    return build


@pytest.fixture
def rt(make_rt: Callable[..., Runtime]) -> Runtime:
    return make_rt()


def fire(rt: Runtime, alert_id: str = "planner:phase-failed", **labels: str) -> str:
    with rt.db.begin() as conn:
        return publish.fire(
            conn, AlertSignal(alert_id, {"plan_id": "plan_1", **labels}, "it broke"), rt.clock.now()
        )


def resolve(rt: Runtime, *fps: str) -> None:
    with rt.db.begin() as conn:
        publish.resolve(conn, fps, rt.clock.now())


def sent(rt: Runtime, receiver: str | None = None) -> list[dict[str, Any]]:
    query = select(deliveries).order_by(deliveries.c.created_at, deliveries.c.id)
    if receiver:
        query = query.where(deliveries.c.receiver == receiver)
    with rt.db.read() as conn:
        return [dict(r) for r in conn.execute(query).mappings()]


def test_a_firing_alert_becomes_one_pending_delivery_per_receiver(rt: Runtime, clock: FrozenClock) -> None:
    fp = fire(rt, provider="openai")
    result = Notifier(rt).tick()
    assert result.held and result.consumed == 1 and result.deliveries == 2
    rows = sent(rt)
    assert sorted(r["receiver"] for r in rows) == ["ops", "pager"]
    ops = next(r for r in rows if r["receiver"] == "ops")
    assert ops["status"] == "pending" and ops["alert_status"] == FIRING and ops["attempts"] == 0
    assert ops["next_attempt_at"] == clock.now() and ops["webhook_id"].startswith("msg_")
    assert ops["fingerprints"] == [fp] and ops["receiver_type"] == "webhook"
    body = ops["notification"]
    assert body["notification_id"] == ops["webhook_id"]
    assert body["receiver"] == "ops" and body["routing_key"] == "fiction-ops" and body["status"] == FIRING
    assert (
        body["environment"] == "pre-alpha" and body["source"] == "storyloom" and body["truncated_alerts"] == 0
    )
    assert body["group_labels"] == {"alert_id": "planner:phase-failed", "plan_id": "plan_1"}
    assert body["group_key"] == ops["group_key"]
    alert = body["alerts"][0]
    assert alert["fingerprint"] == fp and alert["severity"] == "error" and alert["ends_at"] is None
    assert alert["labels"]["provider"] == "openai" and alert["labels"]["source"] == "planner_runner"
    assert alert["slo_minutes"] == 15 and alert["slo_breached"] is False
    assert alert["runbook_url"] == "http://console.test/runbooks/planner:phase-failed"
    assert alert["console_url"] == f"http://console.test/alerts/{fp}"
    assert alert["starts_at"] == "2026-11-25T20:00:00Z"
    assert notification_from_json(body).alerts[0].fingerprint == fp  # the dispatcher can rebuild it
    assert SECRET not in str(rows)
    with rt.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(alert_changes)).scalar() == 0
        assert routes_for_alert(conn, fp) == ["pager", "ops"]  # routing order


def test_the_dispatcher_is_woken_after_commit(rt: Runtime) -> None:
    wait = signals.waiter("dispatch")
    wait(0)
    fire(rt)
    Notifier(rt).tick()
    assert wait(0)


def test_timers_group_wait_group_interval_and_repeat_interval(
    make_rt: Callable[..., Runtime], clock: FrozenClock
) -> None:
    rt = make_rt(group_wait="30s", routes=[])
    notifier = Notifier(rt)
    fire(rt, backlog_id="b1")
    assert notifier.tick().deliveries == 0  # waiting group_wait
    clock.advance(10 * S)
    fire(rt, backlog_id="b2")  # same group (alert_id, plan_id): batched into the first flush
    assert notifier.tick().deliveries == 0
    clock.advance(20 * S)
    assert notifier.tick().deliveries == 1
    assert len(sent(rt)[0]["fingerprints"]) == 2

    clock.advance(30 * S)
    fire(rt, backlog_id="b3")
    assert notifier.tick().deliveries == 0  # the next flush is group_interval after the last
    clock.advance(30 * S)
    assert notifier.tick().deliveries == 1
    assert len(sent(rt)[-1]["fingerprints"]) == 3

    for _ in range(3):  # nothing new: flushes every group_interval say nothing
        clock.advance(M)
        assert notifier.tick().deliveries == 0
    clock.advance(4 * H)
    assert notifier.tick().deliveries == 1  # repeat_interval elapsed
    assert len(sent(rt)) == 3


def test_groups_follow_group_by(rt: Runtime) -> None:
    fire(rt, "tool:failed", tool="a")
    fire(rt, "tool:failed", tool="b")
    fire(rt, "tool:failed", tool="c", plan_id="plan_2")
    Notifier(rt).tick()
    by_group = sorted(len(r["fingerprints"]) for r in sent(rt, "ops"))
    assert by_group == [1, 2]
    assert sent(rt, "pager") == []  # warnings do not page


def test_inhibition_mutes_the_target_while_the_source_fires(rt: Runtime, clock: FrozenClock) -> None:
    notifier = Notifier(rt)
    source = fire(rt, "planner:provider-unavailable", provider="openai", plan_id="")
    target = fire(rt, provider="openai")
    other = fire(rt, provider="anthropic", backlog_id="x")
    notifier.tick()
    carried = {fp for r in sent(rt, "ops") for fp in r["fingerprints"]}
    assert source in carried and other in carried and target not in carried

    resolve(rt, source)
    clock.advance(M)
    notifier.tick()
    last = [r for r in sent(rt, "ops") if r["group_key"].find("phase-failed") >= 0][-1]
    assert target in last["fingerprints"]


def silence_phase_failed(rt: Runtime, now: datetime, *, until: datetime) -> None:
    """A silence over `planner:phase-failed` from `now` to `until`, stored as the API stores one."""
    with rt.db.begin() as conn:
        conn.execute(
            insert(silences).values(
                id="sil_1",
                matchers=['alert_id="planner:phase-failed"'],
                starts_at=now,
                ends_at=until,
                comment="maintenance",
                created_by="test",
                created_at=now,
                updated_at=now,
            )
        )


def test_silence_mutes_and_its_expiry_unmutes(rt: Runtime, clock: FrozenClock) -> None:
    now = clock.now()
    silence_phase_failed(rt, now, until=now + H)
    notifier = Notifier(rt)
    fire(rt)
    notifier.tick()
    assert sent(rt) == []

    with rt.db.begin() as conn:
        conn.execute(silences.update().where(silences.c.id == "sil_1").values(ends_at=clock.now()))
    clock.advance(M)  # the muted group flushes again after group_interval
    notifier.tick()
    assert sorted(r["receiver"] for r in sent(rt)) == ["ops", "pager"]


def test_resolution_is_sent_with_send_resolved_and_not_without(rt: Runtime, clock: FrozenClock) -> None:
    notifier = Notifier(rt)
    fp = fire(rt)
    notifier.tick()
    clock.advance(10 * S)
    resolve(rt, fp)
    clock.advance(M)
    notifier.tick()
    ops = sent(rt, "ops")
    assert [r["alert_status"] for r in ops] == [FIRING, RESOLVED]
    resolved = ops[-1]["notification"]
    assert resolved["status"] == RESOLVED and resolved["alerts"][0]["ends_at"] is not None
    assert resolved["alerts"][0]["slo_breached"] is False
    assert len(sent(rt, "pager")) == 1  # send_resolved: false → no resolved-only notification
    with rt.db.read() as conn:
        assert routes_for_alert(conn, fp) == []  # resolved and told: pruned from its groups
        idle = conn.execute(select(aggregation_groups.c.next_flush_at)).scalars().all()
    assert idle == [None, None]
    clock.advance(H)
    assert notifier.tick().deliveries == 0


def next_flush(rt: Runtime) -> list[Any]:
    with rt.db.read() as conn:
        return list(conn.execute(select(aggregation_groups.c.next_flush_at)).scalars())


def test_a_quiet_group_is_not_evaluated_again_until_its_repeat(
    make_rt: Callable[..., Runtime], clock: FrozenClock
) -> None:
    rt = make_rt(routes=[])  # one group: alert_id, plan_id → ops
    notifier = Notifier(rt)
    start = clock.now()
    fp = fire(rt, backlog_id="b1")
    assert notifier.tick().deliveries == 1
    assert next_flush(rt) == [start + 4 * H]  # asleep until repeat_interval, on a group_interval tick
    for _ in range(5):
        clock.advance(M)
        assert notifier.tick().flushed == 0  # nothing changed: no flush every group_interval

    clock.advance(30 * S)
    joined = fire(rt, backlog_id="b2")  # a new alert re-arms the group on its next tick
    assert notifier.tick().flushed == 0
    clock.advance(30 * S)
    assert notifier.tick().deliveries == 1
    assert set(sent(rt)[-1]["fingerprints"]) == {fp, joined}

    resolve(rt, joined)  # so does a resolution (ops has send_resolved)
    clock.advance(M)
    assert notifier.tick().deliveries == 1
    assert sent(rt)[-1]["notification"]["alerts"][-1]["status"] == RESOLVED


def test_a_silence_ending_rearms_the_quiet_group_it_muted(rt: Runtime, clock: FrozenClock) -> None:
    now = clock.now()
    silence_phase_failed(rt, now, until=now + 10 * M + 30 * S)
    notifier = Notifier(rt)
    fire(rt)
    assert notifier.tick().flushed == 2 and sent(rt) == []  # muted in both groups
    assert next_flush(rt) == [now + 11 * M, now + 11 * M]  # the first tick after the silence ends
    clock.advance(10 * M)
    assert notifier.tick().flushed == 0
    clock.advance(M)
    assert notifier.tick().deliveries == 2
    assert sorted(r["receiver"] for r in sent(rt)) == ["ops", "pager"]


def test_a_restarted_notifier_does_not_notify_again(rt: Runtime, clock: FrozenClock) -> None:
    fire(rt)
    first = Notifier(rt)
    first.tick()
    first.stop()
    assert len(sent(rt)) == 2
    second = Notifier(rt)
    clock.advance(M)
    assert second.tick().deliveries == 0
    clock.advance(10 * M)
    assert second.tick().deliveries == 0
    assert len(sent(rt)) == 2


def test_changes_survive_a_notifier_that_never_ran(rt: Runtime) -> None:
    fire(rt)
    fire(rt, "tool:failed", tool="x")
    assert Notifier(rt, holder="later").tick().deliveries == 3


def test_a_second_holder_waits_for_the_lease(rt: Runtime, clock: FrozenClock) -> None:
    leader = Notifier(rt, holder="worker-a", lease_ttl=15 * S)
    follower = Notifier(rt, holder="worker-b", lease_ttl=15 * S)
    assert leader.tick().held
    fire(rt)
    result = follower.tick()
    assert not result.held and result.consumed == 0 and sent(rt) == []
    assert leader.tick().deliveries == 2

    fire(rt, "tool:failed", tool="x")
    clock.advance(16 * S)  # the leader died: its lease expired
    assert follower.tick().held
    assert len(sent(rt)) == 3
    assert not leader.tick().held
    with rt.db.read() as conn:
        assert conn.execute(select(leases.c.holder).where(leases.c.name == LEASE_NAME)).scalar() == "worker-b"


def test_stop_hands_the_lease_over_at_once(rt: Runtime) -> None:
    leader = Notifier(rt, holder="worker-a")
    leader.tick()
    leader.stop()
    assert Notifier(rt, holder="worker-b").tick().held


def test_a_reload_applies_to_the_next_tick(make_rt: Callable[..., Runtime], clock: FrozenClock) -> None:
    rt = make_rt()
    notifier = Notifier(rt)
    fp = fire(rt)
    notifier.tick()
    assert sorted(r["receiver"] for r in sent(rt)) == ["ops", "pager"]
    rt.alerting = make_rt(routes=[]).alerting  # only the root route (ops) is left
    clock.advance(M)
    notifier.tick()
    with rt.db.read() as conn:
        assert routes_for_alert(conn, fp) == ["ops"]
    # As in Alertmanager, a changed route is a new group, which tells its receiver once.
    assert [r["receiver"] for r in sent(rt)][2:] == ["ops"]
    fire(rt, "planner:recent-failures")
    notifier.tick()
    assert [r["receiver"] for r in sent(rt)][3:] == ["ops"]
    clock.advance(M)
    assert notifier.tick().deliveries == 0


def test_truncation_over_max_alerts_per_notification(
    db: Database, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NOTIFIER_TEST_SECRET", SECRET)
    cfg = alerting_config(routes=[])
    cfg["max_alerts_per_notification"] = 2
    rt = Runtime(config=make_config(alerting=cfg), db=db, clock=clock)
    for i in range(5):
        fire(rt, "tool:failed", tool=f"t{i}")
    Notifier(rt).tick()
    (row,) = sent(rt)
    assert len(row["fingerprints"]) == 2 and row["notification"]["truncated_alerts"] == 3


def test_batches_span_ticks(rt: Runtime) -> None:
    for i in range(5):
        fire(rt, "tool:failed", tool=f"t{i}", plan_id=f"p{i}")
    notifier = Notifier(rt, change_batch=2, flush_batch=2)
    results = [notifier.tick() for _ in range(4)]
    assert [r.consumed for r in results] == [2, 2, 1, 0]
    assert results[0].more
    assert len(sent(rt)) == 5
    with rt.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(group_members)).scalar() == 5


def test_the_thread_delivers_when_woken(rt: Runtime, db: Database) -> None:
    notifier = Notifier(rt, poll_interval=0.05)
    done = threading.Event()
    notifier.start()
    try:
        fire(rt)
        deadline = 200
        while deadline and len(sent(rt)) < 2:
            done.wait(0.02)
            deadline -= 1
        assert len(sent(rt)) == 2
    finally:
        notifier.stop()
    with rt.db.read() as conn:
        assert conn.execute(select(leases).where(leases.c.name == LEASE_NAME)).first() is None


def test_no_route_means_no_groups(db: Database, clock: FrozenClock) -> None:
    rt = Runtime(config=make_config(), db=db, clock=clock)
    fire(rt)
    assert Notifier(rt).tick().consumed == 1
    assert sent(rt) == []


def test_two_running_notifiers_never_send_twice(rt: Runtime) -> None:
    first = Notifier(rt, holder="worker-a", poll_interval=0.01)
    second = Notifier(rt, holder="worker-b", poll_interval=0.01)
    first.start()
    second.start()
    pause = threading.Event()
    try:
        for i in range(20):
            fire(rt, "tool:failed", tool=f"t{i}", plan_id=f"p{i}")
        for _ in range(500):
            if len(sent(rt)) >= 20:
                break
            pause.wait(0.01)
        pause.wait(0.1)  # room for a duplicate to show up, if there were one
    finally:
        first.stop()
        second.stop()
    rows = sent(rt)
    assert len(rows) == 20
    assert len({tuple(r["fingerprints"]) for r in rows}) == 20
