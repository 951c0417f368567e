"""The SQL reads behind PlannerHealth, the evaluated alerts and /metrics over templates, the backlog and
the world bible: aggregates over indexed columns (executions: `execution_queries`; alerts and
deliveries: `alerting.reads`).

Every function here reads; none writes. Lists are bounded (`limit`) or naturally small (templates,
plans with failures), so the cost does not grow with the size of `backlog_items` or `plans`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    and_,
    case,
    func,
    literal,
    literal_column,
    or_,
    select,
)

from storyloom.domain import backlog as bl
from storyloom.domain.phases import PHASES, PhaseSpec
from storyloom.store.tables import (
    backlog_items,
    lore_requirements,
    planner_templates,
    plans,
    tasks,
    world_bible_entries,
)

LIVE_TASKS = ("queued", "running")
LIVE_ITEMS = (bl.PENDING, bl.IN_PROGRESS, bl.BLOCKED)
LORE_GATE_PREFIX = "lore gate"
WORLD_BIBLE_ITEM = "world-bible"


# --- planner templates -------------------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateState:
    spec: PhaseSpec
    found: bool  # at least one version of the template exists
    active: bool  # an active version with a non-blank body exists (what the runner would use)
    issue: str | None

    @property
    def missing(self) -> bool:
        return not self.found

    @property
    def inactive(self) -> bool:
        return self.found and not self.active


def template_states(conn: Connection) -> list[TemplateState]:
    """One state per PHASES step, from one GROUP BY over the (small) templates table."""
    ids = [spec.template_id for spec in PHASES.values()]
    usable = and_(planner_templates.c.active.is_(True), func.length(func.trim(planner_templates.c.body)) > 0)
    rows = conn.execute(
        select(
            planner_templates.c.template_id,
            func.count(),
            func.max(case((planner_templates.c.active.is_(True), 1), else_=0)),
            func.max(case((usable, 1), else_=0)),
        )
        .where(planner_templates.c.template_id.in_(ids))
        .group_by(planner_templates.c.template_id)
    ).all()
    seen = {r[0]: (int(r[1]), bool(r[2]), bool(r[3])) for r in rows}
    out = []
    for spec in PHASES.values():
        versions, any_active, any_usable = seen.get(spec.template_id, (0, False, False))
        issue: str | None = None
        if versions == 0:
            issue = f"template {spec.template_id} is missing"
        elif not any_active:
            issue = f"template {spec.template_id} has no active version"
        elif not any_usable:
            issue = f"the active version of template {spec.template_id} is empty"
        out.append(TemplateState(spec, versions > 0, any_usable, issue))
    return out


# --- backlog -----------------------------------------------------------------------------------------

ITEM_COLUMNS = (
    backlog_items.c.plan_id,
    backlog_items.c.backlog_id,
    backlog_items.c.phase,
    backlog_items.c.status,
    backlog_items.c.agent_id,
    backlog_items.c.persona_id,
    backlog_items.c.provider,
    backlog_items.c.model,
    backlog_items.c.task_id,
    backlog_items.c.worker_id,
    backlog_items.c.last_error,
    backlog_items.c.created_at,
    backlog_items.c.updated_at,
)


def status_counts(conn: Connection) -> dict[str, int]:
    """Items per status (every status present): one index range count per status, `complete` (the bulk of
    a long-lived backlog) as the total minus the others."""
    item = backlog_items.c
    others = [status for status in bl.STATUSES if status != bl.COMPLETE]
    row = conn.execute(
        select(
            select(func.count()).select_from(backlog_items).scalar_subquery(),
            *(select(func.count()).where(item.status == status).scalar_subquery() for status in others),
        )
    ).one()
    counts = dict(zip(others, (int(v) for v in row[1:]), strict=True))
    counts[bl.COMPLETE] = int(row[0]) - sum(counts.values())
    return {status: counts[status] for status in bl.STATUSES}


def stale_items(
    conn: Connection, now: datetime, stale_after: timedelta, limit: int | None = None
) -> list[dict[str, Any]]:
    """`in_progress` items not updated for `stale_after`, oldest first (index on status, updated_at)."""
    query = (
        select(*ITEM_COLUMNS)
        .where(backlog_items.c.status == bl.IN_PROGRESS, backlog_items.c.updated_at < now - stale_after)
        .order_by(backlog_items.c.updated_at)
    )
    if limit is not None:
        query = query.limit(limit)
    return [dict(r) for r in conn.execute(query).mappings()]


def count_stale(conn: Connection, now: datetime, stale_after: timedelta) -> int:
    return int(
        conn.execute(
            select(func.count()).where(
                backlog_items.c.status == bl.IN_PROGRESS, backlog_items.c.updated_at < now - stale_after
            )
        ).scalar_one()
    )


def _orphan_queries(columns: Sequence[Any]) -> list[Any]:
    """Two disjoint selects, each driven by the (status, task_id) index, whose union is the orphans:

    - `in_progress` items whose plan is gone, that have no task, or whose task is gone or finished;
    - claimed `pending` / `blocked` items (with a task id) whose plan or task row is gone.

    Unclaimed pending items are not read at all (there can be many): they have no task to lose, and the
    foreign key keeps a plan from being deleted under them.
    """
    item, task = backlog_items.c, tasks.c
    source = backlog_items.outerjoin(plans, plans.c.id == item.plan_id).outerjoin(
        tasks, task.task_id == item.task_id
    )
    plan_gone = plans.c.id.is_(None)
    in_progress = (
        select(
            *columns,
            case(
                (plan_gone, literal("plan-gone")),
                (item.task_id.is_(None), literal("no-task")),
                (task.task_id.is_(None), literal("task-gone")),
                else_=literal("task-finished"),
            ).label("reason"),
        )
        .select_from(source)
        .where(
            item.status == bl.IN_PROGRESS,
            or_(plan_gone, item.task_id.is_(None), task.task_id.is_(None), task.status.not_in(LIVE_TASKS)),
        )
    )
    waiting = (
        select(
            *columns,
            case((plan_gone, literal("plan-gone")), else_=literal("task-gone")).label("reason"),
        )
        .select_from(source)
        .where(
            item.status.in_((bl.PENDING, bl.BLOCKED)),
            item.task_id.is_not(None),
            or_(plan_gone, task.task_id.is_(None)),
        )
    )
    return [in_progress, waiting]


def orphaned_items(conn: Connection, limit: int | None = None) -> list[dict[str, Any]]:
    """Items still to be worked (pending, in progress, blocked) whose plan or task is gone, or that are in
    progress under a task that already finished. Finished items are history, not orphans."""
    found: list[dict[str, Any]] = []
    for query in _orphan_queries([*ITEM_COLUMNS, backlog_items.c.id, tasks.c.status.label("task_status")]):
        query = query.order_by(backlog_items.c.id)
        found += [dict(r) for r in conn.execute(query if limit is None else query.limit(limit)).mappings()]
    found.sort(key=lambda r: r["id"])
    return found if limit is None else found[:limit]


def count_orphaned(conn: Connection) -> int:
    return sum(
        int(conn.execute(select(func.count()).select_from(query.subquery())).scalar_one())
        for query in _orphan_queries([backlog_items.c.id])
    )


def lore_blocked_plans(conn: Connection) -> list[dict[str, Any]]:
    """Plans with items blocked by the lore gate, with how many and which lore is still not ready."""
    rows = conn.execute(
        select(
            backlog_items.c.plan_id,
            plans.c.agent_id,
            plans.c.persona_id,
            func.count().label("items"),
        )
        .select_from(backlog_items.join(plans, plans.c.id == backlog_items.c.plan_id))
        .where(
            backlog_items.c.status == bl.BLOCKED,
            backlog_items.c.last_error.like(f"{LORE_GATE_PREFIX}%"),
        )
        .group_by(backlog_items.c.plan_id, plans.c.agent_id, plans.c.persona_id)
        .order_by(backlog_items.c.plan_id)
    ).mappings()
    out = [dict(r) for r in rows]
    if not out:
        return out
    unready: dict[str, list[str]] = {}
    for plan_id, slug in conn.execute(
        select(lore_requirements.c.plan_id, lore_requirements.c.slug)
        .where(
            lore_requirements.c.plan_id.in_([r["plan_id"] for r in out]),
            lore_requirements.c.status != "ready",
        )
        .order_by(lore_requirements.c.plan_id, lore_requirements.c.slug)
    ):
        unready.setdefault(plan_id, []).append(slug)
    for row in out:
        row["unready"] = unready.get(row["plan_id"], [])
    return out


@dataclass(frozen=True)
class QueueStats:
    depth: int  # pending items
    ready: int  # pending items of running plans whose inputs are all complete
    oldest_ready_at: datetime | None
    oldest: Mapping[str, Any] | None  # the item that has waited longest

    def oldest_age(self, now: datetime) -> timedelta | None:
        return None if self.oldest_ready_at is None else max(now - self.oldest_ready_at, timedelta(0))


def _inputs_unmet(conn: Connection, item: Any) -> Any:
    """EXISTS an input of `item` whose producer (same plan, backlog id = input) is not complete.

    Written as a scalar lookup per input so that every planner probes the (plan_id, backlog_id) unique
    index once per input; an input no item produces yields NULL and counts as satisfied.
    """
    if conn.dialect.name == "postgresql":
        # A stored `inputs` that is not an array (a poisoned row) reads as none rather than failing the query.
        as_array = case(
            (func.json_typeof(item.c.inputs) == "array", item.c.inputs), else_=literal_column("'[]'::json")
        )
        inputs = func.json_array_elements_text(as_array).table_valued("value", joins_implicitly=True)
    else:
        inputs = func.json_each(item.c.inputs).table_valued("value", joins_implicitly=True)
    producer = backlog_items.alias("producer")
    producer_status = (
        select(producer.c.status)
        .where(producer.c.plan_id == item.c.plan_id, producer.c.backlog_id == inputs.c.value)
        .correlate_except(producer)
        .scalar_subquery()
    )
    return select(literal(1)).select_from(inputs).where(producer_status != bl.COMPLETE).exists()


def queue_stats(conn: Connection, *, depth: int | None = None, with_oldest: bool = False) -> QueueStats:
    """Queue depth, ready count and the longest-waiting ready item.

    An item the scheduler has claimed carries `ready_at` (its inputs were complete then, and complete is
    final); for the others readiness is checked against their inputs' producers. The wait starts at
    `ready_at`, else at `created_at`; but never before the item last (re)entered the queue (`updated_at`:
    the scheduler keeps the first `ready_at`, so a resumed item would otherwise count from its first run).
    Items of plans that are not running do not wait in the queue.
    `depth` may be given when already counted; `with_oldest` also names the item that waited longest.
    """
    if depth is None:
        depth = int(
            conn.execute(select(func.count()).where(backlog_items.c.status == bl.PENDING)).scalar_one()
        )
    if depth == 0:
        return QueueStats(0, 0, None, None)
    item = backlog_items.alias("item")
    joined = item
    running = select(plans.c.id).where(plans.c.status == "in_progress")
    waiting = and_(item.c.status == bl.PENDING, item.c.plan_id.in_(running))
    stamped = and_(waiting, item.c.ready_at.is_not(None))
    unstamped = and_(waiting, item.c.ready_at.is_(None), ~_inputs_unmet(conn, item))
    stamped_since = case((item.c.updated_at > item.c.ready_at, item.c.updated_at), else_=item.c.ready_at)
    # claimed items, found through the (status, ready_at) index
    stamped_count, stamped_oldest = conn.execute(
        select(func.count(), func.min(stamped_since)).select_from(joined).where(stamped)
    ).one()
    # ready items the scheduler has not claimed yet (none while it keeps up): by their inputs
    unstamped_count, unstamped_oldest = conn.execute(
        select(func.count(), func.min(item.c.created_at)).select_from(joined).where(unstamped)
    ).one()
    count = int(stamped_count) + int(unstamped_count)
    if count == 0:
        return QueueStats(depth, 0, None, None)
    candidates = [m for m in (stamped_oldest, unstamped_oldest) if m is not None]
    oldest_at = min(candidates)
    if not with_oldest:
        return QueueStats(depth, count, oldest_at, None)
    which, column = (
        (stamped, stamped_since) if oldest_at == stamped_oldest else (unstamped, item.c.created_at)
    )
    oldest = (
        conn.execute(
            select(item.c.plan_id, item.c.backlog_id, item.c.phase, item.c.agent_id, item.c.persona_id)
            .select_from(joined)
            .where(which, column == oldest_at)
            .order_by(item.c.id)
            .limit(1)
        )
        .mappings()
        .first()
    )
    return QueueStats(depth, count, oldest_at, dict(oldest) if oldest else None)


# --- world bible -------------------------------------------------------------------------------------


def plans_missing_world_bible(conn: Connection) -> list[dict[str, Any]]:
    """Plans whose `world-bible` item is complete but that have no active world-bible entry."""
    active_entry = (
        select(world_bible_entries.c.id)
        .where(world_bible_entries.c.plan_id == plans.c.id, world_bible_entries.c.active.is_(True))
        .exists()
    )
    past_world_bible = (
        select(backlog_items.c.id)
        .where(
            backlog_items.c.plan_id == plans.c.id,
            backlog_items.c.backlog_id == WORLD_BIBLE_ITEM,
            backlog_items.c.status == bl.COMPLETE,
        )
        .exists()
    )
    rows = conn.execute(
        select(plans.c.id.label("plan_id"), plans.c.agent_id, plans.c.persona_id)
        .where(plans.c.status != "archived", past_world_bible, ~active_entry)
        .order_by(plans.c.id)
    ).mappings()
    return [dict(r) for r in rows]


def plans_with_stale_world_bible(
    conn: Connection, now: datetime, stale_after: timedelta
) -> list[dict[str, Any]]:
    """Running plans whose newest active world-bible entry is older than `stale_after`."""
    newest = (
        select(func.max(world_bible_entries.c.created_at))
        .where(world_bible_entries.c.plan_id == plans.c.id, world_bible_entries.c.active.is_(True))
        .scalar_subquery()
    )
    rows = conn.execute(
        select(plans.c.id.label("plan_id"), plans.c.agent_id, plans.c.persona_id)
        .where(plans.c.status == "in_progress", newest < now - stale_after)
        .order_by(plans.c.id)
    ).mappings()
    return [dict(r) for r in rows]
