"""The planner runner: one backlog item's run, split into the steps the engine makes durable.

start → attempt (LLM through the dispatcher, validation, critique; every attempt recorded) → complete | block | fail.
Each step is its own transaction and is idempotent by `task_id`, so a step re-run after a crash is harmless.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from pydantic import BaseModel
from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import StatementError

from storyloom.alerting.publish import AlertSignal, fire, resolve_matching
from storyloom.backlog.transitions import change_status, fire_item_alert, item_labels, resolve_item_alerts
from storyloom.clock import Clock
from storyloom.config import Config
from storyloom.domain import backlog as bl
from storyloom.domain import phases as ph
from storyloom.domain.catalog import PLANNER_CRITIQUE_EXHAUSTED, PLANNER_PHASE_BLOCKED, PLANNER_PHASE_FAILED
from storyloom.pipeline import effects
from storyloom.pipeline.dispatcher import DispatchError, PlannerCall, ToolDispatcher
from storyloom.pipeline.llm.base import LLMResponse
from storyloom.pipeline.prompts import PromptRenderError, placeholders, render_prompt, system_prompt
from storyloom.store.db import Database
from storyloom.store.tables import (
    artifacts,
    backlog_items,
    checkpoints,
    lore_requirements,
    persona_obligations,
    planner_executions,
    planner_templates,
    plans,
    tasks,
    transcripts,
    world_bible_entries,
)

log = structlog.get_logger(__name__)

OK, RETRY, BLOCKED, FATAL, CANCELLED = "ok", "retry", "blocked", "fatal", "cancelled"
GATED_PHASES = ("scroll_refiner", "scene_weaver")


@dataclass(frozen=True)
class TaskStart:
    """What `start` learned: the item to run, or why it will not run."""

    task_id: str
    plan_id: str
    backlog_id: str
    phase: str
    skip: str | None = None  # superseded | finished | cancelled
    blocked: str | None = None


@dataclass(frozen=True)
class AttemptOutcome:
    kind: str  # ok | retry | blocked | fatal | cancelled
    output: Any = None
    error: str | None = None


def describe_error(exc: BaseException) -> str:
    """`Type: message` of an unexpected error; a database error's driver message, without its SQL and parameters."""
    cause = exc.orig if isinstance(exc, StatementError) and exc.orig is not None else exc
    return f"{type(cause).__name__}: {cause}"[:2000]


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
            blocked = self._lore_gate(conn, item)
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

    def _lore_gate(self, conn: Connection, item: dict[str, Any]) -> str | None:
        if item["phase"] not in GATED_PHASES:
            return None
        unready = (
            conn.execute(
                select(lore_requirements.c.slug)
                .where(lore_requirements.c.plan_id == item["plan_id"], lore_requirements.c.status != "ready")
                .order_by(lore_requirements.c.slug)
            )
            .scalars()
            .all()
        )
        if not unready:
            return None
        return f"lore gate: requirements not ready: {', '.join(unready)}"

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
            recorded = self._recorded_attempt(conn, task_id, attempt, item["phase"])
            if recorded is not None:
                return recorded
            conn.execute(
                update(backlog_items).where(backlog_items.c.id == item["id"]).values(updated_at=started)
            )
            item_attempt = item["attempts"] + 1  # `attempts` grows when this attempt's execution is recorded
            plan = self._plan(conn, item["plan_id"])
            spec = ph.phase_spec(item["phase"])
            template = self._template(conn, spec.template_id)
            context = self._prompt_context(conn, plan, item, cfg, template)
            usage = self._critique_usage(conn, plan["id"], item["backlog_id"])
        run = _Attempt(self, task, item, spec, attempt, item_attempt, started)
        if template is None:
            return run.record(FATAL, error=f"planner template {spec.template_id} is missing or inactive")
        try:
            prompt = render_prompt(template, context, template_id=spec.template_id)
        except PromptRenderError as exc:
            return run.record(FATAL, error=str(exc))
        return run.execute(prompt, context, cfg, usage)

    def _recorded_attempt(
        self, conn: Connection, task_id: str, attempt: int, phase: str
    ) -> AttemptOutcome | None:
        """What an attempt already recorded, when its step runs again after a crash; None if it never ran.

        Running it again could give another outcome (a fault that applied to the first run, a provider
        that answers differently) while its execution row keeps the first: the item would complete on an
        output no execution records. A recorded success is rebuilt from the answer in its transcript that
        gave the output (`diagnostics.output_answer`); failing that, the attempt runs again (its record is
        then a no-op).
        """
        row = conn.execute(
            select(
                planner_executions.c.outcome, planner_executions.c.error, planner_executions.c.diagnostics
            ).where(planner_executions.c.task_id == task_id, planner_executions.c.attempt == attempt)
        ).first()
        if row is None:
            return None
        if row.outcome == "cancelled":
            return AttemptOutcome(CANCELLED, error=row.error)
        if row.outcome == "failed":
            return AttemptOutcome((row.diagnostics or {}).get("kind", RETRY), error=row.error)
        answers = (
            conn.execute(
                select(transcripts.c.content)
                .where(
                    transcripts.c.task_id == task_id,
                    transcripts.c.attempt == attempt,
                    transcripts.c.role == "assistant",
                )
                .order_by(transcripts.c.id)
            )
            .scalars()
            .all()
        )
        answer = int((row.diagnostics or {}).get("output_answer") or 0)
        if not 0 < answer <= len(answers):
            return None
        result = ph.validate_output(phase, answers[answer - 1])
        return AttemptOutcome(OK, output=_output(result)) if result.ok else None

    def _template(self, conn: Connection, template_id: str) -> str | None:
        return conn.execute(
            select(planner_templates.c.body)
            .where(planner_templates.c.template_id == template_id, planner_templates.c.active.is_(True))
            .order_by(planner_templates.c.version.desc())
            .limit(1)
        ).scalar()

    def _critique_usage(self, conn: Connection, plan_id: str, backlog_id: str) -> ph.CritiqueUsage:
        """Critique spent on this backlog item so far (all its tasks and attempts): budgets are per item."""
        total, tokens = conn.execute(
            select(
                func.coalesce(func.sum(planner_executions.c.critique_count), 0),
                func.coalesce(func.sum(planner_executions.c.critique_tokens), 0),
            ).where(planner_executions.c.plan_id == plan_id, planner_executions.c.backlog_id == backlog_id)
        ).one()
        return ph.CritiqueUsage(total=int(total), step=0, tokens=int(tokens))

    def _prompt_context(
        self, conn: Connection, plan: dict[str, Any], item: dict[str, Any], cfg: Config, template: str | None
    ) -> dict[str, Any]:
        """The template's placeholders (and what the offline provider reads), each loaded only when needed."""
        chapter, scene = item["chapter"] or 1, item["scene"] or 1
        plan_id = plan["id"]
        loaders: dict[str, Callable[[], Any]] = {
            "vision": lambda: self._artifact(conn, plan_id, "vision") or {},
            "iteration": lambda: self._artifact(conn, plan_id, "iteration") or {},
            "world_bible": lambda: [
                r.content
                for r in conn.execute(
                    select(world_bible_entries.c.content).where(
                        world_bible_entries.c.plan_id == plan_id, world_bible_entries.c.active.is_(True)
                    )
                )
            ],
            "previous_chapters": lambda: [
                self._artifact(conn, plan_id, f"chapter-{n}") for n in range(1, chapter)
            ],
            "blueprint": lambda: self._artifact(conn, plan_id, f"chapter-{chapter}") or {},
            "open_obligations": lambda: [
                {"slug": r.slug, "title": r.title}
                for r in conn.execute(
                    select(persona_obligations.c.slug, persona_obligations.c.title)
                    .where(persona_obligations.c.plan_id == plan_id, persona_obligations.c.status == "open")
                    .order_by(persona_obligations.c.slug)
                    .limit(20)
                )
            ],
        }
        ctx: dict[str, Any] = {
            "premise": plan["premise"],
            "plan_name": plan["name"],
            "project_title": plan["name"],
            "chapters": cfg.pipeline.chapters,
            "scenes_per_chapter": cfg.pipeline.scenes_per_chapter,
            "chapter_number": chapter,
            "scene_number": scene,
            "scene": {},
            "scroll_title": "",
            "section_title": "",
            "salient_terms": [],
        }
        wanted = (
            set(placeholders(template or "")) | {"open_obligations"}
            if item["phase"] in GATED_PHASES
            else set(placeholders(template or ""))
        )
        ctx.update({key: load() for key, load in loaders.items() if key in wanted})
        if item["phase"] == "scene_weaver":
            ctx.update(self._scene_context(conn, plan_id, chapter, scene))
        return ctx

    def _scene_context(self, conn: Connection, plan_id: str, chapter: int, scene: int) -> dict[str, Any]:
        scroll_data = self._artifact(conn, plan_id, f"scroll-{chapter}")
        blueprint = self._artifact(conn, plan_id, f"chapter-{chapter}") or {}
        if not scroll_data:
            return {}
        scroll = ph.ScrollPlan.model_validate(scroll_data)
        pairs = scroll.scenes()
        section, plan_scene = pairs[min(scene, len(pairs)) - 1]
        tracked = [
            r.name
            for r in conn.execute(
                select(world_bible_entries.c.name).where(
                    world_bible_entries.c.plan_id == plan_id,
                    world_bible_entries.c.category == "characters",
                    world_bible_entries.c.active.is_(True),
                )
            )
        ]
        terms = ph.salient_terms_for_scene(
            scene_title=plan_scene.title,
            section_title=section.title,
            scroll_title=scroll.title,
            blueprint_title=blueprint.get("title"),
            tracked_characters=tracked,
            scene=plan_scene,
        )
        return {
            "scene": plan_scene.model_dump(mode="json"),
            "scroll_title": scroll.title,
            "section_title": section.title,
            "salient_terms": terms,
        }

    def _artifact(self, conn: Connection, plan_id: str, key: str) -> Any:
        return conn.execute(
            select(artifacts.c.content)
            .where(artifacts.c.plan_id == plan_id, artifacts.c.key == key)
            .order_by(artifacts.c.version.desc())
            .limit(1)
        ).scalar()

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


