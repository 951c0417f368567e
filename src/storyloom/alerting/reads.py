"""Alerting reads for people: the queries the API, the console and the health report share.

The notifier and the delivery worker read rows strictly: a row they cannot process is their problem to
set aside. Reads must never fail on one: here an alert or silence row is repaired for display (see
`storyloom.domain.readable`) and comes with the problems found, which the views show as `unreadable`.
Every function here reads; none writes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, case, func, select

from storyloom.alerting.delivery.status import SETTLED_STATUSES, DeliveryStatus
from storyloom.alerting.mute import MuteIndex
from storyloom.alerting.rows import alert_from_row
from storyloom.alerting.setup import AlertingRuntime
from storyloom.domain.alerts import FIRING, Alert
from storyloom.domain.matchers import parse_matcher
from storyloom.domain.readable import readable_list, readable_map, readable_text
from storyloom.domain.silences import Silence
from storyloom.store.aggregates import count_when, percentiles
from storyloom.store.tables import aggregation_groups, alerts, deliveries, group_members, silences

_ALERT_TEXTS = ("alert_id", "status", "severity", "title", "description")


@dataclass(frozen=True)
class ReadableAlert:
    alert: Alert
    problems: list[str]


def readable_alert(row: Mapping[Any, Any]) -> ReadableAlert:
    """An `alerts` row as an Alert fit to show, and what had to be repaired to show it."""
    fixed = dict(row)
    fixed["labels"], problems = readable_map(row["labels"], "labels")
    fixed["annotations"], annotation_problems = readable_map(row.get("annotations") or {}, "annotations")
    problems += annotation_problems
    for name in _ALERT_TEXTS:
        fixed[name], text_problems = readable_text(row[name], name)
        problems += text_problems
    return ReadableAlert(alert_from_row(fixed), problems)


@dataclass(frozen=True)
class ReadableSilence:
    """A silence row's matchers as text fit to show, and the silence when every matcher still parses."""

    matchers: list[str]
    silence: Silence | None
    problems: list[str]


def readable_silence(row: Mapping[Any, Any]) -> ReadableSilence:
    """A silence whose matchers no longer parse is shown, marked, and mutes nothing."""
    matchers, problems = readable_list(row["matchers"], "matchers")
    parsed = []
    for i, text in enumerate(matchers):
        try:
            parsed.append(parse_matcher(text))
        except ValueError as exc:
            problems.append(f"matchers.{i}: {readable_text(str(exc), '')[0]}")
    silence = None
    if not problems:
        silence = Silence(
            silence_id=row["id"],
            matchers=tuple(parsed),
            starts_at=row["starts_at"],
            ends_at=row["ends_at"],
            comment=row["comment"],
            created_by=row["created_by"],
        )
    return ReadableSilence(matchers, silence, problems)


def read_mute_index(conn: Connection, alerting: AlertingRuntime, now: datetime) -> MuteIndex:
    """What mutes what right now, for a read: repaired firing alerts inhibit, unparsable silences mute nothing."""
    firing: list[Alert] = []
    if alerting.inhibit_rules:
        rows = conn.execute(select(alerts).where(alerts.c.status == FIRING)).mappings()
        firing = [readable_alert(row).alert for row in rows]
    active = conn.execute(
        select(silences)
        .where(silences.c.starts_at <= now, silences.c.ends_at > now)
        .order_by(silences.c.created_at, silences.c.id)
    ).mappings()
    muting = [s.silence for s in map(readable_silence, active) if s.silence is not None]
    return MuteIndex(alerting.inhibit_rules, firing, muting, now)


# --- where alerts were routed -----------------------------------------------------------------------


def _route_order(route_id: str) -> tuple[int, ...]:
    return tuple(int(p) for p in route_id.split(".") if p.isdigit())


def routed_receivers(conn: Connection, fingerprints: Sequence[str]) -> dict[str, list[str]]:
    """The receivers of the aggregation groups each alert is in, in routing order, in one query."""
    if not fingerprints:
        return {}
    rows = conn.execute(
        select(group_members.c.fingerprint, aggregation_groups.c.route_id, aggregation_groups.c.receiver)
        .join(aggregation_groups, aggregation_groups.c.group_key == group_members.c.group_key)
        .where(group_members.c.fingerprint.in_(fingerprints))
    ).all()
    out: dict[str, list[str]] = {}
    for row in sorted(rows, key=lambda r: (_route_order(r.route_id), r.receiver)):
        out.setdefault(row.fingerprint, []).append(row.receiver)
    return out


def routes_for_alert(conn: Connection, fingerprint: str) -> list[str]:
    """The receivers of the aggregation groups this alert is in, in routing order."""
    return routed_receivers(conn, [fingerprint]).get(fingerprint, [])


# --- deliveries -------------------------------------------------------------------------------------

DELIVERY_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class DeliveryStats:
    success_ratio: float | None
    p95_ms: float | None
    pending: int
    dead: int


def delivery_stats(conn: Connection, now: datetime) -> DeliveryStats:
    """Success ratio and p95 latency over deliveries created in the recent window; pending/dead now."""
    d = deliveries.c
    recent = select(d.status, d.latency_ms).where(d.created_at >= now - DELIVERY_WINDOW).subquery()
    delivered = recent.c.status == DeliveryStatus.DELIVERED
    ok, settled, timed = conn.execute(
        select(
            count_when(delivered),
            count_when(recent.c.status.in_(SETTLED_STATUSES)),
            count_when(and_(delivered, recent.c.latency_ms.is_not(None))),
        )
    ).one()
    p95: float | None = None
    if timed:
        # the latency as a CASE keeps the planner on the covering (created_at, status, latency_ms) index
        # instead of walking every delivered row ever through the status index
        latency = case((delivered, recent.c.latency_ms)).label("latency_ms")
        inner = select(latency).subquery()
        latencies = select(inner.c.latency_ms).where(inner.c.latency_ms.is_not(None)).subquery()
        p95 = percentiles(conn, latencies, latencies.c.latency_ms, int(timed), (95,))[95]
    counts: dict[str, int] = {
        str(status): int(count)
        for status, count in conn.execute(
            select(d.status, func.count())
            .where(d.status.in_((DeliveryStatus.PENDING, DeliveryStatus.DEAD)))
            .group_by(d.status)
        )
    }
    return DeliveryStats(
        success_ratio=int(ok) / int(settled) if settled else None,
        p95_ms=p95,
        pending=int(counts.get(DeliveryStatus.PENDING, 0)),
        dead=int(counts.get(DeliveryStatus.DEAD, 0)),
    )
