"""Several plans on one engine at once, bounded by `pipeline.concurrency` and `pipeline.provider_rate_limits`.

The bounds are checked on what was recorded: planner executions' start and finish times (no more than
`concurrency` phases ever overlapped) and DBOS's own dequeue times (no more than the rate limit started
within any one-second window), not on how long the run took."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dbos import DBOS
from sqlalchemy import select

from storyloom.runtime import Runtime
from storyloom.services.plans import get_plan
from storyloom.store.db import Database
from storyloom.store.tables import planner_executions, tasks
from tests.conftest import make_config
from tests.support.engine import item_statuses, running, seed_plan
from tests.support.server import wait_for

PLANS = 3
CONCURRENCY = 2


def _all_complete(rt: Runtime, plan_ids: list[str]) -> bool:
    with rt.db.read() as conn:
        return all(get_plan(conn, plan_id)["status"] == "complete" for plan_id in plan_ids)


def _where_it_stands(rt: Runtime, plan_ids: list[str]) -> dict[str, Any]:
    """Items, tasks and DBOS workflows, for the message of a run that never finished."""
    with rt.db.read() as conn:
        task_rows = conn.execute(select(tasks.c.task_id, tasks.c.status, tasks.c.enqueued_at)).all()
    return {
        "items": {plan_id: item_statuses(rt, plan_id) for plan_id in plan_ids},
        "tasks": [tuple(row) for row in task_rows],
        "workflows": [(w.workflow_id, w.status, w.queue_name, w.priority) for w in DBOS.list_workflows()],
    }


def _most_at_once(intervals: list[tuple[datetime, datetime]]) -> int:
    """The largest number of [start, finish] intervals in progress at one moment (a finish frees its slot
    before a start at the same instant takes one)."""
    edges = sorted([(start, 1) for start, _ in intervals] + [(finish, -1) for _, finish in intervals])
    running = most = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def test_several_plans_run_at_once_to_completion_never_above_the_concurrency(db: Database) -> None:
    config = make_config(
        pipeline={"concurrency": CONCURRENCY, "chapters": 2, "scenes_per_chapter": 1},
        llm={"faults": [{"phase": "*", "mode": "slow", "delay": "150ms"}]},  # phases long enough to overlap
    )
    with running(db, config) as rt:
        plan_ids = [seed_plan(rt, name=f"Salt Roads {n}") for n in range(PLANS)]
        try:
            wait_for(lambda: _all_complete(rt, plan_ids), timeout=120, message="every plan complete")
        except AssertionError as stuck:
            raise AssertionError(f"{stuck}; where it stands: {_where_it_stands(rt, plan_ids)}") from None
        for plan_id in plan_ids:
            assert set(item_statuses(rt, plan_id).values()) == {"complete"}
        with rt.db.read() as conn:
            executions = conn.execute(
                select(
                    planner_executions.c.plan_id,
                    planner_executions.c.started_at,
                    planner_executions.c.finished_at,
                )
            ).all()

    assert {e.plan_id for e in executions} == set(plan_ids)
    # the bound held, and was reached: phases did run side by side
    assert _most_at_once([(e.started_at, e.finished_at) for e in executions]) == CONCURRENCY
    # ... and side by side across plans, not one plan after another
    first_finish = {p: min(e.finished_at for e in executions if e.plan_id == p) for p in plan_ids}
    last_start = {p: max(e.started_at for e in executions if e.plan_id == p) for p in plan_ids}
    assert all(first_finish[a] < last_start[b] for a in plan_ids for b in plan_ids if a != b)


def test_a_provider_rate_limit_bounds_how_many_phases_start_per_second(db: Database) -> None:
    limit = 2
    config = make_config(
        pipeline={"chapters": 1, "scenes_per_chapter": 1, "provider_rate_limits": {"offline": limit}}
    )
    with running(db, config) as rt:
        plan_id = seed_plan(rt)
        wait_for(lambda: _all_complete(rt, [plan_id]), timeout=120, message="the plan complete")
        starts = sorted(
            w.dequeued_at
            for w in DBOS.list_workflows(queue_name="phases-offline")
            if w.dequeued_at is not None
        )

    assert len(starts) >= len(item_statuses(rt, plan_id)) == 6
    # any `limit + 1` consecutive dequeues span at least the limiter's one-second period
    assert all(later - earlier >= 1000 for earlier, later in zip(starts, starts[limit:], strict=False))
