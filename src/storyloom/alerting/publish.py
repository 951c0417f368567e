"""Alert publishers' one entry point: fire and resolve alerts inside the caller's transaction (outbox)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, insert, select, update

from storyloom import signals
from storyloom.domain.alerts import FIRING, RESOLVED
from storyloom.domain.alerts import fingerprint as label_fingerprint
from storyloom.domain.catalog import CATALOG
from storyloom.store.bulk import KEY, update_many
from storyloom.store.db import after_commit
from storyloom.store.events import ALERT_STATE, record_events
from storyloom.store.tables import alert_changes, alert_history, alerts

NOTIFY_CHANNEL = "notify"
UNACKNOWLEDGED = {"acknowledged_by": None, "acknowledged_note": None, "acknowledged_at": None}


@dataclass(frozen=True)
class AlertSignal:
    """An alert a publisher wants firing: catalog id, identifying labels and a description."""

    alert_id: str
    labels: Mapping[str, Any]
    description: str
    severity: str | None = None
    title: str | None = None
    source: str | None = None
    annotations: Mapping[str, str] | None = None  # replaces the stored ones when given
    starts_at: datetime | None = None  # an earlier start for an alert that fires now (ingest's startsAt)


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
    """Make a catalog alert firing (insert, re-fire, or refresh); returns its fingerprint.

    An id the catalog does not know raises: a typo must not fire a wrongly labelled alert. Alerts from
    outside (ingest) go through `fire_many` with their own source.
    """
    if signal.alert_id not in CATALOG:
        raise ValueError(f"unknown alert id {signal.alert_id!r}: add it to domain/catalog.py first")
    return fire_many(conn, [signal], now)[0]


def fire_many(conn: Connection, signals_: Sequence[AlertSignal], now: datetime) -> list[str]:
    """`fire` for a batch, in set-based statements: one lookup, one insert, one update per column set,
    and the history, outbox and audit rows inserted together. Returns the fingerprints in input order.

    An alert named twice in the batch ends as the last one says, with each change recorded in order.
    """
    prepared = [(signal, alert_labels(signal)) for signal in signals_]
    fps = [alert_fingerprint(labels) for _, labels in prepared]
    current = _current_states(conn, fps)
    inserts: dict[str, dict[str, Any]] = {}
    updates: dict[str, dict[str, Any]] = {}
    changes: list[StateChange] = []
    for (signal, labels), fp in zip(prepared, fps, strict=True):
        values = _firing_values(signal, labels, now)
        state = current.get(fp)
        becomes_firing = state is None or state[0] != FIRING
        if becomes_firing:
            # A re-fire is a new incident: nobody is on it yet (the resolved one kept its acknowledgement).
            values.update(starts_at=min(signal.starts_at or now, now), ends_at=None, **UNACKNOWLEDGED)
        if signal.annotations is not None:
            values["annotations"] = dict(signal.annotations)
        if fp in inserts:
            inserts[fp].update(values)
        elif state is None:
            inserts[fp] = {
                "fingerprint": fp,
                "alert_id": signal.alert_id,
                "source": labels["source"],
                "plan_id": labels.get("plan_id"),
                "annotations": {},
                **values,
            }
        else:
            updates.setdefault(fp, {}).update(values)
        if state is None:
            changes.append(StateChange(fp, FIRING, labels["severity"], "fired"))
        elif state[0] != FIRING:
            changes.append(StateChange(fp, FIRING, labels["severity"], "fired again"))
        elif state[1] != labels["severity"]:
            changes.append(
                StateChange(fp, FIRING, labels["severity"], f"severity {state[1]} → {labels['severity']}")
            )
        current[fp] = (FIRING, labels["severity"])
    if inserts:
        conn.execute(insert(alerts), list(inserts.values()))
    update_many(conn, alerts, alerts.c.fingerprint, [{KEY: fp, **values} for fp, values in updates.items()])
    record_changes(conn, changes, now)
    return fps


def resolve(
    conn: Connection, fingerprints: Iterable[str], now: datetime, reason: str = "cause cleared"
) -> int:
    """Resolve the firing alerts among `fingerprints`; returns how many changed."""
    return len(resolve_fingerprints(conn, fingerprints, now, reason))


def resolve_fingerprints(
    conn: Connection, fingerprints: Iterable[str], now: datetime, reason: str = "cause cleared"
) -> list[str]:
    """Resolve the firing alerts among `fingerprints` in set-based statements; returns the ones resolved."""
    wanted = list(dict.fromkeys(fingerprints))
    firing = [(fp, state[1]) for fp, state in _current_states(conn, wanted).items() if state[0] == FIRING]
    if not firing:
        return []
    for chunk in _chunks([fp for fp, _ in firing]):
        conn.execute(
            update(alerts)
            .where(alerts.c.fingerprint.in_(chunk))
            .values(status=RESOLVED, ends_at=now, updated_at=now, generated_at=now)
        )
    record_changes(conn, [StateChange(fp, RESOLVED, severity, reason) for fp, severity in firing], now)
    return [fp for fp, _ in firing]


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


_CHUNK = 500  # fingerprints per IN (...) list: far below SQLite's and PostgreSQL's parameter limits


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _current_states(conn: Connection, fps: Sequence[str]) -> dict[str, tuple[str, str]]:
    """(status, severity) of the stored alerts among `fps`."""
    found: dict[str, tuple[str, str]] = {}
    for chunk in _chunks(sorted(set(fps))):
        rows = conn.execute(
            select(alerts.c.fingerprint, alerts.c.status, alerts.c.severity).where(
                alerts.c.fingerprint.in_(chunk)
            )
        )
        found.update((r.fingerprint, (r.status, r.severity)) for r in rows)
    return found


def _firing_values(signal: AlertSignal, labels: Mapping[str, str], now: datetime) -> dict[str, Any]:
    kind = CATALOG.get(signal.alert_id)
    return {
        "status": FIRING,
        "severity": labels["severity"],
        "title": signal.title or (kind.title if kind else signal.alert_id),
        "description": signal.description,
        "labels": dict(labels),
        "generated_at": now,
        "updated_at": now,
    }


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


def _wake_notifier() -> None:
    signals.wake(NOTIFY_CHANNEL)
