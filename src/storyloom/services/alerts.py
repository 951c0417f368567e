"""Alerts as operators read them (mute state computed at read time, nothing sent), the routing tree with
secrets redacted, route tests, and the Alertmanager-compatible ingest."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any

from sqlalchemy import Connection, String, cast, select

from storyloom.alerting import publish
from storyloom.alerting.mute import MuteIndex
from storyloom.alerting.notify import enrich
from storyloom.alerting.reads import read_mute_index, readable_alert, routes_for_alert
from storyloom.alerting.receivers.base import ReceiverSpec, redact_url
from storyloom.alerting.setup import AlertingRuntime
from storyloom.domain.alerts import FIRING, RESOLVED, Alert, rfc3339
from storyloom.domain.catalog import CATALOG, Severity
from storyloom.domain.durations import format_duration
from storyloom.domain.expiry import DEFAULT_RESOLVE_TIMEOUT, has_ended, ingested_alert_end
from storyloom.domain.routing import group_key, receivers_for
from storyloom.services.errors import Invalid, NotFound
from storyloom.store.bulk import KEY, update_many
from storyloom.store.db import Database
from storyloom.store.tables import alert_history, alerts, deliveries

STATUSES = (FIRING, RESOLVED, "all")
SEVERITIES = tuple(s.value for s in Severity)
REDACTED = "<redacted>"
INGEST_SOURCE = "ingest"


# --- reading alerts ---------------------------------------------------------------------------------


def alert_view(
    alert: Alert, alerting: AlertingRuntime, mutes: MuteIndex, now: datetime, unreadable: Sequence[str] = ()
) -> dict[str, Any]:
    """An alert (docs/reference/payloads.md) and who mutes it now: `silenced_by` (silence ids), `inhibited_by` (alert fingerprints);
    `unreadable` (only when set) lists what was repaired to show a row an older version stored."""
    firing = alert.status == FIRING
    view = {
        **enrich(alert, alerting, now).to_payload(),
        "silenced_by": mutes.silenced_by(alert) if firing else [],
        "inhibited_by": mutes.inhibited_by(alert) if firing else [],
    }
    if unreadable:
        view["unreadable"] = list(unreadable)
    return view


def list_alerts(
    conn: Connection,
    alerting: AlertingRuntime,
    now: datetime,
    *,
    status: str = "all",
    severity: str | None = None,
    plan_id: str | None = None,
    alert_id: str | None = None,
    receiver: str | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    """Firing first, then newest; `receiver` keeps alerts the current routing tree sends to it."""
    if status not in STATUSES:
        raise Invalid.field(["query", "status"], f"unknown status {status!r}; use {', '.join(STATUSES)}")
    if severity is not None and severity not in SEVERITIES:
        raise Invalid.field(
            ["query", "severity"], f"unknown severity {severity!r}; use {', '.join(SEVERITIES)}"
        )
    query = select(alerts)
    if status != "all":
        query = query.where(alerts.c.status == status)
    if severity:
        query = query.where(alerts.c.severity == severity)
    if plan_id:
        query = query.where(alerts.c.plan_id == plan_id)
    if alert_id:
        query = query.where(alerts.c.alert_id == alert_id)
    query = query.order_by(
        (alerts.c.status == FIRING).desc(), alerts.c.updated_at.desc(), alerts.c.fingerprint
    )
    if receiver is None:
        query = query.limit(limit)
    found = [readable_alert(r) for r in conn.execute(query).mappings()]
    if receiver is not None:
        route = alerting.route
        found = [r for r in found if route is not None and receiver in receivers_for(route, r.alert.labels)][
            :limit
        ]
    mutes = read_mute_index(conn, alerting, now)
    return [alert_view(r.alert, alerting, mutes, now, r.problems) for r in found]


def get_alert(conn: Connection, alerting: AlertingRuntime, fingerprint: str, now: datetime) -> dict[str, Any]:
    """One alert with its state `history`, the `notifications` that carried it and its current `receivers`.

    `expires_at`: when a firing ingested alert resolves unless its client sends it again.
    """
    row = conn.execute(select(alerts).where(alerts.c.fingerprint == fingerprint)).mappings().first()
    if row is None:
        raise NotFound(f"no alert with fingerprint {fingerprint!r}; list them with GET /api/alerts")
    readable = readable_alert(row)
    alert = readable.alert
    history = conn.execute(
        select(alert_history).where(alert_history.c.fingerprint == fingerprint).order_by(alert_history.c.id)
    ).mappings()
    # Fingerprints are hex, so the text match cannot hit a neighbour; the list is JSON on both databases.
    carried = conn.execute(
        select(deliveries)
        .where(cast(deliveries.c.fingerprints, String).like(f'%"{fingerprint}"%'))
        .order_by(deliveries.c.created_at.desc(), deliveries.c.id.desc())
        .limit(100)
    ).mappings()
    return {
        **alert_view(alert, alerting, read_mute_index(conn, alerting, now), now, readable.problems),
        "annotations": dict(alert.annotations),
        "expires_at": rfc3339(row["expires_at"]) if alert.status == FIRING else None,
        "receivers": routes_for_alert(conn, fingerprint),
        "history": [
            {"status": h["status"], "severity": h["severity"], "reason": h["reason"], "at": rfc3339(h["at"])}
            for h in history
        ],
        "notifications": [
            {
                "delivery_id": d["id"],
                "webhook_id": d["webhook_id"],
                "receiver": d["receiver"],
                "receiver_type": d["receiver_type"],
                "status": d["status"],
                "alert_status": d["alert_status"],
                "attempts": d["attempts"],
                "created_at": rfc3339(d["created_at"]),
                "delivered_at": rfc3339(d["delivered_at"]),
                "last_error": d["last_error"],
            }
            for d in carried
        ],
    }


# --- routing ------------------------------------------------------------------------------------------


def receiver_view(spec: ReceiverSpec) -> dict[str, Any]:
    """A receiver as the API shows it: no secret, no PagerDuty key, no header value, no URL path."""
    return {
        "name": spec.name,
        "type": spec.type,
        "url": redact_url(spec.url),
        "signed": bool(spec.secret),
        "routing_key": (REDACTED if spec.type == "pagerduty" else spec.routing_key)
        if spec.routing_key
        else None,
        "send_resolved": spec.send_resolved,
        "timeout": format_duration(spec.timeout),
        "max_per_second": spec.max_per_second,
        "retry": {
            "schedule": [format_duration(d) for d in spec.retry_schedule],
            "max_age": format_duration(spec.retry_max_age),
        },
        "headers": dict.fromkeys(sorted(spec.headers), REDACTED),
    }


def routes_view(alerting: AlertingRuntime) -> dict[str, Any]:
    return {
        "route": alerting.route.as_dict() if alerting.route else None,
        "receivers": [receiver_view(spec) for spec in alerting.receivers.values()],
        "inhibit_rules": [
            {
                "source_matchers": [str(m) for m in rule.source_matchers],
                "target_matchers": [str(m) for m in rule.target_matchers],
                "equal": list(rule.equal),
            }
            for rule in alerting.inhibit_rules
        ],
        "slo_thresholds": [
            {"matchers": [str(m) for m in t.matchers], "threshold": format_duration(t.threshold)}
            for t in alerting.slo_thresholds
        ],
    }


def match_routes(alerting: AlertingRuntime, labels: Mapping[str, str]) -> dict[str, Any]:
    """Which receivers alerts with these labels reach, in routing order, and the groups they would join."""
    if alerting.route is None:
        return {"receivers": [], "routes": []}
    matched = alerting.route.match(labels)
    return {
        "receivers": [r.receiver for r in matched],
        "routes": [
            {
                "route_id": r.route_id,
                "receiver": r.receiver,
                "group_labels": r.group_labels(labels),
                "group_key": group_key(r, r.group_labels(labels)),
            }
            for r in matched
        ],
    }


# --- Alertmanager-compatible ingest -------------------------------------------------------------------


@dataclass(frozen=True)
class PostedAlert:
    """One element of `POST /api/v2/alerts`, as Alertmanager clients send it."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str] = field(default_factory=dict)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    generator_url: str | None = None


