"""When a pushed alert stops firing, as Alertmanager decides it for `POST /api/v2/alerts`.

A client such as Prometheus stamps each alert with a future `endsAt` and re-sends it while it fires; the
alert resolves once `endsAt` passes without a re-send. An alert without `endsAt` ends `resolve_timeout`
after it was received, and an `endsAt` at or before now resolves it at once. Deliberate difference: the
latest send always sets the end (Alertmanager keeps an earlier send's later explicit `endsAt`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

DEFAULT_RESOLVE_TIMEOUT = timedelta(minutes=5)


def ingested_alert_end(ends_at: datetime | None, now: datetime, resolve_timeout: timedelta) -> datetime:
    """The moment a posted alert resolves unless it is sent again: its `endsAt`, else now + resolve_timeout."""
    return ends_at if ends_at is not None else now + resolve_timeout


def has_ended(end: datetime | None, now: datetime) -> bool:
    """Alertmanager's `Resolved()`: an end at or before now; an alert with no end fires until told."""
    return end is not None and end <= now


def seconds_until(end: datetime | None, now: datetime, longest: float) -> float:
    """How long a sweep may sleep before `end` is due: never negative, never over `longest`."""
    if end is None:
        return longest
    return min(longest, max(0.0, (end - now).total_seconds()))
