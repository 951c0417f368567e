"""A step that raises fails its item with `last_error` and `planner:phase-failed`, exactly once, even when the
database itself is what fails; `attempts` counts the attempts that ran.

Faults are real: the offline provider's `raise` mode (an unexpected, non-provider error) and database
triggers that reject a write (tests/support/faults.py).
"""

from __future__ import annotations

from typing import Any

import pytest
import structlog
from sqlalchemy import func, select

from storyloom.clock import FrozenClock
from storyloom.config import Config
from storyloom.pipeline.attempt import OK, RETRY
from storyloom.pipeline.dispatcher import ToolDispatcher
from storyloom.pipeline.providers import Providers
from storyloom.pipeline.runner import PhaseRunner
from storyloom.runtime import Runtime
from storyloom.server import prepare
from storyloom.store.db import Database
from storyloom.store.tables import alert_history, alerts, planner_executions, tasks, workflow_events
from tests.conftest import make_config
from tests.support.engine import item_statuses, running, seed_plan
from tests.support.faults import allow_writes, reject_writes
from tests.support.health_seed import item
from tests.support.plan_seed import seed_world, set_item
from tests.support.server import wait_for


def _config(*faults: dict[str, Any], attempts: int = 3) -> Config:
    return make_config(
        pipeline={
            "chapters": 1,
            "scenes_per_chapter": 1,
            "retry_backoff": "10ms",
            "max_phase_attempts": attempts,
        },
        llm={"faults": list(faults)},
    )


def _wait_status(rt: Runtime, plan_id: str, backlog_id: str, status: str) -> None:
    wait_for(
        lambda: item_statuses(rt, plan_id).get(backlog_id) == status,
        timeout=60,
        message=f"{backlog_id} {status}",
    )


def _phase_failed(rt: Runtime, backlog_id: str) -> dict[str, Any]:
    """The item's `planner:phase-failed` alert, its 'fired' changes and its `phase-failed` telemetry events."""
    with rt.db.read() as conn:
        alert = [
            dict(a)
            for a in conn.execute(
                select(alerts).where(alerts.c.alert_id == "planner:phase-failed")
            ).mappings()
            if a["labels"]["backlog_id"] == backlog_id
        ]
        fired = conn.execute(
            select(func.count())
            .select_from(alert_history)
            .where(
                alert_history.c.fingerprint.in_([a["fingerprint"] for a in alert]),
                alert_history.c.status == "firing",
            )
        ).scalar()
        reasons = [
            e["reason"]
            for e in conn.execute(
                select(workflow_events.c.payload)
                .where(workflow_events.c.kind == "fiction.backlog.telemetry")
                .order_by(workflow_events.c.id)
            ).scalars()
            if e["backlog_id"] == backlog_id
        ]
    return {"alerts": alert, "fired": fired, "reasons": reasons}


def _executions(rt: Runtime, backlog_id: str) -> list[Any]:
    with rt.db.read() as conn:
        return list(
            conn.execute(
                select(planner_executions.c.outcome, planner_executions.c.error)
                .where(planner_executions.c.backlog_id == backlog_id)
                .order_by(planner_executions.c.id)
            ).all()
        )


def test_a_raising_planner_call_is_retried_then_fails_the_item_with_phase_failed(db: Database) -> None:
    with running(db, _config({"phase": "world_bible", "mode": "raise"})) as rt:
        plan_id = seed_plan(rt)
        _wait_status(rt, plan_id, "world-bible", "failed")
        failed = item(rt, plan_id, "world-bible")
        executions = _executions(rt, "world-bible")
        recorded = _phase_failed(rt, "world-bible")
    assert [e.outcome for e in executions] == ["failed"] * 3
    assert all(e.error.startswith("unexpected error: InjectedBug: injected fault") for e in executions)
    assert failed["attempts"] == 3
    assert "InjectedBug: injected fault: world_bible world-bible attempt 3 raised" in failed["last_error"]
    assert [a["status"] for a in recorded["alerts"]] == ["firing"]
    assert recorded["fired"] == 1
    assert recorded["reasons"][-2:] == ["phase-start", "phase-failed"]


def test_a_database_error_in_a_step_fails_the_item_at_once(db: Database) -> None:
    reject_writes(
        db,
        "reject_vision_artifact",
        table="artifacts",
        event="INSERT",
        when="NEW.key = 'vision'",
        message="injected: disk quota exceeded",
    )
    with running(db, _config()) as rt:
        plan_id = seed_plan(rt)
        _wait_status(rt, plan_id, "vision-plan", "failed")
        failed = item(rt, plan_id, "vision-plan")
        executions = _executions(rt, "vision-plan")
        recorded = _phase_failed(rt, "vision-plan")
        with rt.db.read() as conn:
            task_status = conn.execute(
                select(tasks.c.status).where(tasks.c.task_id == failed["task_id"])
            ).scalar()
    # the attempt ran and succeeded; storing its output is what raised, and that is not retried
    assert [e.outcome for e in executions] == ["success"]
    assert failed["attempts"] == 1
    assert failed["last_error"].startswith("complete step raised ")
    assert "injected: disk quota exceeded" in failed["last_error"]
    assert "INSERT INTO" not in failed["last_error"]  # the driver's message, not the SQL
    assert task_status == "failed"
    assert [a["status"] for a in recorded["alerts"]] == ["firing"]
    assert "injected: disk quota exceeded" in recorded["alerts"][0]["description"]
    assert recorded["fired"] == 1
    assert recorded["reasons"].count("phase-failed") == 1


