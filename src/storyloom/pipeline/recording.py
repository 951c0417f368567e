"""What a planner attempt leaves behind: its `planner_executions` row, its transcript, the item's attempt
count, and the `planner:critique-exhausted` alert, in one transaction."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import Connection, insert, select, update

from storyloom.alerting.publish import AlertSignal, fire, resolve_matching
from storyloom.backlog.transitions import item_labels
from storyloom.domain.catalog import PLANNER_CRITIQUE_EXHAUSTED
from storyloom.pipeline.attempt import BLOCKED, CANCELLED, FATAL, OK, RETRY, AttemptOutcome, PlannerAttempt
from storyloom.store.db import Database
from storyloom.store.tables import backlog_items, planner_executions, tasks, transcripts


def _task_status(conn: Connection, task_id: str) -> str | None:
    return conn.execute(select(tasks.c.status).where(tasks.c.task_id == task_id)).scalar()


def record_attempt(
    db: Database, now: datetime, run: PlannerAttempt, result: AttemptOutcome
) -> AttemptOutcome:
    """Write the planner execution (every outcome) and its transcript; fire or resolve critique-exhausted.

    An attempt whose task was cancelled while it ran is recorded as cancelled, without its output.
    """
    kind, output, error = result.kind, result.output, result.error
    outcome = {OK: "success", RETRY: "failed", FATAL: "failed", BLOCKED: "failed"}[kind]
    if kind == OK and run.critique_status.exhausted:
        outcome = "partial"
    if error:
        run.diagnostics["error"] = error
    if outcome == "failed":
        run.diagnostics["kind"] = kind  # retry | fatal | blocked: what a re-run of this step returns
    task_id = run.task["task_id"]
    with db.begin() as conn:
        if _task_status(conn, task_id) == "cancelled":  # cancelled while the attempt ran: drop its output
            kind, outcome, output = CANCELLED, "cancelled", None
        exists = conn.execute(
            select(planner_executions.c.id).where(
                planner_executions.c.task_id == task_id, planner_executions.c.attempt == run.attempt
            )
        ).first()
        if exists is None:
            conn.execute(
                insert(planner_executions).values(
                    plan_id=run.item["plan_id"],
                    backlog_id=run.item["backlog_id"],
                    task_id=task_id,
                    attempt=run.attempt,
                    planner_name=run.spec.planner_name,
                    phase=run.spec.phase.value,
                    outcome=outcome,
                    latency_ms=(now - run.started).total_seconds() * 1000,
                    prompt_tokens=run.prompt_tokens,
                    completion_tokens=run.completion_tokens,
                    critique_status=run.critique_status.value,
                    critique_count=run.critique_count,
                    critique_tokens=run.critique_tokens,
                    provider=run.item["provider"],
                    model=run.item["model"],
                    agent_id=run.item["agent_id"],
                    persona_id=run.item["persona_id"],
                    error=error,
                    diagnostics=json.loads(json.dumps(run.diagnostics, default=str)),
                    started_at=run.started,
                    finished_at=now,
                )
            )
            conn.execute(
                update(backlog_items)
                .where(backlog_items.c.id == run.item["id"])
                .values(attempts=backlog_items.c.attempts + 1)
            )
            if run.transcript:
                conn.execute(
                    insert(transcripts),
                    [
                        {
                            "task_id": task_id,
                            "attempt": run.attempt,
                            "role": role,
                            "content": content[:200_000],
                            "created_at": now,
                        }
                        for role, content in run.transcript
                    ],
                )
        labels = item_labels(run.item, task_id)
        if kind != CANCELLED and run.critique_status.exhausted:
            fire(
                conn,
                AlertSignal(
                    PLANNER_CRITIQUE_EXHAUSTED,
                    {**labels, "budget": run.critique_status.budget_label},
                    f"critique budget ran out ({run.critique_status.value}) on {run.item['backlog_id']}",
                ),
                now,
            )
        elif kind == OK:
            resolve_matching(
                conn,
                PLANNER_CRITIQUE_EXHAUSTED,
                now,
                "a later run passed its critique",
                plan_id=run.item["plan_id"],
                backlog_id=run.item["backlog_id"],
            )
    return AttemptOutcome(kind, output=output, error=error)
