"""The overview's SLO series (small SQL reads over the recent window) and their server-drawn SVG sparklines.

Series are bucketed over an adaptive window: the last 24 hours, or less when the first activity is more
recent (a fresh demo still shows a curve), never under ten minutes. Everything here is read-only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from markupsafe import Markup, escape
from sqlalchemy import Connection, and_, func, select

from storyloom.store.events import BACKLOG_TELEMETRY
from storyloom.store.tables import (
    backlog_items,
    deliveries,
    planner_executions,
    workflow_events,
)

BUCKETS = 12
MAX_WINDOW = timedelta(hours=24)
MIN_WINDOW = timedelta(minutes=10)
ROW_CAP = 20_000
EXHAUSTED = ("count-exhausted", "token-exhausted")
PASSED = ("idle", "used")


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    buckets: int = BUCKETS

    @property
    def step(self) -> timedelta:
        return (self.end - self.start) / self.buckets

    def index(self, moment: datetime) -> int | None:
        if moment < self.start or moment > self.end:
            return None
        return min(int((moment - self.start) / self.step), self.buckets - 1)

    def label(self) -> str:
        minutes = (self.end - self.start).total_seconds() / 60
        span = f"{minutes / 60:.0f} h" if minutes >= 120 else f"{minutes:.0f} min"
        return f"last {span} in {self.buckets} buckets"


def window(conn: Connection, now: datetime) -> Window:
    """From the first activity of the last 24 h (executions or deliveries) to now."""
    since = now - MAX_WINDOW
    firsts = [
        conn.execute(
            select(func.min(planner_executions.c.finished_at)).where(
                planner_executions.c.finished_at >= since
            )
        ).scalar(),
        conn.execute(
            select(func.min(deliveries.c.created_at)).where(deliveries.c.created_at >= since)
        ).scalar(),
    ]
    known = [f for f in firsts if f is not None]
    start = min(known) if known else now - MIN_WINDOW
    start = min(start, now - MIN_WINDOW)
    return Window(start=start, end=now)


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


def latency_series(conn: Connection, win: Window) -> dict[str, list[float | None]]:
    rows = conn.execute(
        select(planner_executions.c.finished_at, planner_executions.c.latency_ms)
        .where(planner_executions.c.finished_at >= win.start)
        .order_by(planner_executions.c.finished_at.desc())
        .limit(ROW_CAP)
    ).all()
    per: list[list[float]] = [[] for _ in range(win.buckets)]
    everything: list[float] = []
    for finished, latency in rows:
        i = win.index(finished)
        if i is not None:
            per[i].append(float(latency))
            everything.append(float(latency))
    return {
        "p50": [percentile(b, 0.5) for b in per],
        "p95": [percentile(b, 0.95) for b in per],
        "now_p50": [percentile(everything, 0.5)],
        "now_p95": [percentile(everything, 0.95)],
    }


def queue_series(conn: Connection, win: Window, now: datetime) -> dict[str, Any]:
    """Pending depth per bucket, rebuilt backwards from today's depth and the status transitions since."""
    depth_now = int(
        conn.execute(
            select(func.count()).select_from(backlog_items).where(backlog_items.c.status == "pending")
        ).scalar_one()
    )
    oldest_ready = conn.execute(
        select(func.min(backlog_items.c.ready_at)).where(
            and_(backlog_items.c.status == "pending", backlog_items.c.ready_at.is_not(None))
        )
    ).scalar()
    ready = int(
        conn.execute(
            select(func.count())
            .select_from(backlog_items)
            .where(and_(backlog_items.c.status == "pending", backlog_items.c.ready_at.is_not(None)))
        ).scalar_one()
    )
    rows = conn.execute(
        select(workflow_events.c.created_at, workflow_events.c.payload)
        .where(and_(workflow_events.c.kind == BACKLOG_TELEMETRY, workflow_events.c.created_at >= win.start))
        .order_by(workflow_events.c.id)
        .limit(ROW_CAP)
    ).all()
    changes = []
    for at, payload in rows:
        payload = payload or {}
        delta = int(payload.get("status") == "pending") - int(payload.get("previous_status") == "pending")
        if delta:
            changes.append((at, delta))
    depth = depth_now - sum(d for _, d in changes)
    peaks: list[float | None] = [None] * win.buckets
    cursor = 0
    for i in range(win.buckets):
        bucket_end = win.start + win.step * (i + 1)
        peak = depth
        while cursor < len(changes) and changes[cursor][0] <= bucket_end:
            depth += changes[cursor][1]
            peak = max(peak, depth)
            cursor += 1
        peaks[i] = float(max(peak, depth))
    age = (now - oldest_ready).total_seconds() if oldest_ready else 0.0
    return {"depth": peaks, "depth_now": depth_now, "ready": ready, "oldest_age_s": max(age, 0.0)}