def test_a_start_step_that_raises_fails_the_pending_item(db: Database) -> None:
    reject_writes(
        db,
        "reject_task_start",
        table="tasks",
        event="UPDATE",
        when="NEW.status = 'running'",
        message="injected: cannot start",
    )
    with running(db, _config()) as rt:
        plan_id = seed_plan(rt)
        _wait_status(rt, plan_id, "vision-plan", "failed")
        failed = item(rt, plan_id, "vision-plan")
        recorded = _phase_failed(rt, "vision-plan")
    assert (
        failed["last_error"].startswith("start step raised ")
        and "injected: cannot start" in failed["last_error"]
    )
    assert failed["attempts"] == 0 and _executions(rt, "vision-plan") == []
    assert recorded["reasons"] == ["plan-created", "phase-start", "phase-failed"]
    assert recorded["fired"] == 1


def test_recording_the_failure_is_retried_through_a_database_error(db: Database) -> None:
    reject_writes(
        db,
        "reject_failed_status",
        table="backlog_items",
        event="UPDATE",
        when="NEW.status = 'failed'",
        message="injected: database unavailable",
    )
    with (
        structlog.testing.capture_logs() as logs,
        running(db, _config({"phase": "vision", "mode": "raise"}, attempts=1)) as rt,
    ):
        plan_id = seed_plan(rt)
        wait_for(
            lambda: any(entry["event"] == "recording a phase failure failed" for entry in logs),
            timeout=60,
            message="a failed try to record the failure",
        )
        assert item_statuses(rt, plan_id)["vision-plan"] == "in_progress"
        allow_writes(db, "reject_failed_status", table="backlog_items")
        _wait_status(rt, plan_id, "vision-plan", "failed")
        recorded = _phase_failed(rt, "vision-plan")
    assert "injected: database unavailable" in next(
        e["error"] for e in logs if e["event"] == "recording a phase failure failed"
    )
    assert recorded["fired"] == 1 and recorded["reasons"].count("phase-failed") == 1
    assert not any(entry["event"].startswith("phase failure not recorded") for entry in logs)


def test_a_failure_that_cannot_be_recorded_leaves_a_clear_log_line(db: Database) -> None:
    reject_writes(
        db,
        "reject_failed_status",
        table="backlog_items",
        event="UPDATE",
        when="NEW.status = 'failed'",
        message="injected: database unavailable",
    )
    with (
        structlog.testing.capture_logs() as logs,
        running(db, _config({"phase": "vision", "mode": "raise"}, attempts=1)) as rt,
    ):
        plan_id = seed_plan(rt)
        gave_up = wait_for(
            lambda: [e for e in logs if e["event"].startswith("phase failure not recorded")],
            timeout=60,
            message="the log line that says the failure was not recorded",
        )
        statuses = item_statuses(rt, plan_id)
        recorded = _phase_failed(rt, "vision-plan")
    tries = [e["try_number"] for e in logs if e["event"] == "recording a phase failure failed"]
    assert tries == [1, 2, 3, 4, 5]
    assert gave_up[0]["log_level"] == "error"
    assert gave_up[0]["phase_error"].startswith("unexpected error: InjectedBug")
    assert (
        "fail step raised" in gave_up[0]["cause"] and "injected: database unavailable" in gave_up[0]["cause"]
    )
    assert statuses["vision-plan"] == "in_progress"
    assert recorded["alerts"] == [] and recorded["fired"] == 0


@pytest.mark.parametrize("times", [1])
def test_an_attempt_that_raised_once_is_retried_and_the_item_completes(db: Database, times: int) -> None:
    with running(db, _config({"phase": "vision", "mode": "raise", "times": times})) as rt:
        plan_id = seed_plan(rt)
        _wait_status(rt, plan_id, "vision-plan", "complete")
        done = item(rt, plan_id, "vision-plan")
    assert [e.outcome for e in _executions(rt, "vision-plan")] == ["failed", "success"]
    assert done["attempts"] == 2


def test_an_attempt_step_run_again_after_a_crash_returns_what_it_recorded(db: Database) -> None:
    """DBOS re-runs a step whose result it had not stored yet; the attempt must not run a second time."""
    rt = Runtime(config=_config({"phase": "vision", "mode": "fail", "times": 1}), db=db, clock=FrozenClock())
    prepare(rt)
    world = seed_world(rt)
    task_id = set_item(rt, world.plan_id, "vision-plan", "pending", task_status="queued")
    assert task_id is not None
    runner = PhaseRunner(
        db,
        lambda: rt.config,
        rt.clock,
        ToolDispatcher(db, lambda: rt.config, rt.clock, Providers(lambda: rt.config)),
        "w-test",
    )
    runner.start(task_id)
    failed = runner.attempt(task_id, 1)
    # the crash came after the execution was recorded: the fault no longer applies to a fresh run
    assert runner.attempt(task_id, 1) == failed and failed.kind == RETRY
    succeeded = runner.attempt(task_id, 2)
    assert runner.attempt(task_id, 2) == succeeded and succeeded.kind == OK and succeeded.output
    assert [e.outcome for e in _executions(rt, "vision-plan")] == ["failed", "success"]
    assert item(rt, world.plan_id, "vision-plan")["attempts"] == 2