def _output(result: ph.ValidationResult) -> Any:
    """A validated phase output as the JSON the `complete` step stores."""
    return result.value.model_dump(mode="json") if isinstance(result.value, BaseModel) else result.value


def _task_status(conn: Connection, task_id: str) -> str | None:
    return conn.execute(select(tasks.c.status).where(tasks.c.task_id == task_id)).scalar()


class _Attempt:
    """One attempt's bookkeeping: the LLM calls it makes, its critique loop, and its execution record."""

    def __init__(
        self,
        runner: PhaseRunner,
        task: Any,
        item: dict[str, Any],
        spec: ph.PhaseSpec,
        attempt: int,
        item_attempt: int,
        started: datetime,
    ) -> None:
        self.runner, self.task, self.item, self.spec = runner, task, item, spec
        self.attempt, self.item_attempt, self.started = attempt, item_attempt, started
        self.prompt_tokens = self.completion_tokens = 0
        self.critique_count = self.critique_tokens = 0
        self.critique_status = ph.CritiqueStatus.IDLE
        self.transcript: list[tuple[str, str]] = []
        self.diagnostics: dict[str, Any] = {}

    def call(self, prompt: str, context: dict[str, Any], cfg: Config) -> LLMResponse:
        self.transcript.append(("user", prompt))
        response = self.runner.dispatcher.call_planner(
            PlannerCall(
                phase=self.spec.phase.value,
                planner_name=self.spec.planner_name,
                prompt=prompt,
                system=system_prompt(self.spec.phase),
                provider=self.item["provider"],
                model=self.item["model"],
                agent_id=self.item["agent_id"],
                persona_id=self.item["persona_id"],
                plan_id=self.item["plan_id"],
                backlog_id=self.item["backlog_id"],
                task_id=self.task["task_id"],
                attempt=self.item_attempt,
                timeout=cfg.pipeline.phase_timeout.total_seconds(),
                context=context,
            )
        )
        self.transcript.append(("assistant", response.text))
        self.prompt_tokens += response.prompt_tokens
        self.completion_tokens += response.completion_tokens
        return response

    def execute(
        self, prompt: str, context: dict[str, Any], cfg: Config, usage: ph.CritiqueUsage
    ) -> AttemptOutcome:
        budget = ph.CritiqueBudget(
            cfg.pipeline.critique.max_total,
            cfg.pipeline.critique.max_per_step,
            cfg.pipeline.critique.max_tokens,
            cfg.pipeline.critique.enabled,
        )
        self.critique_status = ph.initial_status(budget)
        salient = context.get("salient_terms") or None
        try:
            response = self.call(prompt, context, cfg)
            result = ph.validate_output(self.spec.phase, response.text, salient_terms=salient)
            if not result.ok:
                self.diagnostics["validation_errors"] = result.errors
                return self.record(RETRY, error="invalid output: " + "; ".join(result.errors[:10]))
            self.diagnostics["output_answer"] = 1  # which assistant answer of the transcript the output is
            while self.critique_status != ph.CritiqueStatus.DISABLED:
                verdict = ph.critique(
                    self.spec.phase,
                    result,
                    ph.CritiqueContext(salient_terms=salient or (), forced_reject=response.critique_reject),
                )
                status = ph.next_status(self.critique_status, budget, usage, tokens=verdict.tokens)
                if status.exhausted:
                    self.critique_status = status
                    self.diagnostics["critique_reasons"] = verdict.reasons
                    break
                self.critique_status = status
                usage = usage.record(verdict.tokens)
                self.critique_count += 1
                self.critique_tokens += verdict.tokens
                if verdict.ok:
                    break
                revision = (
                    f"{prompt}\n\nA critic asked for a revision:\n- "
                    + "\n- ".join(verdict.reasons)
                    + "\nReturn the whole corrected output."
                )
                response = self.call(revision, context, cfg)
                revised = ph.validate_output(self.spec.phase, response.text, salient_terms=salient)
                if revised.ok:
                    result = revised
                    self.diagnostics["output_answer"] = self.critique_count + 1
        except DispatchError as exc:
            return self.record(RETRY if exc.retryable else FATAL, error=str(exc))
        except Exception as exc:
            if self.runner.stopping.is_set():
                raise  # the engine is shutting down under this attempt: not the phase's fault
            log.exception("planner attempt raised", task_id=self.task["task_id"], attempt=self.attempt)
            return self.record(RETRY, error=f"unexpected error: {describe_error(exc)}")
        return self.record(OK, output=_output(result))

    def record(self, kind: str, *, output: Any = None, error: str | None = None) -> AttemptOutcome:
        """Write the planner execution (every outcome) and its transcript; fire critique-exhausted."""
        now = self.runner.clock.now()
        outcome = {OK: "success", RETRY: "failed", FATAL: "failed", BLOCKED: "failed"}[kind]
        if kind == OK and self.critique_status.exhausted:
            outcome = "partial"
        if error:
            self.diagnostics["error"] = error
        if outcome == "failed":
            self.diagnostics["kind"] = kind  # retry | fatal | blocked: what a re-run of this step returns
        task_id = self.task["task_id"]
        with self.runner.db.begin() as conn:
            if _task_status(conn, task_id) == "cancelled":  # cancelled while the attempt ran: drop its output
                kind, outcome, output = CANCELLED, "cancelled", None
            exists = conn.execute(
                select(planner_executions.c.id).where(
                    planner_executions.c.task_id == task_id, planner_executions.c.attempt == self.attempt
                )
            ).first()
            if exists is None:
                conn.execute(
                    insert(planner_executions).values(
                        plan_id=self.item["plan_id"],
                        backlog_id=self.item["backlog_id"],
                        task_id=task_id,
                        attempt=self.attempt,
                        planner_name=self.spec.planner_name,
                        phase=self.spec.phase.value,
                        outcome=outcome,
                        latency_ms=(now - self.started).total_seconds() * 1000,
                        prompt_tokens=self.prompt_tokens,
                        completion_tokens=self.completion_tokens,
                        critique_status=self.critique_status.value,
                        critique_count=self.critique_count,
                        critique_tokens=self.critique_tokens,
                        provider=self.item["provider"],
                        model=self.item["model"],
                        agent_id=self.item["agent_id"],
                        persona_id=self.item["persona_id"],
                        error=error,
                        diagnostics=json.loads(json.dumps(self.diagnostics, default=str)),
                        started_at=self.started,
                        finished_at=now,
                    )
                )
                conn.execute(
                    update(backlog_items)
                    .where(backlog_items.c.id == self.item["id"])
                    .values(attempts=backlog_items.c.attempts + 1)
                )
                if self.transcript:
                    conn.execute(
                        insert(transcripts),
                        [
                            {
                                "task_id": task_id,
                                "attempt": self.attempt,
                                "role": role,
                                "content": content[:200_000],
                                "created_at": now,
                            }
                            for role, content in self.transcript
                        ],
                    )
            labels = item_labels(self.item, task_id)
            if kind != CANCELLED and self.critique_status.exhausted:
                fire(
                    conn,
                    AlertSignal(
                        PLANNER_CRITIQUE_EXHAUSTED,
                        {**labels, "budget": self.critique_status.budget_label},
                        f"critique budget ran out ({self.critique_status.value}) on "
                        f"{self.item['backlog_id']}",
                    ),
                    now,
                )
            elif kind == OK:
                resolve_matching(
                    conn,
                    PLANNER_CRITIQUE_EXHAUSTED,
                    now,
                    "a later run passed its critique",
                    plan_id=self.item["plan_id"],
                    backlog_id=self.item["backlog_id"],
                )
        return AttemptOutcome(kind, output=output, error=error)
