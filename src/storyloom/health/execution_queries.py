"""The SQL reads over planner executions behind PlannerHealth and the evaluated alerts: failures, latency
percentiles and burn windows, critique outcomes. Every function reads; none writes; percentiles are ranked
in SQL over a bounded recent sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select

from storyloom.domain import backlog as bl
from storyloom.store.aggregates import PERCENTILES, count_when, percentiles
from storyloom.store.tables import backlog_items, planner_executions, plans

PASSED_CRITIQUE = ("idle", "used")
EXHAUSTED_CRITIQUE = ("count-exhausted", "token-exhausted")

# The recent sample the percentiles, the good ratio and the critique counts are taken over: executions
# finished within SAMPLE_WINDOW, at most SAMPLE_SIZE of the newest.
SAMPLE_WINDOW = timedelta(hours=24)
SAMPLE_SIZE = 5_000


def _ms(delta: timedelta) -> float:
    return delta.total_seconds() * 1000.0


FIXED_ITEMS = (bl.COMPLETE, bl.CANCELLED)


def recent_failures_by_plan(conn: Connection, since: datetime) -> list[dict[str, Any]]:
    """Unfixed failed executions finished since `since`, per plan (index on outcome, finished_at).

    A failure is fixed once its item has completed or was cancelled since: a retry or a resume that
    succeeded leaves nothing to act on. Failures of an item that is gone still count (never hide one).
    """
    pe = planner_executions.c
    item = backlog_items.c
    failed = (
        select(
            pe.plan_id,
            func.count().label("failures"),
            func.count(func.distinct(pe.backlog_id)).label("items"),
            func.max(pe.finished_at).label("last_failure_at"),
        )
        .select_from(
            planner_executions.outerjoin(
                backlog_items, and_(item.plan_id == pe.plan_id, item.backlog_id == pe.backlog_id)
            )
        )
        .where(
            pe.outcome == "failed",
            pe.finished_at >= since,
            or_(item.status.is_(None), item.status.not_in(FIXED_ITEMS)),
        )
        .group_by(pe.plan_id)
        .subquery()
    )
    rows = conn.execute(
        select(failed, plans.c.agent_id, plans.c.persona_id)
        .select_from(failed.outerjoin(plans, plans.c.id == failed.c.plan_id))
        .order_by(failed.c.plan_id)
    ).mappings()
    return [dict(r) for r in rows]


def any_execution(conn: Connection) -> bool:
    return conn.execute(select(planner_executions.c.id).limit(1)).first() is not None


def count_waiting_plans(conn: Connection) -> int:
    """Plans that could run (not archived)."""
    return int(conn.execute(select(func.count()).where(plans.c.status != "archived")).scalar_one())


@dataclass(frozen=True)
class BurnWindows:
    """(total, bad) executions per window, bad = latency over the SLO threshold."""

    counts: dict[timedelta, tuple[int, int]]

    def rate(self, window: timedelta, objective: float) -> float:
        from storyloom.domain.slo import burn_rate

        total, bad = self.counts.get(window, (0, 0))
        return burn_rate(bad, total, objective)


def latency_windows(
    conn: Connection, now: datetime, threshold: timedelta, windows: Sequence[timedelta]
) -> BurnWindows:
    """One range scan over the longest window counts every window's total and slow executions."""
    longest = max(windows)
    slow = planner_executions.c.latency_ms > _ms(threshold)
    columns = []
    for window in windows:
        inside = planner_executions.c.finished_at >= now - window
        columns += [count_when(inside), count_when(and_(inside, slow))]
    row = conn.execute(
        select(*columns).where(
            planner_executions.c.finished_at >= now - longest, planner_executions.c.finished_at <= now
        )
    ).one()
    return BurnWindows({w: (int(row[2 * i]), int(row[2 * i + 1])) for i, w in enumerate(windows)})


def _execution_sample(now: datetime, *columns: Any) -> Any:
    return (
        select(*columns)
        .where(
            planner_executions.c.finished_at >= now - SAMPLE_WINDOW,
            planner_executions.c.finished_at <= now,
        )
        .order_by(planner_executions.c.finished_at.desc())
        .limit(SAMPLE_SIZE)
        .subquery()
    )


@dataclass(frozen=True)
class LatencySummary:
    sample: int
    good: int
    percentiles: dict[int, float | None]

    @property
    def good_ratio(self) -> float | None:
        return self.good / self.sample if self.sample else None


def latency_summary(conn: Connection, now: datetime, threshold: timedelta) -> LatencySummary:
    sample = _execution_sample(now, planner_executions.c.latency_ms)
    total, good = conn.execute(select(func.count(), count_when(sample.c.latency_ms <= _ms(threshold)))).one()
    if not total:
        return LatencySummary(0, 0, dict.fromkeys(PERCENTILES))
    ranked = _execution_sample(now, planner_executions.c.latency_ms)
    return LatencySummary(int(total), int(good), percentiles(conn, ranked, ranked.c.latency_ms, int(total)))


def critique_counts(conn: Connection, now: datetime) -> dict[str, int]:
    """Executions per critique status over the recent sample."""
    sample = _execution_sample(now, planner_executions.c.critique_status)
    return {
        str(status): int(count)
        for status, count in conn.execute(
            select(sample.c.critique_status, func.count()).group_by(sample.c.critique_status)
        )
    }
