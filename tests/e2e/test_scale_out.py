"""Scale-out on PostgreSQL with real processes: one `storyloom api` and two `storyloom worker`s. A worker
killed with SIGKILL and never restarted is taken over by the live one: a phase it was running finishes
exactly once, inside the same task; the notifier it was running goes on, and no acknowledged alert is lost."""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from storyloom.store.db import Database
from storyloom.store.events import WORKER_TAKEOVER
from storyloom.store.tables import backlog_items, leases, planner_executions, tasks
from tests.support.plan_seed import events_of
from tests.support.postgres import fresh_postgres
from tests.support.receiver_process import ReceiverProcess
from tests.support.server import ServerProcess, backlog_status, free_port, start_plan, wait_for

pytestmark = pytest.mark.slow

CONFIG: dict[str, Any] = {
    "pipeline": {"chapters": 1, "scenes_per_chapter": 1},
    "llm": {"faults": [{"phase": "world_bible", "mode": "slow", "times": 1, "delay": "60s"}]},
    "cluster": {"heartbeat_every": "1s", "takeover_after": "5s"},
}


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_postgres("storyloom_scale") as url:
        yield url


def _live_workers(db: Database) -> set[str]:
    with db.read() as conn:
        return set(conn.execute(select(leases.c.holder).where(leases.c.name.like("worker:%"))).scalars())


def test_a_killed_worker_is_taken_over_and_its_phase_finishes_once(tmp_path: Path, pg_url: str) -> None:
    db = Database(pg_url)
    api = ServerProcess(tmp_path / "api", config=CONFIG, role="api", database_url=pg_url).start()
    workers = {
        name: ServerProcess(
            tmp_path / name,
            config=CONFIG,
            role="worker",
            database_url=pg_url,
            env={"STORYLOOM_WORKER_ID": name},
        ).start(wait=False)
        for name in ("w1", "w2")
    }
    try:
        wait_for(lambda: _live_workers(db) == {"w1", "w2"}, timeout=60, message="both workers beating")
        plan_id = start_plan(api, "Relay", "Two lighthouses trade one keeper.")

        def world_bible_owner() -> str | None:
            with db.read() as conn:
                row = conn.execute(
                    select(backlog_items.c.status, backlog_items.c.worker_id, backlog_items.c.task_id).where(
                        backlog_items.c.plan_id == plan_id, backlog_items.c.backlog_id == "world-bible"
                    )
                ).one()
            return row.worker_id if row.status == "in_progress" and row.worker_id else None

        victim = wait_for(world_bible_owner, timeout=60, message="world-bible running on a worker")
        survivor = "w2" if victim == "w1" else "w1"
        with db.read() as conn:
            interrupted_task = conn.execute(
                select(tasks.c.task_id).where(tasks.c.plan_id == plan_id, tasks.c.backlog_id == "world-bible")
            ).scalar_one()
        workers[victim].kill()
        killed_at = time.monotonic()

        def takeover() -> dict[str, Any] | None:
            with db.read() as conn:
                found = [e for e in events_of(conn, WORKER_TAKEOVER) if e["worker_id"] == victim]
            return found[0] if found else None

        event = wait_for(takeover, timeout=30, message=f"{survivor} taking over {victim} within 30 s")
        took = time.monotonic() - killed_at
        assert event["taken_over_by"] == survivor and event["workflows"] >= 1, event
        wait_for(
            lambda: (
                len(backlog_status(api, plan_id)) == 6
                and set(backlog_status(api, plan_id).values()) == {"complete"}
            ),
            timeout=120,
            message="the plan completing on the surviving worker",
        )
        with db.read() as conn:
            successes = dict(
                conn.execute(
                    select(planner_executions.c.backlog_id, func.count())
                    .where(planner_executions.c.plan_id == plan_id, planner_executions.c.outcome == "success")
                    .group_by(planner_executions.c.backlog_id)
                ).all()
            )
            world_bible_tasks = (
                conn.execute(
                    select(tasks.c.task_id).where(
                        tasks.c.plan_id == plan_id, tasks.c.backlog_id == "world-bible"
                    )
                )
                .scalars()
                .all()
            )
        assert successes == dict.fromkeys(successes, 1) and len(successes) == 6, successes
        assert world_bible_tasks == [interrupted_task], "the phase resumed inside its own task's workflow"
        print(f"takeover {took:.1f}s after the kill")
    finally:
        for process in (*workers.values(), api):
            process.stop()
        db.dispose()


def test_killing_the_notifier_lease_holder_mid_storm_loses_no_alert(tmp_path: Path, pg_url: str) -> None:
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    receiver = ReceiverProcess(free_port(), tmp_path / "received.jsonl", secret=secret).start()
    config = {
        **CONFIG,
        "alerting": {
            "receivers": [{"name": "ops", "url": receiver.url, "secret_env": "OPS_SECRET"}],
            "route": {"receiver": "ops", "group_by": ["..."], "group_wait": "0s", "group_interval": "1s"},
        },
    }
    env = {"OPS_SECRET": secret}
    db = Database(pg_url)
    api = ServerProcess(tmp_path / "api", config=config, role="api", database_url=pg_url, env=env).start()
    workers = {
        name: ServerProcess(
            tmp_path / name,
            config=config,
            role="worker",
            database_url=pg_url,
            env={**env, "STORYLOOM_WORKER_ID": name},
        ).start(wait=False)
        for name in ("w1", "w2")
    }
    storm = [f"storm-{n}" for n in range(600)]
    try:
        wait_for(lambda: _live_workers(db) == {"w1", "w2"}, timeout=60, message="both workers beating")
        batches = [storm[i : i + 100] for i in range(0, len(storm), 100)]
        for batch in batches[:3]:
            _ingest(api, batch)
        holder = wait_for(
            lambda: _lease_holder(db, "notifier"), timeout=30, message="a notifier lease holder"
        )
        workers[holder].kill()
        for batch in batches[3:]:
            _ingest(api, batch)
        wait_for(
            lambda: set(storm) <= _received_alertnames(receiver),
            timeout=90,
            message="every acknowledged alert at the receiver after the notifier's holder died",
        )
        assert _lease_holder(db, "notifier") not in (None, holder)
        with db.read() as conn:
            (event,) = [e for e in events_of(conn, WORKER_TAKEOVER) if e["worker_id"] == holder]
        assert event["leases"] >= 1, "the takeover freed the notifier lease before its own expiry"
    finally:
        for process in (*workers.values(), api):
            process.stop()
        receiver.stop()
        db.dispose()


def _ingest(api: ServerProcess, names: list[str]) -> None:
    response = api.post("/api/v2/alerts", [{"labels": {"alertname": name, "job": "storm"}} for name in names])
    assert response.status_code == 200, response.text


def _lease_holder(db: Database, name: str) -> str | None:
    with db.read() as conn:
        return conn.execute(select(leases.c.holder).where(leases.c.name == name)).scalar()


def _received_alertnames(receiver: ReceiverProcess) -> set[str]:
    return {alert["labels"].get("alertname") or alert["alert_id"] for _, alert in receiver.alerts()}
