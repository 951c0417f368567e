"""The alerting tables' rows as domain objects, read strictly (the notifier's side of the store).

A row that no longer parses is left out and reported, never guessed at: the notifier sets it aside. Reads
for people (API, console, health) go through `alerting.reads`, which repairs such rows for display.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import structlog
from sqlalchemy import Connection, select

from storyloom.domain.alerts import FIRING, Acknowledgement, Alert
from storyloom.domain.matchers import as_matchers
from storyloom.domain.silences import Silence
from storyloom.store.tables import alerts, silences

log = structlog.get_logger(__name__)

CHUNK = 500  # ids per IN (...) list: far below SQLite's and PostgreSQL's parameter limits

T = TypeVar("T")


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def alert_from_row(row: Mapping[Any, Any]) -> Alert:
    """An `alerts` table row as a domain Alert (SLO and links are stamped later, at notify or read time)."""
    return Alert(
        alert_id=row["alert_id"],
        fingerprint=row["fingerprint"],
        status=row["status"],
        severity=row["severity"],
        title=row["title"],
        description=row["description"],
        labels=dict(row["labels"] or {}),
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        generated_at=row["generated_at"],
        annotations=dict(row.get("annotations") or {}),
        acknowledgement=acknowledgement_from_row(row),
    )


def acknowledgement_from_row(row: Mapping[Any, Any]) -> Acknowledgement | None:
    """The row's acknowledgement (docs/operations.md "Acknowledge"); None while nobody has taken it."""
    if not row.get("acknowledged_by") or row.get("acknowledged_at") is None:
        return None
    return Acknowledgement(row["acknowledged_by"], row.get("acknowledged_note") or "", row["acknowledged_at"])


def _parsed(rows: Iterable[Mapping[Any, Any]], unreadable: dict[str, str] | None) -> Iterator[Alert]:
    """The rows as Alerts; a row that no longer parses is left out (and its error put in `unreadable`)."""
    for row in rows:
        try:
            yield alert_from_row(row)
        except Exception as exc:  # a poisoned row must not take its whole batch down
            if unreadable is not None:
                unreadable[row["fingerprint"]] = f"unreadable alert row: {type(exc).__name__}: {exc}"
            else:
                log.warning(
                    "ignoring an unreadable alert row", fingerprint=row["fingerprint"], error=str(exc)
                )


def load_alerts(
    conn: Connection, fingerprints: Collection[str], unreadable: dict[str, str] | None = None
) -> dict[str, Alert]:
    """The current state of these alerts, by fingerprint (unknown and unreadable ones are left out)."""
    found: dict[str, Alert] = {}
    for chunk in chunks(sorted(set(fingerprints))):
        rows = conn.execute(select(alerts).where(alerts.c.fingerprint.in_(chunk))).mappings()
        found.update((a.fingerprint, a) for a in _parsed(rows, unreadable))
    return found


def firing_alerts(conn: Connection) -> list[Alert]:
    rows = conn.execute(
        select(alerts).where(alerts.c.status == FIRING).order_by(alerts.c.starts_at)
    ).mappings()
    return list(_parsed(rows, None))


def silence_from_row(row: Mapping[Any, Any]) -> Silence | None:
    """None (and a log line) for a stored silence whose matchers no longer parse."""
    try:
        matchers = as_matchers(row["matchers"])
    except ValueError as exc:
        log.warning("ignoring a silence with an unreadable matcher", silence_id=row["id"], error=str(exc))
        return None
    return Silence(
        silence_id=row["id"],
        matchers=matchers,
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        comment=row["comment"],
        created_by=row["created_by"],
    )


def active_silences(conn: Connection, now: datetime) -> list[Silence]:
    rows = conn.execute(
        select(silences)
        .where(silences.c.starts_at <= now, silences.c.ends_at > now)
        .order_by(silences.c.created_at, silences.c.id)
    ).mappings()
    return [s for s in (silence_from_row(r) for r in rows) if s is not None]