def critique_series(conn: Connection, win: Window) -> dict[str, Any]:
    rows = conn.execute(
        select(planner_executions.c.finished_at, planner_executions.c.critique_status)
        .where(planner_executions.c.finished_at >= win.start)
        .limit(ROW_CAP)
    ).all()
    passed = [0] * win.buckets
    judged = [0] * win.buckets
    exhausted = [0] * win.buckets
    for finished, status in rows:
        i = win.index(finished)
        if i is None or status not in PASSED + EXHAUSTED:
            continue
        judged[i] += 1
        passed[i] += status in PASSED
        exhausted[i] += status in EXHAUSTED
    total = sum(judged)
    return {
        "pass_ratio": [p / j if j else None for p, j in zip(passed, judged, strict=True)],
        "exhausted": [float(e) for e in exhausted],
        "pass_now": sum(passed) / total if total else None,
        "exhausted_now": sum(exhausted),
    }


def delivery_series(conn: Connection, win: Window) -> dict[str, Any]:
    rows = conn.execute(
        select(deliveries.c.created_at, deliveries.c.status)
        .where(deliveries.c.created_at >= win.start)
        .limit(ROW_CAP)
    ).all()
    good = [0] * win.buckets
    settled = [0] * win.buckets
    for created, status in rows:
        i = win.index(created)
        if i is None or status not in ("delivered", "dead", "failed"):
            continue
        settled[i] += 1
        good[i] += status == "delivered"
    counts: dict[str, int] = dict(
        conn.execute(select(deliveries.c.status, func.count()).group_by(deliveries.c.status)).all()
    )
    done = counts.get("delivered", 0) + counts.get("dead", 0) + counts.get("failed", 0)
    return {
        "success": [g / s if s else None for g, s in zip(good, settled, strict=True)],
        "success_now": counts.get("delivered", 0) / done if done else None,
        "pending": counts.get("pending", 0),
        "dead": counts.get("dead", 0),
    }


def slo_series(conn: Connection, now: datetime) -> dict[str, Any]:
    win = window(conn, now)
    return {
        "window": win.label(),
        "latency": latency_series(conn, win),
        "queue": queue_series(conn, win, now),
        "critique": critique_series(conn, win),
        "delivery": delivery_series(conn, win),
    }


# --- drawing -----------------------------------------------------------------------------------------


def _points(values: Sequence[float | None], lo: float, hi: float, width: int, height: int) -> list[str]:
    """Polyline segments (a gap where a bucket has no data)."""
    n = len(values)
    span = hi - lo or 1.0
    segments: list[str] = []
    current: list[str] = []
    for i, value in enumerate(values):
        if value is None:
            if current:
                segments.append(" ".join(current))
                current = []
            continue
        x = 2 + (width - 4) * (i / max(n - 1, 1))
        y = height - 3 - (height - 6) * ((value - lo) / span)
        current.append(f"{x:.1f},{y:.1f}")
    if current:
        segments.append(" ".join(current))
    return segments


def sparkline(
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    label: str,
    fixed: tuple[float, float] | None = None,
    width: int = 160,
    height: int = 40,
) -> Markup:
    """An inline SVG of one or two series; `label` is its accessible name (the numbers are also shown as text)."""
    known = [v for _, values in series for v in values if v is not None]
    if not known:
        return Markup(
            f'<div class="spark spark-none" role="img" aria-label="{escape(label)}: no data yet">no data yet</div>'
        )
    if fixed:
        lo, hi = fixed
    else:
        lo, hi = min(min(known), 0.0), max(known)
    parts = [
        f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(label)}" preserveAspectRatio="none">',
        f"<title>{escape(label)}</title>",
        f'<line class="spark-base" x1="0" y1="{height - 2}" x2="{width}" y2="{height - 2}"/>',
    ]
    for index, (name, values) in enumerate(series):
        for segment in _points(values, lo, hi, width, height):
            if " " not in segment:
                x, y = segment.split(",")
                parts.append(
                    f'<circle class="spark-{index}" cx="{x}" cy="{y}" r="1.8"><title>{escape(name)}</title></circle>'
                )
            else:
                parts.append(
                    f'<polyline class="spark-{index}" points="{segment}"><title>{escape(name)}</title></polyline>'
                )
    parts.append("</svg>")
    return Markup("".join(parts))
