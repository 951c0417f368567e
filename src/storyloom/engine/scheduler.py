"""The backlog scheduler: beats for its worker (and takes over silent ones), turns ready items into queued
tasks, hands queued tasks to the engine, auto-resumes items whose worker died, and releases lore-blocked
items once their lore is ready.

Every claim is a conditional update, so any number of worker processes can run it at once.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import and_, or_, select, update

from storyloom import signals
from storyloom.background import BackgroundLoop
from storyloom.domain import backlog as bl
from storyloom.engine.takeover import Liveness, Recover, live_workers, no_workflows
from storyloom.pipeline.runner import GATED_PHASES, change_status
from storyloom.runtime import Runtime
from storyloom.services.tasks import LIVE, claim_for_task
from storyloom.store.events import BACKLOG_ACTION, record_event
from storyloom.store.set_aside import set_aside, set_aside_items
from storyloom.store.tables import backlog_items, lore_requirements, plans, tasks

log = structlog.get_logger(__name__)

REENQUEUE_AFTER = timedelta(seconds=30)
BATCH = 200


SET_ASIDE_PASS = "scheduler"  # backlog items (by row id) whose readiness cannot be computed


def _readiness(
    candidates: list[dict[str, Any]], producers: Mapping[str, Mapping[str, str]]
) -> tuple[list[dict[str, Any]], list[tuple[dict[str, Any], Exception]]]:
    """(the ready items, the items whose stored inputs make the check raise): one bad row waits aside."""
    ready: list[dict[str, Any]] = []
    broken: list[tuple[dict[str, Any], Exception]] = []
    for item in candidates:
        try:
            if bl.is_ready(item["inputs"], producers[item["plan_id"]]):
                ready.append(item)
        except Exception as exc:
            broken.append((item, exc))
    return ready, broken


class Scheduler(BackgroundLoop):
    thread_name = "storyloom-scheduler"
    wake_channel = signals.SCHEDULER_CHANNEL
    stop_timeout = 10.0

    def __init__(
        self,
        rt: Runtime,
        enqueue: Callable[[str, str, bool], None],
        *,
        recover: Recover = no_workflows,
        poll_interval: float = 0.2,
    ) -> None:
        self.rt = rt
        self.enqueue = enqueue  # (task_id, provider, first) → the engine's queue (idempotent by task id)
        self.liveness = Liveness(rt, recover)
        self.draining = (
            False  # set by a drain: keep beating (the phases in flight are ours), take nothing new
        )
        self.poll_interval = poll_interval
        self._cursor = 0  # the last backlog row id of a full page of candidates (see claim_ready)
        super().__init__()

    def run_pass(self) -> bool:
        if self.tick():
            self.busy()
        return False

    def after_stop(self) -> None:
        self.liveness.leave(self.rt.clock.now())

    def interval(self) -> float:
        return self.poll_interval

    def tick(self) -> int:
        """One pass; returns how many tasks it claimed or handed over."""
        now = self.rt.clock.now()
        if self.draining:
            self.liveness.beat_on_time(now)
            return 0
        self.liveness.tick(now)
        self.release_lore(now)
        self.auto_resume(now)
        return self.claim_ready(now) + self.hand_over(now)

    def claim_ready(self, now: datetime) -> int:
        """Give ready pending items without a live task a queued task, a page of candidates per call.

        Items still waiting on their inputs are pending too; the page cursor walks past them across calls,
        so a ready item behind many waiting ones is reached within a few ticks, never starved.
        """
        with self.rt.db.read() as conn:
            live = select(tasks.c.task_id).where(
                tasks.c.task_id == backlog_items.c.task_id, tasks.c.status.in_(LIVE)
            )
            candidates = [
                dict(r)
                for r in conn.execute(
                    select(backlog_items)
                    .join(plans, plans.c.id == backlog_items.c.plan_id)
                    .where(
                        backlog_items.c.status == bl.PENDING,
                        plans.c.status == "in_progress",
                        ~live.exists(),
                        backlog_items.c.id > self._cursor,
                    )
                    .order_by(backlog_items.c.id)
                    .limit(BATCH)
                ).mappings()
            ]
            self._cursor = candidates[-1]["id"] if len(candidates) == BATCH else 0
            if not candidates:
                return 0
            plan_ids = {c["plan_id"] for c in candidates}
            producers: dict[str, dict[str, str]] = defaultdict(dict)
            for row in conn.execute(
                select(backlog_items.c.plan_id, backlog_items.c.backlog_id, backlog_items.c.status).where(
                    backlog_items.c.plan_id.in_(plan_ids)
                )
            ):
                producers[row.plan_id][row.backlog_id] = row.status
            aside = set_aside_items(conn, SET_ASIDE_PASS)
        ready, broken = _readiness([c for c in candidates if str(c["id"]) not in aside], producers)
        if broken:
            with self.rt.db.begin() as conn:
                for item, error in broken:
                    set_aside(conn, SET_ASIDE_PASS, str(item["id"]), error, now)
        claimed = 0
        if ready:
            with self.rt.db.begin() as conn:
                for item in ready:
                    if claim_for_task(conn, item, reason="schedule", now=now):
                        claimed += 1
                        conn.execute(
                            update(backlog_items)
                            .where(backlog_items.c.id == item["id"])
                            .values(ready_at=item["ready_at"] or now)
                        )
        return claimed

    def hand_over(self, now: datetime) -> int:
        """Enqueue queued tasks not yet handed over (or handed over long ago and still queued).

        A resumed item's task goes first, here and in the engine's queue: a resume runs *that* item next
        (DOMAIN: the original ran the oldest ready item instead).
        """
        stale = now - REENQUEUE_AFTER
        resumed = tasks.c.reason == "resume"
        with self.rt.db.read() as conn:
            rows = conn.execute(
                select(tasks.c.task_id, tasks.c.provider, resumed.label("resumed"))
                .where(
                    tasks.c.status == "queued",
                    or_(tasks.c.enqueued_at.is_(None), tasks.c.enqueued_at < stale),
                )
                .order_by(resumed.desc(), tasks.c.created_at)
                .limit(BATCH)
            ).all()
        for task_id, provider, first in rows:
            self.enqueue(task_id, provider, bool(first))
        if rows:
            with self.rt.db.begin() as conn:
                conn.execute(
                    update(tasks).where(tasks.c.task_id.in_([r[0] for r in rows])).values(enqueued_at=now)
                )
        return len(rows)

    def auto_resume(self, now: datetime) -> int:
        """Items stuck `in_progress` past `auto_resume_after` whose worker is gone go back to pending."""
        cutoff = now - self.rt.config.pipeline.auto_resume_after
        alive = live_workers(self.rt, now)
        with self.rt.db.read() as conn:
            stuck = [
                dict(r)
                for r in conn.execute(
                    select(backlog_items)
                    .where(backlog_items.c.status == bl.IN_PROGRESS, backlog_items.c.updated_at < cutoff)
                    .limit(BATCH)
                ).mappings()
            ]
        resumed = 0
        for item in stuck:
            if item["worker_id"] in alive:
                continue
            with self.rt.db.begin() as conn:
                fresh = (
                    conn.execute(
                        select(backlog_items).where(
                            and_(
                                backlog_items.c.id == item["id"],
                                backlog_items.c.status == bl.IN_PROGRESS,
                                backlog_items.c.updated_at == item["updated_at"],
                            )
                        )
                    )
                    .mappings()
                    .first()
                )
                if fresh is None:
                    continue
                if item["task_id"]:
                    conn.execute(
                        update(tasks)
                        .where(tasks.c.task_id == item["task_id"], tasks.c.status.in_(LIVE))
                        .values(status="abandoned", finished_at=now)
                    )
                moved = change_status(
                    conn,
                    dict(fresh),
                    bl.PENDING,
                    "auto-resume",
                    now,
                    worker_id=None,
                    flapping_threshold=self.rt.config.health.flapping_threshold,
                )
                task_id = claim_for_task(conn, moved, reason="auto-resume", now=now)
                record_event(conn, BACKLOG_ACTION, _action("auto-resume", moved, task_id), now)
                resumed += 1
        return resumed

    def release_lore(self, now: datetime) -> int:
        """Fulfil lore past its SLA automatically, then unblock lore-gated items whose lore is all ready."""
        sla_cutoff = now - self.rt.config.pipeline.lore_sla
        with self.rt.db.begin() as conn:
            conn.execute(
                update(lore_requirements)
                .where(lore_requirements.c.status != "ready", lore_requirements.c.created_at < sla_cutoff)
                .values(status="ready", fulfilled_at=now, fulfilled_by="auto-fulfillment", updated_at=now)
            )
            unready = select(lore_requirements.c.id).where(
                lore_requirements.c.plan_id == backlog_items.c.plan_id, lore_requirements.c.status != "ready"
            )
            blocked = [
                dict(r)
                for r in conn.execute(
                    select(backlog_items)
                    .where(
                        backlog_items.c.status == bl.BLOCKED,
                        backlog_items.c.phase.in_(GATED_PHASES),
                        backlog_items.c.last_error.like("lore gate:%"),
                        ~unready.exists(),
                    )
                    .limit(BATCH)
                ).mappings()
            ]
            for item in blocked:
                change_status(
                    conn,
                    item,
                    bl.PENDING,
                    "auto-resume",
                    now,
                    last_error=None,
                    flapping_threshold=self.rt.config.health.flapping_threshold,
                )
                record_event(
                    conn, BACKLOG_ACTION, _action("auto-resume", item, None, note="lore is ready"), now
                )
        return len(blocked)


def _action(
    action: str, item: dict[str, Any], task_id: str | None, note: str | None = None
) -> dict[str, Any]:
    return {
        "action": action,
        "plan_id": item["plan_id"],
        "backlog_id": item["backlog_id"],
        "description": item["description"],
        "branch": item["branch_slug"],
        "actor": "storyloom",
        "actor_id": "system",
        "source": "system",
        "agent_id": item["agent_id"],
        "persona_id": item["persona_id"],
        "provider": item["provider"],
        "model": item["model"],
        "task_id": task_id or item.get("task_id"),
        "status": bl.PENDING,
        "notes": note,
    }
