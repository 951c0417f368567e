"""Alert publishers' one entry point: fire and resolve alerts inside the caller's transaction (outbox)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, insert, select, update

from storyloom import signals
from storyloom.domain.alerts import FIRING, RESOLVED
from storyloom.domain.alerts import fingerprint as label_fingerprint
from storyloom.domain.catalog import CATALOG
from storyloom.store.db import after_commit
from storyloom.store.events import ALERT_STATE, record_events
from storyloom.store.tables import alert_changes, alert_history, alerts

NOTIFY_CHANNEL = "notify"


@dataclass(frozen=True)
class AlertSignal:
    """An alert a publisher wants firing: catalog id, identifying labels and a description."""

    alert_id: str
    labels: Mapping[str, Any]
    description: str
    severity: str | None = None
    title: str | None = None
    source: str | None = None


def alert_labels(signal: AlertSignal) -> dict[str, str]:
    kind = CATALOG.get(signal.alert_id)
    severity = signal.severity or (kind.severity.value if kind else "warning")
    source = signal.source or (kind.source.value if kind else "ingest")
    labels = {k: str(v) for k, v in signal.labels.items() if v is not None and v != ""}
    labels.update(alert_id=signal.alert_id, severity=severity, source=source)
    return labels


def alert_fingerprint(labels: Mapping[str, str]) -> str:
    """The identity of an alert: its labels without `severity`, so an escalation stays one alert."""
    return label_fingerprint({k: v for k, v in labels.items() if k != "severity"})


def fire(conn: Connection, signal: AlertSignal, now: datetime) -> str:
    """Make the alert firing (insert, re-fire, or refresh); returns its fingerprint."""
    labels = alert_labels(signal)
    fp = alert_fingerprint(labels)
    kind = CATALOG.get(signal.alert_id)
    title = signal.title or (kind.title if kind else signal.alert_id)
    row = conn.execute(select(alerts.c.status, alerts.c.severity).where(alerts.c.fingerprint == fp)).first()
    values = {
        "status": FIRING,
        "severity": labels["severity"],
        "title": title,
        "description": signal.description,
        "labels": labels,
        "generated_at": now,
        "updated_at": now,
    }
    if row is None:
        conn.execute(
            insert(alerts).values(
                fingerprint=fp,
                alert_id=signal.alert_id,
                source=labels["source"],
                plan_id=labels.get("plan_id"),
                starts_at=now,
                ends_at=None,
                annotations={},
                **values,
            )
        )
        _changed(conn, fp, FIRING, labels["severity"], "fired", now)
    elif row.status != FIRING:
        conn.execute(
            update(alerts).where(alerts.c.fingerprint == fp).values(starts_at=now, ends_at=None, **values)
        )
        _changed(conn, fp, FIRING, labels["severity"], "fired again", now)
    else:
        conn.execute(update(alerts).where(alerts.c.fingerprint == fp).values(**values))
        if row.severity != labels["severity"]:
            _changed(
                conn, fp, FIRING, labels["severity"], f"severity {row.severity} → {labels['severity']}", now
            )
    return fp


def resolve(
    conn: Connection, fingerprints: Iterable[str], now: datetime, reason: str = "cause cleared"
) -> int:
    """Resolve the firing alerts among `fingerprints`; returns how many changed."""
    changed = 0
    for fp in fingerprints:
        row = conn.execute(
            select(alerts.c.severity).where(and_(alerts.c.fingerprint == fp, alerts.c.status == FIRING))
        ).first()
        if row is None:
            continue
        conn.execute(
            update(alerts)
            .where(alerts.c.fingerprint == fp)
            .values(status=RESOLVED, ends_at=now, updated_at=now, generated_at=now)
        )
        _changed(conn, fp, RESOLVED, row.severity, reason, now)
        changed += 1
    return changed


def resolve_matching(
    conn: Connection,
    alert_id: str | Sequence[str],
    now: datetime,
    reason: str = "cause cleared",
    **labels: str | None,
) -> int:
    """Resolve firing alerts of `alert_id` (one id or several) whose labels include all of `labels`."""
    wanted = {k: str(v) for k, v in labels.items() if v is not None}
    ids = [alert_id] if isinstance(alert_id, str) else list(alert_id)
    query = select(alerts.c.fingerprint, alerts.c.labels).where(
        and_(alerts.c.alert_id.in_(ids), alerts.c.status == FIRING)
    )
    if "plan_id" in wanted:
        query = query.where(alerts.c.plan_id == wanted["plan_id"])
    fps = [r.fingerprint for r in conn.execute(query) if all(r.labels.get(k) == v for k, v in wanted.items())]
    return resolve(conn, fps, now, reason)


@dataclass(frozen=True)
class StateChange:
    """One alert's move to `status`, as its history, the notifier's outbox and the audit log record it."""

    fingerprint: str
    status: str
    severity: str
    reason: str


def record_changes(conn: Connection, changes: Sequence[StateChange], now: datetime) -> None:
    """Write history, outbox rows and audit events for many changes at once (one statement per table)."""
    if not changes:
        return
    conn.execute(
        insert(alert_history),
        [
            {
                "fingerprint": c.fingerprint,
                "status": c.status,
                "severity": c.severity,
                "reason": c.reason,
                "at": now,
            }
            for c in changes
        ],
    )
    conn.execute(
        insert(alert_changes),
        [{"fingerprint": c.fingerprint, "status": c.status, "created_at": now} for c in changes],
    )
    record_events(
        conn,
        ALERT_STATE,
        [
            {"fingerprint": c.fingerprint, "status": c.status, "severity": c.severity, "reason": c.reason}
            for c in changes
        ],
        now,
    )
    after_commit(conn, _wake_notifier)


def _changed(conn: Connection, fp: str, status: str, severity: str, reason: str, now: datetime) -> None:
    record_changes(conn, [StateChange(fp, status, severity, reason)], now)


def _wake_notifier() -> None:
    signals.wake(NOTIFY_CHANNEL)
