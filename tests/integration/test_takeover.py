"""Worker liveness: each worker beats; one live worker takes over a silent one's work, exactly once."""

from __future__ import annotations

from datetime import timedelta

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, update

from storyloom.api.app import create_app
from storyloom.clock import FrozenClock
from storyloom.domain import backlog as bl
from storyloom.engine.takeover import Liveness, worker_lease
from storyloom.runtime import Runtime
from storyloom.store.db import Database
from storyloom.store.events import WORKER_TAKEOVER
from storyloom.store.tables import deliveries, leases, tasks
from tests.conftest import make_config
from tests.support.deliveries import enqueue, receiver
from tests.support.health_seed import give_task, item, new_plan, set_item
from tests.support.plan_seed import events_of, heartbeat

TTL = timedelta(seconds=15)


def worker(db: Database, clock: FrozenClock, worker_id: str) -> Runtime:
    config = make_config(
        alerting={
            "receivers": [receiver("ops", "http://127.0.0.1:9/hook", secret_env=None)],
            "route": {"receiver": "ops"},
        }
    )
    rt = Runtime(config=config, db=db, clock=clock)
    rt.worker_id = worker_id
    return rt


class Recorder:
    """A recovery that records which executors it was asked for (DBOS is not running in these tests)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def __call__(self, executor_id: str) -> list[str]:
        self.asked.append(executor_id)
        return [f"wf-of-{executor_id}"]


def lease_of(db: Database, name: str) -> tuple[str, object] | None:
    with db.read() as conn:
        row = conn.execute(select(leases.c.holder, leases.c.expires_at).where(leases.c.name == name)).first()
    return (row.holder, row.expires_at) if row else None


def test_a_worker_beats_at_its_cadence_and_renews_one_lease(db: Database, clock: FrozenClock) -> None:
    rt = worker(db, clock, "w1")
    liveness = Liveness(rt, Recorder())
    liveness.tick(clock.now())
    assert lease_of(db, worker_lease("w1")) == ("w1", clock.now() + TTL)
    clock.advance(timedelta(seconds=1))
    liveness.tick(clock.now())  # before heartbeat_every (3s): no write
    assert lease_of(db, worker_lease("w1")) == ("w1", clock.now() - timedelta(seconds=1) + TTL)
    clock.advance(timedelta(seconds=2))
    liveness.tick(clock.now())
    assert lease_of(db, worker_lease("w1")) == ("w1", clock.now() + TTL)


def test_a_silent_worker_is_taken_over_once_and_its_work_handed_back(
    db: Database, clock: FrozenClock
) -> None:
    a, b = worker(db, clock, "a"), worker(db, clock, "b")
    recover_a, recover_b = Recorder(), Recorder()
    heartbeat(a, "dead", ttl=TTL)
    plan = new_plan(a)
    task_id = give_task(a, plan["id"], "vision-plan")
    set_item(a, plan["id"], "vision-plan", status=bl.IN_PROGRESS, worker_id="dead")
    with db.begin() as conn:
        conn.execute(update(tasks).where(tasks.c.task_id == task_id).values(worker_id="dead"))
        conn.execute(leases.insert().values(name="notifier", holder="dead", expires_at=clock.now() + TTL))
    claimed = enqueue(a, "ops")
    with db.begin() as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == claimed)
            .values(claimed_by="dead:4242:ab12/7", claim_expires_at=clock.now() + timedelta(minutes=2))
        )

    Liveness(a, recover_a).tick(clock.now())
    assert recover_a.asked == [], "a worker whose lease is unexpired is alive"

    clock.advance(TTL + timedelta(seconds=1))
    Liveness(a, recover_a).tick(clock.now())
    Liveness(b, recover_b).tick(clock.now())

    assert recover_a.asked == ["dead"] and recover_b.asked == []
    assert lease_of(db, worker_lease("dead")) is None
    assert lease_of(db, "notifier") is None, "the notifier lease is free at once, not at its expiry"
    with db.read() as conn:
        row = conn.execute(select(deliveries).where(deliveries.c.id == claimed)).mappings().one()
        task_worker = conn.execute(select(tasks.c.worker_id).where(tasks.c.task_id == task_id)).scalar()
        events = events_of(conn, WORKER_TAKEOVER)
    assert row["claimed_by"] is None and row["claim_expires_at"] is None
    assert item(a, plan["id"], "vision-plan")["worker_id"] == "a" and task_worker == "a"
    assert events == [
        {
            "worker_id": "dead",
            "taken_over_by": "a",
            "workflows": 1,
            "leases": 1,
            "deliveries": 1,
            "items": 1,
        }
    ]


def test_a_taker_that_dies_half_way_is_taken_over_again(db: Database, clock: FrozenClock) -> None:
    a, b = worker(db, clock, "a"), worker(db, clock, "b")
    heartbeat(a, "dead", ttl=TTL)
    clock.advance(TTL + timedelta(seconds=1))
    with db.begin() as conn:  # "a" claimed the lease, then died before recovering anything
        conn.execute(
            update(leases)
            .where(leases.c.name == worker_lease("dead"))
            .values(holder="a", expires_at=clock.now() + TTL)
        )
    recover_b = Recorder()
    Liveness(b, recover_b).tick(clock.now())
    assert recover_b.asked == [], "the claim is the taker's until it expires"
    clock.advance(TTL + timedelta(seconds=1))
    Liveness(b, recover_b).tick(clock.now())
    assert recover_b.asked == ["dead"], "the half-done takeover is redone once the taker's claim expired"
    assert lease_of(db, worker_lease("dead")) is None


def test_metrics_show_heartbeat_ages_and_takeovers_cluster_wide(db: Database, clock: FrozenClock) -> None:
    a = worker(db, clock, "a")
    heartbeat(a, "dead", ttl=TTL)
    Liveness(a, Recorder()).tick(clock.now())
    clock.advance(TTL + timedelta(seconds=4))
    with TestClient(create_app(a)) as client:
        before = _scrape(client)
        assert before["storyloom_worker_heartbeat_age_seconds"] == {"a": 19.0, "dead": 19.0}
        assert before["storyloom_worker_takeovers"] == {"": 0.0}
        Liveness(a, Recorder()).tick(clock.now())
        after = _scrape(client)
    assert after["storyloom_worker_heartbeat_age_seconds"] == {"a": 0.0}
    assert after["storyloom_worker_takeovers"] == {"": 1.0}


def _scrape(client: TestClient) -> dict[str, dict[str, float]]:
    text = client.get("/metrics").text
    return {
        family.name: {
            s.labels.get("worker", ""): s.value for s in family.samples if not s.name.endswith("_created")
        }
        for family in text_string_to_metric_families(text)
        if family.name.startswith("storyloom_worker_")
    }
