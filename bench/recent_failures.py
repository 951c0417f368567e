"""What counting only unfixed failures costs: the `planner:recent-failures` query, which joins each failed
execution of the window to its backlog item (skipping items completed or cancelled since), against the
previous query that counted every failed execution of the window (the peer), on the same SQLite file.

    .venv/bin/python bench/recent_failures.py                  # 200 plans x 15 items, 300,000 executions
    .venv/bin/python bench/recent_failures.py --executions 3000 --runs 3

Executions are spread over the last 24 h (the default window) so every one of them is in the window:
the worst case. A third failed; items are complete, failed, pending or cancelled in turn.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from storyloom.health.execution_queries import recent_failures_by_plan
from storyloom.services.catalog import create_agent, create_persona
from storyloom.services.plans import PlanRequest, create_plan
from storyloom.store.db import Database
from storyloom.store.migrate import upgrade
from storyloom.store.tables import backlog_items, planner_executions

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
STATUSES = ("complete", "failed", "pending", "cancelled")


def every_failure_by_plan(conn: Connection, since: datetime) -> list[Any]:
    """The peer: the previous query, every failed execution of the window per plan."""
    pe = planner_executions.c
    return list(
        conn.execute(
            select(pe.plan_id, func.count(), func.max(pe.finished_at))
            .where(pe.outcome == "failed", pe.finished_at >= since)
            .group_by(pe.plan_id)
        )
    )


def seed(db: Database, plans: int, items: int, executions: int) -> None:
    with db.begin() as conn:
        persona = create_persona(conn, name="Bench", kind="author", summary=None, now=NOW)
        agent = create_agent(
            conn, name="Bench", persona_id=persona["id"], provider="offline", model="m", now=NOW
        )
        plan_ids = []
        for p in range(plans):
            request = PlanRequest(name=f"P{p}", premise="A bench premise.", persona_id=persona["id"])
            plan = create_plan(
                conn,
                request,
                default_provider="offline",
                default_model="m",
                max_premise_chars=20_000,
                now=NOW,
            )
            plan_ids.append(plan["id"])
        conn.execute(
            insert(backlog_items),
            [
                {
                    "plan_id": plan_id,
                    "backlog_id": f"bench-{i}",
                    "description": "bench item",
                    "phase": "scene_weaver",
                    "status": STATUSES[(p + i) % len(STATUSES)],
                    "inputs": [],
                    "outputs": [],
                    "agent_id": agent["id"],
                    "persona_id": persona["id"],
                    "provider": "offline",
                    "model": "m",
                    "attempts": 1,
                    "branch_slug": "main",
                    "priority": 0,
                    "created_at": NOW,
                    "updated_at": NOW,
                }
                for p, plan_id in enumerate(plan_ids)
                for i in range(items)
            ],
        )
        conn.execute(
            update(backlog_items)
            .where(backlog_items.c.backlog_id.not_like("bench-%"))
            .values(status="complete")
        )
        conn.execute(
            insert(planner_executions),
            [
                {
                    "plan_id": plan_ids[n % plans],
                    "backlog_id": f"bench-{(n // plans) % items}",
                    "task_id": f"task_bench_{n}",
                    "attempt": 1,
                    "planner_name": "Scene Weaver",
                    "phase": "scene_weaver",
                    "outcome": "failed" if n % 3 == 0 else "success",
                    "latency_ms": 10.0,
                    "critique_status": "idle",
                    "provider": "offline",
                    "model": "m",
                    "agent_id": agent["id"],
                    "persona_id": persona["id"],
                    "diagnostics": {},
                    "started_at": NOW - timedelta(seconds=(n * 86_000) // executions + 1),
                    "finished_at": NOW - timedelta(seconds=(n * 86_000) // executions),
                }
                for n in range(executions)
            ],
        )


def timed(
    db: Database, query: Callable[[Connection, datetime], list[Any]], runs: int
) -> tuple[list[float], int]:
    times = []
    found = 0
    with db.read() as conn:
        for _ in range(runs):
            started = time.perf_counter()
            found = len(query(conn, NOW - timedelta(hours=24)))
            times.append((time.perf_counter() - started) * 1000)
    return times, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plans", type=int, default=200)
    parser.add_argument("--items", type=int, default=15, help="items per plan")
    parser.add_argument("--executions", type=int, default=300_000)
    parser.add_argument("--runs", type=int, default=15, help="timed runs of each query, alternating")
    args = parser.parse_args()
    db = Database(f"sqlite:///{Path(tempfile.mkdtemp(prefix='storyloom-bench-failures-')) / 'storyloom.db'}")
    upgrade(db)
    started = time.perf_counter()
    seed(db, args.plans, args.items, args.executions)
    print(
        f"seeded {args.plans} plans x {args.items} items, {args.executions:,} executions in "
        f"{time.perf_counter() - started:.1f}s"
    )
    unfixed: list[float] = []
    every: list[float] = []
    for _ in range(args.runs):  # alternate, so load changes hit both alike
        times, plans_unfixed = timed(db, recent_failures_by_plan, 1)
        unfixed += times
        times, plans_any = timed(db, every_failure_by_plan, 1)
        every += times
    a, b = statistics.median(unfixed), statistics.median(every)
    print(
        f"unfixed failures (recent_failures_by_plan): median {a:.1f} ms, max {max(unfixed):.1f} ms, "
        f"{plans_unfixed} plans with unfixed failures"
    )
    print(
        f"every failure (peer, the previous query):   median {b:.1f} ms, max {max(every):.1f} ms, "
        f"{plans_any} plans with failures"
    )
    print(f"ratio unfixed/every: {a / b:.2f}x over {args.runs} alternating runs")


if __name__ == "__main__":
    main()
