"""Alerting rows as people read them (API, console, health report), whatever an older version stored.

The notifier and the dispatcher read rows strictly: a row they cannot process is their problem to set
aside. Reads must never fail on one: here an alert or silence row is repaired for display (see
`storyloom.domain.readable`) and comes with the problems found, which the views show as `unreadable`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select

from storyloom.alerting.notify import MuteIndex, alert_from_row
from storyloom.alerting.setup import AlertingRuntime
from storyloom.domain.alerts import FIRING, Alert
from storyloom.domain.matchers import parse_matcher
from storyloom.domain.readable import readable_list, readable_map, readable_text
from storyloom.domain.silences import Silence
from storyloom.store.tables import alerts, silences

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