def _signal(index: int, posted: PostedAlert) -> publish.AlertSignal:
    labels = {k: v for k, v in posted.labels.items() if v != ""}
    alert_id = labels.get("alert_id") or labels.get("alertname")
    if not alert_id:
        raise Invalid.field(["body", index, "labels"], "needs an alertname (or alert_id) label")
    severity = labels.get("severity") or "warning"
    if severity not in SEVERITIES:
        raise Invalid.field(
            ["body", index, "labels", "severity"],
            f"unknown severity {severity!r}; use {', '.join(SEVERITIES)}",
        )
    annotations = posted.annotations
    kind = CATALOG.get(alert_id)
    title = annotations.get("summary") or annotations.get("title") or (kind.title if kind else alert_id)
    description = annotations.get("description") or annotations.get("summary") or ""
    return publish.AlertSignal(
        alert_id=alert_id,
        labels={k: v for k, v in labels.items() if k not in ("alert_id", "severity", "source")},
        description=description,
        severity=severity,
        title=title,
        source=INGEST_SOURCE,
        annotations=_annotations(posted),
        starts_at=posted.starts_at,
    )


def ingest_alerts(
    db: Database,
    posted: Sequence[PostedAlert],
    now: datetime,
    resolve_timeout: timedelta = DEFAULT_RESOLVE_TIMEOUT,
) -> dict[str, Any]:
    """Fire or resolve each posted alert in the caller's transaction (all or nothing).

    `endsAt` at or before now resolves the alert (an unknown one is ignored); otherwise it fires until its
    `endsAt` (or `resolve_timeout` from now without one), when the expiry sweep resolves it unless re-sent.
    A `startsAt` in the past is kept for a newly firing alert, so SLOs and group_wait see its real age.
    """
    with db.begin() as conn:
        items = [(posted_alert, _signal(i, posted_alert)) for i, posted_alert in enumerate(posted)]
        fired: list[str] = []
        resolved: list[str] = []
        # Consecutive alerts of the same kind go in one set-based call; the order between kinds is kept.
        ends = [ingested_alert_end(item.ends_at, now, resolve_timeout) for item, _ in items]
        runs = groupby(zip(items, ends, strict=True), key=lambda pair: has_ended(pair[1], now))
        for resolving, run in runs:
            batch = [(signal, end) for (_, signal), end in run]
            if resolving:
                fps = [publish.alert_fingerprint(publish.alert_labels(signal)) for signal, _ in batch]
                resolved += publish.resolve_fingerprints(conn, fps, now, reason="resolved by ingest")
            else:
                fps = publish.fire_many(conn, [signal for signal, _ in batch], now)
                expiry = [{KEY: fp, "expires_at": end} for fp, (_, end) in zip(fps, batch, strict=True)]
                update_many(conn, alerts, alerts.c.fingerprint, expiry)
                fired += fps
        return {"accepted": len(items), "fired": fired, "resolved": resolved}


def _annotations(item: PostedAlert) -> dict[str, str]:
    annotations = dict(item.annotations)
    if item.generator_url:
        annotations.setdefault("generator_url", item.generator_url)
    return annotations
