"""Ingested alerts end as in Alertmanager: a future endsAt fires until it passes without a re-send, no
endsAt means `resolve_timeout`, and the expiry sweep's resolution is notified where `send_resolved`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from storyloom.alerting.expiry import EXPIRED_REASON, AlertExpiry
from storyloom.alerting.notifier import Notifier
from storyloom.clock import FrozenClock
from storyloom.config import ConfigError
from storyloom.domain.alerts import FIRING, RESOLVED
from storyloom.runtime import Runtime
from storyloom.services.alerts import PostedAlert, get_alert, ingest_alerts
from storyloom.store.db import Database
from storyloom.store.tables import alert_history, alerts, deliveries
from tests.conftest import make_config

S = timedelta(seconds=1)
M = timedelta(minutes=1)
LABELS = {"alertname": "AlwaysFiring", "instance": "prom1"}


@pytest.fixture
def rt(db: Database, clock: FrozenClock) -> Runtime:
    alerting = {
        "resolve_timeout": "2m",
        "receivers": [
            {"name": "ops", "url": "http://127.0.0.1:9000/ops"},
            {"name": "pager", "url": "http://127.0.0.1:9000/pager", "send_resolved": False},
        ],
        "route": {
            "receiver": "ops",
            "group_by": ["alertname"],
            "group_wait": "0s",
            "group_interval": "1s",
            "routes": [{"receiver": "pager", "continue": True}, {"receiver": "ops"}],
        },
    }
    return Runtime(config=make_config(alerting=alerting), db=db, clock=clock)


def post(rt: Runtime, *batch: PostedAlert) -> dict[str, Any]:
    return ingest_alerts(rt.db, batch, rt.clock.now(), rt.config.alerting.resolve_timeout)


def status(rt: Runtime, fingerprint: str) -> str:
    with rt.db.read() as conn:
        return str(conn.execute(select(alerts.c.status).where(alerts.c.fingerprint == fingerprint)).scalar())


def sent(rt: Runtime) -> Sequence[tuple[str, str]]:
    with rt.db.read() as conn:
        rows = conn.execute(
            select(deliveries.c.receiver, deliveries.c.alert_status).order_by(deliveries.c.id)
        ).all()
    return [(r.receiver, r.alert_status) for r in rows]


def test_a_future_ends_at_fires_until_it_passes_and_a_resend_moves_it(
    rt: Runtime, clock: FrozenClock
) -> None:
    sweep = AlertExpiry(rt)
    [fp] = post(rt, PostedAlert(labels=LABELS, ends_at=clock.now() + 4 * S))["fired"]
    clock.advance(3 * S)
    assert sweep.sweep() == [] and status(rt, fp) == FIRING
    [again] = post(rt, PostedAlert(labels=LABELS, ends_at=clock.now() + 4 * S))["fired"]  # the re-send
    assert again == fp
    with rt.db.read() as conn:
        assert get_alert(conn, rt.alerting, fp, clock.now())["expires_at"] == "2026-11-25T20:00:07Z"
    clock.advance(3 * S)  # past the first endsAt, before the second
    assert sweep.sweep() == [] and status(rt, fp) == FIRING
    assert sweep.interval() == pytest.approx(1.0)  # capped: another process may write an earlier end
    clock.advance(S)
    assert sweep.sweep() == [fp] and status(rt, fp) == RESOLVED
    with rt.db.read() as conn:
        row = conn.execute(select(alerts).where(alerts.c.fingerprint == fp)).mappings().one()
        reasons = conn.execute(
            select(alert_history.c.reason)
            .where(alert_history.c.fingerprint == fp)
            .order_by(alert_history.c.id)
        ).scalars()
        assert row["ends_at"] == clock.now()  # resolved at its endsAt, as Alertmanager reports it
        assert list(reasons) == ["fired", EXPIRED_REASON]
    assert sweep.sweep() == []  # nothing left, and the next pass only reads


def test_no_ends_at_resolves_after_resolve_timeout(rt: Runtime, clock: FrozenClock) -> None:
    sweep = AlertExpiry(rt, max_wait=600.0)
    [fp] = post(rt, PostedAlert(labels=LABELS))["fired"]
    assert sweep.sweep() == [] and sweep.interval() == pytest.approx(120.0)  # sleeps until the end
    clock.advance(2 * M - S)
    assert sweep.sweep() == []
    clock.advance(S)
    assert sweep.sweep() == [fp]


def test_a_past_ends_at_resolves_at_once(rt: Runtime, clock: FrozenClock) -> None:
    [fp] = post(rt, PostedAlert(labels=LABELS, ends_at=clock.now() + M))["fired"]
    assert post(rt, PostedAlert(labels=LABELS, ends_at=clock.now() - S))["resolved"] == [fp]
    assert status(rt, fp) == RESOLVED


def test_a_sweep_resolves_expired_alerts_in_batches(rt: Runtime, clock: FrozenClock) -> None:
    soon = [PostedAlert(labels={**LABELS, "instance": f"i{n}"}, ends_at=clock.now() + S) for n in range(50)]
    later = PostedAlert(labels={**LABELS, "instance": "later"}, ends_at=clock.now() + M)
    fired = post(rt, *soon, later)["fired"]
    clock.advance(S)
    sweep = AlertExpiry(rt, batch=30)
    first = sweep.sweep()
    assert len(first) == 30 and sweep.interval() == 0.0  # a full batch: the next pass goes on at once
    assert sorted(first + sweep.sweep()) == sorted(fired[:50])
    assert status(rt, fired[-1]) == FIRING
    assert sweep.run_pass() is False


def test_the_expiry_resolution_is_notified_where_send_resolved(rt: Runtime, clock: FrozenClock) -> None:
    notifier = Notifier(rt)
    post(rt, PostedAlert(labels=LABELS, ends_at=clock.now() + 4 * S))
    notifier.tick()
    assert sorted(sent(rt)) == [("ops", FIRING), ("pager", FIRING)]
    clock.advance(5 * S)
    AlertExpiry(rt).sweep()
    notifier.tick()
    assert sorted(sent(rt)) == [("ops", FIRING), ("ops", RESOLVED), ("pager", FIRING)]


def test_resolve_timeout_must_be_positive() -> None:
    with pytest.raises(ConfigError) as refused:
        make_config(alerting={"resolve_timeout": "0s"})
    assert refused.value.problems == ["alerting.resolve_timeout: must be longer than 0s"]
