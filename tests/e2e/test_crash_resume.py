"""SIGKILL a real `storyloom run` in the middle of a phase; the restarted process finishes the plan
without re-running any phase that had completed."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from storyloom.store.db import Database
from storyloom.store.tables import planner_executions, tasks
from tests.support.server import ServerProcess, backlog_status, start_plan, wait_for

pytestmark = pytest.mark.slow


def test_sigkill_mid_phase_resumes_at_the_interrupted_step(tmp_path: Path) -> None:
    config = {
        "pipeline": {"chapters": 1, "scenes_per_chapter": 1},
        "llm": {"faults": [{"phase": "world_bible", "mode": "slow", "times": 1, "delay": "30s"}]},
    }
    server = ServerProcess(tmp_path / "data", config=config).start()
    try:
        plan_id = start_plan(server, "Crash", "A city that forgets every winter.")
        wait_for(
            lambda: backlog_status(server, plan_id).get("world-bible") == "in_progress",
            message="world-bible in progress",
        )
        db = Database(f"sqlite:///{tmp_path / 'data' / 'storyloom.db'}")
        with db.read() as conn:
            interrupted_task = conn.execute(
                select(tasks.c.task_id).where(tasks.c.backlog_id == "world-bible")
            ).scalar()
        server.kill()
    finally:
        server.stop()

    # without the fault: the interrupted attempt never finished, so it is attempt 1 again and would be slowed again
    restarted = ServerProcess(
        tmp_path / "data", config={**config, "llm": {"faults": []}}, port=server.port
    ).start()
    try:
        wait_for(
            lambda: (
                set(backlog_status(restarted, plan_id).values()) == {"complete"}
                and len(backlog_status(restarted, plan_id)) == 6
            ),
            timeout=90,
            message="plan complete after restart",
        )
        assert restarted.get(f"/api/fiction/plans/{plan_id}")["status"] == "complete"
        attempts = {
            i["backlog_id"]: i["attempts"] for i in restarted.get(f"/api/fiction/plans/{plan_id}/backlog")
        }
    finally:
        restarted.stop()

    with db.read() as conn:
        successes = dict(
            conn.execute(
                select(planner_executions.c.backlog_id, func.count())
                .where(planner_executions.c.outcome == "success")
                .group_by(planner_executions.c.backlog_id)
            ).all()
        )
        world_bible_tasks = (
            conn.execute(select(tasks.c.task_id).where(tasks.c.backlog_id == "world-bible")).scalars().all()
        )
    # every phase succeeded exactly once: vision, completed before the crash, was not run again
    assert successes == {item: 1 for item in successes} and len(successes) == 6
    # `attempts` counts attempts that ran: the one the kill cut off is not among them
    assert attempts == {item: 1 for item in successes}
    # the interrupted phase resumed inside its own workflow (same task), not as a new task
    assert world_bible_tasks == [interrupted_task]
    db.dispose()
