"""Many processes, the same guarantees: 2 `storyloom api` + 3 `storyloom worker` on one PostgreSQL run 50
plans with a failing phase in each. Every phase succeeds exactly once, every plan's failure reaches the
receiver once and its resolution once (a webhook-id never repeats without a retry), and the scheduled
health evaluation runs once per tick across the cluster."""

from __future__ import annotations

import base64
import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, text

from storyloom.store.db import Database
from storyloom.store.tables import backlog_items, leases, planner_executions
from tests.support.postgres import fresh_postgres
from tests.support.receiver_process import ReceiverProcess
from tests.support.server import ServerProcess, free_port, seed_author, start_plan, wait_for

pytestmark = pytest.mark.slow

PLANS = 50
ITEMS_PER_PLAN = 6  # vision, world bible, iteration, chapter, scroll, scene


@pytest.fixture
def pg_url() -> Iterator[str]:
    with fresh_postgres("storyloom_cluster") as url:
        yield url


def _config(receiver_url: str) -> dict[str, Any]:
    return {
        "pipeline": {
            "chapters": 1,
            "scenes_per_chapter": 1,
            "retry_backoff": "10ms",
            "max_phase_attempts": 2,
        },
        "llm": {"faults": [{"phase": "scroll_refiner", "mode": "fail", "times": 2}]},
        "health": {"evaluate_every": "1s"},
        "cluster": {"heartbeat_every": "1s", "takeover_after": "5s"},
        "alerting": {
            "receivers": [
                {
                    "name": "ops",
                    "url": receiver_url,
                    "secret_env": "OPS_SECRET",
                    "retry": {"schedule": ["0s", "1s"]},
                }
            ],
            "route": {
                "receiver": "ops",
                "group_by": ["alert_id", "plan_id"],
                "group_wait": "0s",
                "group_interval": "1s",
                "repeat_interval": "4h",
            },
        },
    }


def test_two_apis_and_three_workers_keep_every_guarantee(tmp_path: Path, pg_url: str) -> None:
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    receiver = ReceiverProcess(free_port(), tmp_path / "received.jsonl", secret=secret).start()
    config = _config(receiver.url)
    env = {"OPS_SECRET": secret}
    db = Database(pg_url)
    apis = [
        ServerProcess(tmp_path / f"api{n}", config=config, role="api", database_url=pg_url, env=env).start()
        for n in (1, 2)
    ]
    metrics_ports = {f"w{n}": free_port() for n in (1, 2, 3)}
    workers = [
        ServerProcess(
            tmp_path / name,
            config=config,
            role="worker",
            database_url=pg_url,
            env={**env, "STORYLOOM_WORKER_ID": name},
            extra_args=["--metrics-port", str(port)],
        ).start(wait=False)
        for name, port in metrics_ports.items()
    ]
    started = time.monotonic()
    try:
        wait_for(lambda: _beating(db) == {"w1", "w2", "w3"}, timeout=90, message="three workers beating")
        persona_id, agent_id = seed_author(apis[0])
        author = (persona_id, agent_id)
        plan_ids = [
            start_plan(apis[n % 2], f"Plan {n}", f"Premise number {n}.", author) for n in range(PLANS)
        ]
        wait_for(
            lambda: _statuses(db).get("failed") == PLANS,
            timeout=240,
            message=f"the scroll of each of the {PLANS} plans failing",
        )
        wait_for(
            lambda: len(_phase_failed(receiver, "firing")) == PLANS,
            timeout=60,
            message="one firing notification per plan",
        )
        for n, plan_id in enumerate(plan_ids):
            response = apis[(n + 1) % 2].post(
                f"/api/fiction/plans/{plan_id}/backlog/scroll-1/resume",
                {"agent_id": agent_id, "provider": "offline", "model": "offline-test"},
            )
            assert response.status_code == 202, response.text
        wait_for(
            lambda: _statuses(db) == {"complete": PLANS * ITEMS_PER_PLAN},
            timeout=240,
            message="every plan complete",
        )
        wait_for(
            lambda: len(_phase_failed(receiver, "resolved")) == PLANS,
            timeout=60,
            message="one resolved notification per plan",
        )
        elapsed = time.monotonic() - started

        def counted_as_received() -> dict[str, float] | None:
            """The workers' delivered counters once they add up to what the receiver got (sends may still trail)."""
            counted = {name: _delivered_counter(port, name) for name, port in metrics_ports.items()}
            return counted if sum(counted.values()) == len(receiver.received()) else None

        delivered = wait_for(
            counted_as_received, timeout=60, message="the workers' counters to match the receiver"
        )
    finally:
        for process in (*workers, *apis):
            process.stop()
        receiver.stop()

    firing, resolved = _phase_failed(receiver, "firing"), _phase_failed(receiver, "resolved")
    assert Counter(firing).most_common(1)[0][1] == 1 and set(firing) == set(plan_ids)
    assert Counter(resolved).most_common(1)[0][1] == 1 and set(resolved) == set(plan_ids)
    records = receiver.received()
    assert all(r["signature_valid"] and r["status"] == 200 for r in records)
    assert sum(delivered.values()) >= PLANS * 2, f"each worker counts its own sends: {delivered}"
    webhook_ids = Counter(r["headers"]["webhook-id"] for r in records)
    assert webhook_ids.most_common(1)[0][1] == 1, (
        "a webhook-id repeats only after a retry, and none was needed"
    )

    with db.read() as conn:
        successes = conn.execute(
            select(planner_executions.c.plan_id, planner_executions.c.backlog_id, func.count())
            .where(planner_executions.c.outcome == "success")
            .group_by(planner_executions.c.plan_id, planner_executions.c.backlog_id)
        ).all()
        evaluations = conn.execute(
            text(
                "SELECT o.workflow_uuid, count(*) FROM dbos.operation_outputs o "
                "WHERE o.function_name = 'storyloom.health.evaluate' GROUP BY o.workflow_uuid"
            )
        ).all()
    db.dispose()
    assert len(successes) == PLANS * ITEMS_PER_PLAN and {row[2] for row in successes} == {1}, (
        "each phase once"
    )
    assert evaluations and {count for _, count in evaluations} == {1}, "each tick's evaluation ran once"
    assert len(evaluations) <= elapsed + 2, (
        f"{len(evaluations)} evaluations in {elapsed:.0f} s: more than one per tick"
    )


def _delivered_counter(port: int, worker: str) -> float:
    """`storyloom_notifications_total{result="delivered"}` as one worker serves it, summed over receivers."""
    text_ = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    samples = [
        sample
        for family in text_string_to_metric_families(text_)
        if family.name == "storyloom_notifications"
        for sample in family.samples
        if sample.name.endswith("_total") and sample.labels["result"] == "delivered"
    ]
    assert all(sample.labels["worker"] == worker for sample in samples), samples
    return sum(sample.value for sample in samples)


def _beating(db: Database) -> set[str]:
    with db.read() as conn:
        return set(conn.execute(select(leases.c.holder).where(leases.c.name.like("worker:%"))).scalars())


def _statuses(db: Database) -> dict[str, int]:
    with db.read() as conn:
        return dict(
            conn.execute(select(backlog_items.c.status, func.count()).group_by(backlog_items.c.status)).all()
        )


def _phase_failed(receiver: ReceiverProcess, status: str) -> list[str]:
    """The plan id of each `planner:phase-failed` alert with `status` received, one per alert in a notification."""
    return [
        alert["labels"]["plan_id"]
        for body, alert in receiver.alerts()
        if alert["alert_id"] == "planner:phase-failed" and alert["status"] == status
    ]
