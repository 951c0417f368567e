"""The planner runner: one backlog item's run, split into the steps the engine makes durable.

start → attempt → complete | block | fail. An attempt loads its context (`context.py`), runs (`attempt.py`:
LLM through the dispatcher, validation, critique) and is recorded (`recording.py`), every outcome.
Each step is its own transaction and is idempotent by `task_id`, so a step re-run after a crash is harmless.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Connection, insert, select, update

from storyloom.backlog.transitions import change_status, fire_item_alert, resolve_item_alerts
from storyloom.clock import Clock
from storyloom.config import Config
from storyloom.domain import backlog as bl
from storyloom.domain import phases as ph
from storyloom.domain.catalog import PLANNER_PHASE_BLOCKED, PLANNER_PHASE_FAILED
from storyloom.pipeline import effects
from storyloom.pipeline.attempt import CANCELLED, FATAL, AttemptOutcome, PlannerAttempt
from storyloom.pipeline.context import (
    active_template,
    critique_usage,
    lore_gate,
    prompt_context,
    recorded_attempt,
)
from storyloom.pipeline.dispatcher import ToolDispatcher
from storyloom.pipeline.prompts import PromptRenderError, render_prompt
from storyloom.pipeline.recording import record_attempt
from storyloom.store.db import Database
from storyloom.store.tables import (
    backlog_items,
    checkpoints,
    plans,
    tasks,
)

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class TaskStart:
    """What `start` learned: the item to run, or why it will not run."""

    task_id: str
    plan_id: str
    backlog_id: str
    phase: str
    skip: str | None = None  # superseded | finished | cancelled
    blocked: str | None = None


class PhaseRunner:
    def __init__(
        self,
        db: Database,
        config: Callable[[], Config],
        clock: Clock,
        dispatcher: ToolDispatcher,
        worker_id: str,
    ) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.dispatcher = dispatcher
        self.worker_id = worker_id
        # Set when the engine stops: an error raised under a stopping engine is not the phase's failure.
        self.stopping = threading.Event()

    # --- start -------------------------------------------------------------------------------------

    def start(self, task_id: str) -> TaskStart:
        now = self.clock.now()
        with self.db.begin() as conn:
            task = conn.execute(select(tasks).where(tasks.c.task_id == task_id)).mappings().one()
            item = self._item(conn, task["plan_id"], task["backlog_id"], lock=True)
            base = TaskStart(task_id, item["plan_id"], item["backlog_id"], item["phase"])
            if item["task_id"] != task_id:
                self._finish_task(conn, task_id, "superseded", now)
                return TaskStart(**{**base.__dict__, "skip": "superseded"})
            if item["status"] in (bl.COMPLETE, bl.CANCELLED, bl.FAILED):
                self._finish_task(conn, task_id, "skipped", now)
                return TaskStart(**{**base.__dict__, "skip": item["status"]})
            blocked = lore_gate(conn, item)
            if blocked:
                if item["status"] != bl.BLOCKED:
                    change_status(conn, item, bl.BLOCKED, "phase-blocked", now, last_error=blocked)
                fire_item_alert(conn, PLANNER_PHASE_BLOCKED, item, task_id, blocked, now, gate="lore")
                self._finish_task(conn, task_id, "blocked", now)
                self._checkpoint(conn, item, "blocked", task_id, "lore-gate", now)
                return TaskStart(**{**base.__dict__, "blocked": blocked})
            if item["status"] != bl.IN_PROGRESS:
                change_status(conn, item, bl.IN_PROGRESS, "phase-start", now, worker_id=self.worker_id)
            conn.execute(
                update(tasks)
                .where(tasks.c.task_id == task_id)
                .values(status="running", started_at=now, worker_id=self.worker_id)
            )
            self._checkpoint(conn, item, "locked", task_id, "start", now)
        return base

    # --- attempt -----------------------------------------------------------------------------------

    def attempt(self, task_id: str, attempt: int) -> AttemptOutcome:
        """One planner attempt: prompt, LLM call, validation, critique. Always records an execution."""
        cfg = self.config()
        started = self.clock.now()
        with self.db.begin() as conn:
            task = conn.execute(select(tasks).where(tasks.c.task_id == task_id)).mappings().one()
            if task["status"] == "cancelled":
                return AttemptOutcome(CANCELLED, error="the item was cancelled")
            item = self._item(conn, task["plan_id"], task["backlog_id"])
            recorded = recorded_attempt(conn, task_id, attempt, item["phase"])
            if recorded is not None:
                return recorded
            conn.execute(
                update(backlog_items).where(backlog_items.c.id == item["id"]).values(updated_at=started)
            )
            item_attempt = item["attempts"] + 1  # `attempts` grows when this attempt's execution is recorded
            plan = self._plan(conn, item["plan_id"])
            spec = ph.phase_spec(item["phase"])
            template = active_template(conn, spec.template_id)
            context = prompt_context(conn, plan, item, cfg, template)
            usage = critique_usage(conn, plan["id"], item["backlog_id"])
        run = PlannerAttempt(self.dispatcher, task, item, spec, attempt, item_attempt, started)
        if template is None:
            outcome = AttemptOutcome(
                FATAL, error=f"planner template {spec.template_id} is missing or inactive"
            )
        else:
            try:
                prompt = render_prompt(template, context, template_id=spec.template_id)
            except PromptRenderError as exc:
                outcome = AttemptOutcome(FATAL, error=str(exc))
            else:
                outcome = run.execute(prompt, context, cfg, usage, self.stopping)
        return record_attempt(self.db, self.clock.now(), run, outcome)

    # --- complete / fail / block -------------------------------------------------------------------

    def complete(self, task_id: str, output: Any) -> list[str]:
        """Persist the phase's output and side effects, mark the item complete; returns items it added."""
        now = self.clock.now()
        cfg = self.config()
        with self.db.begin() as conn:
            task = conn.execute(select(tasks).where(tasks.c.task_id == task_id)).mappings().one()
            self._lock_plan(conn, task["plan_id"])
            item = self._item(conn, task["plan_id"], task["backlog_id"], lock=True)
            if item["status"] != bl.IN_PROGRESS or item["task_id"] != task_id:
                return []  # done already (a replayed step), or cancelled or resumed as another task meanwhile
            plan = self._plan(conn, item["plan_id"])
            added = effects.apply(conn, plan, item, task_id, output, cfg, now)
            change_status(conn, item, bl.COMPLETE, "phase-complete", now, last_error=None, worker_id=None)
            self._finish_task(conn, task_id, "succeeded", now)
            self._checkpoint(conn, item, "complete", task_id, "persist", now)
            resolve_item_alerts(conn, item, now, "the item completed")
            effects.complete_plan_if_done(conn, plan, now)
        log.info(
            "phase complete",
            plan_id=item["plan_id"],
            backlog_id=item["backlog_id"],
            task_id=task_id,
            added=added,
        )
        return added

    def fail(self, task_id: str, error: str) -> None:
        """Mark the item failed and fire `planner:phase-failed` in one transaction; a replay is a no-op.

        An item still `pending` (its `start` step raised) goes through `in_progress` first, so its
        telemetry tells the whole story.
        """
        now = self.clock.now()
        with self.db.begin() as conn:
            task = conn.execute(select(tasks).where(tasks.c.task_id == task_id)).mappings().one()
            item = self._item(conn, task["plan_id"], task["backlog_id"], lock=True)
            if item["task_id"] != task_id or item["status"] not in (bl.PENDING, bl.IN_PROGRESS):
                return
            if item["status"] == bl.PENDING:
                item = change_status(conn, item, bl.IN_PROGRESS, "phase-start", now, worker_id=self.worker_id)
            change_status(conn, item, bl.FAILED, "phase-failed", now, last_error=error[:4000], worker_id=None)
            self._finish_task(conn, task_id, "failed", now)
            self._checkpoint(conn, item, "failed", task_id, "failed", now)
            fire_item_alert(
                conn,
                PLANNER_PHASE_FAILED,
                item,
                task_id,
                f"{item['backlog_id']} ({item['phase']}) failed after {task['attempt']} "
                f"task(s) and {item['attempts']} attempt(s): {error[:500]}",
                now,
            )
        log.warning(
            "phase failed",
            plan_id=item["plan_id"],
            backlog_id=item["backlog_id"],
            task_id=task_id,
            error=error[:500],
        )

    def block(self, task_id: str, reason: str) -> None:
        now = self.clock.now()
        with self.db.begin() as conn:
            task = conn.execute(select(tasks).where(tasks.c.task_id == task_id)).mappings().one()
            item = self._item(conn, task["plan_id"], task["backlog_id"], lock=True)
            if item["task_id"] != task_id or item["status"] != bl.IN_PROGRESS:
                return
            change_status(
                conn, item, bl.BLOCKED, "phase-blocked", now, last_error=reason[:4000], worker_id=None
            )
            self._finish_task(conn, task_id, "blocked", now)
            self._checkpoint(conn, item, "blocked", task_id, "validation", now)
            fire_item_alert(conn, PLANNER_PHASE_BLOCKED, item, task_id, reason[:500], now, gate="validation")

    # --- helpers -----------------------------------------------------------------------------------

    def _lock_plan(self, conn: Connection, plan_id: str) -> None:
        """Completions of one plan take turns on PostgreSQL, first thing in their transaction.

        Otherwise its last two items completing at once would each count the other as still running (read
        committed) and neither would complete the plan. `FOR NO KEY UPDATE` leaves the key-share locks of
        the rows the phase inserts alone, so taking it first cannot deadlock with them.
        """
        if self.db.dialect == "postgresql":
            conn.execute(select(plans.c.id).where(plans.c.id == plan_id).with_for_update(key_share=True))

    def _plan(self, conn: Connection, plan_id: str) -> dict[str, Any]:
        """The item's plan (it exists: an item belongs to one)."""
        return dict(conn.execute(select(plans).where(plans.c.id == plan_id)).mappings().one())

    def _item(self, conn: Connection, plan_id: str, backlog_id: str, *, lock: bool = False) -> dict[str, Any]:
        query = select(backlog_items).where(
            backlog_items.c.plan_id == plan_id, backlog_items.c.backlog_id == backlog_id
        )
        if lock and self.db.dialect == "postgresql":
            query = query.with_for_update()
        return dict(conn.execute(query).mappings().one())

    def _finish_task(self, conn: Connection, task_id: str, status: str, now: datetime) -> None:
        conn.execute(update(tasks).where(tasks.c.task_id == task_id).values(status=status, finished_at=now))

    def _checkpoint(
        self, conn: Connection, item: dict[str, Any], status: str, task_id: str, step: str, now: datetime
    ) -> None:
        key = bl.phase_key(item["phase"], item["branch_slug"], item["chapter"], item["scene"])
        values = {
            "status": status,
            "locked_by_agent": item["agent_id"],
            "task_id": task_id,
            "last_step": step,
            "updated_at": now,
        }
        done = conn.execute(
            update(checkpoints)
            .where(checkpoints.c.plan_id == item["plan_id"], checkpoints.c.phase_key == key)
            .values(**values)
        )
        if done.rowcount == 0:
            conn.execute(
                insert(checkpoints).values(
                    plan_id=item["plan_id"], phase_key=key, phase=item["phase"], created_at=now, **values
                )
            )
