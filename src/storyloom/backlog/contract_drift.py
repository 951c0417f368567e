"""Contract drift: resume requests rejected by the contract raise `backlog:contract-drift`, per plan and code.

Warning at one rejection within 24h, error from two; the scheduled health evaluation settles the
severity and resolves the alerts with no rejection left in the window.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, select

from storyloom.alerting.publish import AlertSignal, fire, resolve
from storyloom.domain.alerts import FIRING
from storyloom.domain.catalog import BACKLOG_CONTRACT_DRIFT
from storyloom.store.events import BACKLOG_CONTRACT, record_event
from storyloom.store.tables import alerts, workflow_events

DRIFT_WINDOW = timedelta(hours=24)


def _contract_events(conn: Connection, plan_id: str | None, since: datetime) -> list[dict[str, Any]]:
    query = select(workflow_events.c.payload).where(
        workflow_events.c.kind == BACKLOG_CONTRACT, workflow_events.c.created_at >= since
    )
    if plan_id is not None:
        query = query.where(workflow_events.c.plan_id == plan_id)
    return [dict(p) for p in conn.execute(query).scalars()]


def drift_severity(count: int) -> str | None:
    """Contract drift: warning at 1 event within 24h, error from 2; None when there is none."""
    if count <= 0:
        return None
    return "warning" if count == 1 else "error"


def record_contract_rejection(conn: Connection, event: dict[str, Any], now: datetime) -> str:
    """Write the `fiction.backlog.contract` event and raise/escalate `backlog:contract-drift` (plan, code)."""
    record_event(conn, BACKLOG_CONTRACT, event, now)
    plan_id, code = event["plan_id"], event["code"]
    count = sum(1 for e in _contract_events(conn, plan_id, now - DRIFT_WINDOW) if e.get("code") == code)
    severity = drift_severity(count) or "warning"
    return fire(
        conn,
        AlertSignal(
            BACKLOG_CONTRACT_DRIFT,
            {"plan_id": plan_id, "code": code},
            f"{count} resume request(s) of plan {plan_id} rejected with {code} within 24h; "
            f"latest: {event.get('detail')}",
            severity=severity,
        ),
        now,
    )


def reconcile_contract_drift(conn: Connection, now: datetime) -> int:
    """Resolve drift alerts with no contract event in 24h and settle the severity of the rest.

    Call it from the scheduled health evaluation; returns how many alerts it resolved or changed.
    """
    changed = 0
    rows = conn.execute(
        select(alerts.c.fingerprint, alerts.c.labels, alerts.c.severity, alerts.c.description).where(
            alerts.c.alert_id == BACKLOG_CONTRACT_DRIFT, alerts.c.status == FIRING
        )
    ).all()
    for row in rows:
        plan_id, code = row.labels.get("plan_id"), row.labels.get("code")
        count = sum(1 for e in _contract_events(conn, plan_id, now - DRIFT_WINDOW) if e.get("code") == code)
        severity = drift_severity(count)
        if severity is None:
            changed += resolve(conn, [row.fingerprint], now, "no rejected resume within 24h")
        elif severity != row.severity:
            fire(
                conn,
                AlertSignal(
                    BACKLOG_CONTRACT_DRIFT,
                    {"plan_id": plan_id, "code": code},
                    row.description,
                    severity=severity,
                ),
                now,
            )
            changed += 1
    return changed
