"""The overview's SLO series (small SQL reads over the recent window) and their server-drawn SVG charts.

Series are bucketed over an adaptive window: the last 24 hours, or less when the first activity is more
recent (a fresh demo still shows a curve), never under ten minutes. Everything here is read-only.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
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
    """Pending depth at each bucket's end (the last is today's depth) and its peak within the bucket, rebuilt
    backwards from today's depth and the status transitions since."""
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
    ends: list[float | None] = [None] * win.buckets
    peaks: list[float | None] = [None] * win.buckets
    cursor = 0
    for i in range(win.buckets):
        bucket_end = win.start + win.step * (i + 1)
        peak = depth
        while cursor < len(changes) and (changes[cursor][0] <= bucket_end or i == win.buckets - 1):
            depth += changes[cursor][1]
            peak = max(peak, depth)
            cursor += 1
        ends[i], peaks[i] = float(depth), float(peak)
    age = (now - oldest_ready).total_seconds() if oldest_ready else 0.0
    return {
        "depth": ends,
        "peak": peaks,
        "depth_now": depth_now,
        "ready": ready,
        "oldest_age_s": max(age, 0.0),
    }


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
        "times": (f"{win.start:%H:%M}", f"now {win.end:%H:%M}"),
        "latency": latency_series(conn, win),
        "queue": queue_series(conn, win, now),
        "critique": critique_series(conn, win),
        "delivery": delivery_series(conn, win),
    }


# --- drawing -----------------------------------------------------------------------------------------

WIDTH, HEIGHT = 320, 150
LEFT, RIGHT, TOP, BOTTOM = 46, 10, 24, 22
FORMATS: dict[str, Callable[[float], str]] = {
    "ms": lambda v: f"{v:.0f} ms" if v < 2000 else f"{v / 1000:.1f} s",
    "%": lambda v: f"{v * 100:.0f}%",
    "items": lambda v: f"{v:.0f}",
}


@dataclass(frozen=True)
class Frame:
    """The plot area inside the axes and the value range it shows."""

    lo: float
    hi: float
    count: int

    def x(self, i: int) -> float:
        return LEFT + (WIDTH - LEFT - RIGHT) * (i / max(self.count - 1, 1))

    def y(self, value: float) -> float:
        span = self.hi - self.lo or 1.0
        return HEIGHT - BOTTOM - (HEIGHT - TOP - BOTTOM) * ((value - self.lo) / span)


def last_value(values: Sequence[float | None]) -> float | None:
    """The newest bucket with data: the figure a card prints beside its chart."""
    return next((v for v in reversed(values) if v is not None), None)


def _segments(values: Sequence[float | None], frame: Frame) -> list[list[tuple[float, float]]]:
    """Runs of consecutive points (a gap where a bucket has no data)."""
    runs: list[list[tuple[float, float]]] = [[]]
    for i, value in enumerate(values):
        if value is None:
            runs.append([])
        else:
            runs[-1].append((frame.x(i), frame.y(value)))
    return [run for run in runs if run]


def _axes(frame: Frame, unit: str, times: tuple[str, str]) -> list[str]:
    fmt = FORMATS[unit]
    bottom, right = HEIGHT - BOTTOM, WIDTH - RIGHT
    parts = [
        f'<line class="chart-axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}"/>',
        f'<line class="chart-axis" x1="{LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}"/>',
    ]
    for value in (frame.lo, (frame.lo + frame.hi) / 2, frame.hi):
        y = frame.y(value)
        parts.append(f'<line class="chart-grid" x1="{LEFT}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="chart-tick" x="{LEFT - 4}" y="{y + 3:.1f}" text-anchor="end">{escape(fmt(value))}</text>'
        )
    start, end = times
    parts.append(
        f'<text class="chart-tick" x="{LEFT}" y="{HEIGHT - 6}" text-anchor="start">{escape(start)}</text>'
    )
    parts.append(
        f'<text class="chart-tick" x="{right}" y="{HEIGHT - 6}" text-anchor="end">{escape(end)}</text>'
    )
    return parts


def chart(
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    label: str,
    unit: str,
    times: tuple[str, str] = ("", "now"),
    fixed: tuple[float, float] | None = None,
) -> Markup:
    """An SVG line chart with axes, tick labels in `unit` (ms, %, items), a marker on every point and the
    first series' newest value printed; `label` is its accessible name."""
    known = [v for _, values in series for v in values if v is not None]
    if not known:
        return Markup(
            f'<div class="chart chart-none" role="img" aria-label="{escape(label)}: no data yet">no data yet</div>'
        )
    lo, hi = fixed or (min(min(known), 0.0), max(known))
    if hi <= lo:
        hi = lo + (1.0 if unit != "%" else 0.01)
    frame = Frame(lo, hi, max(len(values) for _, values in series))
    newest = last_value(series[0][1])
    shown = FORMATS[unit](newest) if newest is not None else "—"
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}, now {escape(shown)}" '
        f'data-last="{"" if newest is None else newest}">',
        f"<title>{escape(label)}</title>",
        *_axes(frame, unit, times),
        f'<text class="chart-now" x="{WIDTH - RIGHT}" y="14" text-anchor="end">{escape(series[0][0])} now: {escape(shown)}</text>',
    ]
    for index, (name, values) in reversed(list(enumerate(series))):  # the first series drawn on top
        for run in _segments(values, frame):
            if len(run) > 1:
                points = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
                parts.append(f'<polyline class="chart-line chart-{index}" points="{points}"/>')
            parts.extend(
                f'<circle class="chart-dot chart-{index}" cx="{x:.1f}" cy="{y:.1f}" r="3"><title>{escape(name)}</title></circle>'
                for x, y in run
            )
    parts.append("</svg>")
    return Markup("".join(parts))
