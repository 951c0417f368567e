"""Drills: a labelled test alert sent through the real path (fire → route → group → sign → deliver), each
receiver's answer and end-to-end latency, then the alert resolved (its resolved notice goes out where
`send_resolved`).

A drill alert carries `drill="true"` and a unique `drill_id` (a new alert, never a real incident's), and
with `--receiver` also `drill_receiver`, which sends it to that one receiver only. The latency runs from the
moment it fired to the delivery's success (or its giving up), so it includes the route's `group_wait`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from time import monotonic
from typing import Any

import structlog
from sqlalchemy import Connection, String, cast, select

from storyloom.alerting import publish
from storyloom.alerting.delivery.status import DeliveryStatus
from storyloom.alerting.setup import AlertingRuntime
from storyloom.domain.alerts import DRILL_LABEL, DRILL_RECEIVER_LABEL, rfc3339
from storyloom.domain.routing import receivers_for
from storyloom.ids import new_id
from storyloom.runtime import Runtime
from storyloom.services.action_log import record_action
from storyloom.services.actors import Actor
from storyloom.services.errors import Conflict, Invalid
from storyloom.store.tables import deliveries

log = structlog.get_logger(__name__)

DRILL_ALERT_ID = "storyloom:drill"
ALERT_ID_PATTERN = re.compile(r"^[a-z]+:[a-z-]+$")  # the webhook schema's alert_id
DEFAULT_TIMEOUT = timedelta(seconds=60)
MAX_TIMEOUT = timedelta(minutes=10)
POLL_SECONDS = 0.1
SETTLED = (DeliveryStatus.DELIVERED, DeliveryStatus.DEAD)
NO_DELIVERY = "no-delivery"  # nothing reached the receiver before the deadline (muted, or still grouping)
RETRYING = "retrying"  # attempts failed and the dispatcher still retries


between_polls = threading.Event().wait  # an event nobody sets: a wait that never busy-loops


@dataclass(frozen=True)
class Drill:
    """A drill alert that fired: which receivers it should reach, and when it started."""

    drill_id: str
    alert_id: str
    fingerprint: str
    labels: dict[str, str]
    receivers: tuple[str, ...]
    started_at: datetime


def start_drill(
    conn: Connection,
    alerting: AlertingRuntime,
    actor: Actor,
    now: datetime,
    *,
    alert_id: str = DRILL_ALERT_ID,
    receiver: str | None = None,
) -> Drill:
    """Fire the drill alert in the caller's transaction; 422 for an unknown receiver or a malformed id."""
    if not ALERT_ID_PATTERN.match(alert_id):
        raise Invalid.field(["body", "alert_id"], f"{alert_id!r} is not an alert id like {DRILL_ALERT_ID}")
    if receiver is not None and receiver not in alerting.receivers:
        known = ", ".join(sorted(alerting.receivers)) or "none configured"
        raise Invalid.field(["body", "receiver"], f"no receiver {receiver!r}; configured: {known}")
    drill_id = new_id("drl")
    labels = {DRILL_LABEL: "true", "drill_id": drill_id}
    if receiver is not None:
        labels[DRILL_RECEIVER_LABEL] = receiver
    signal = publish.AlertSignal(
        alert_id=alert_id,
        labels=labels,
        description=f"Drill by {actor.name}: a test of alert delivery, not an incident",
        title=f"Drill: {alert_id}",
    )
    full = publish.alert_labels(signal)
    if receiver is not None:
        reached: tuple[str, ...] = (receiver,)
    elif alerting.route is None:
        raise Conflict("no routing tree is configured: the drill would reach no receiver")
    else:
        reached = tuple(dict.fromkeys(receivers_for(alerting.route, full)))
    fingerprint = publish.fire_many(conn, [signal], now)[0]  # any id: a drill may rehearse an outside alert
    record_action(
        conn,
        {
            "action": "drill",
            "drill_id": drill_id,
            "alert_id": alert_id,
            "fingerprint": fingerprint,
            "receiver": receiver,
            "receivers": list(reached),
            **actor.audit_fields(),
        },
        now,
    )
    return Drill(drill_id, alert_id, fingerprint, full, reached, now)


def _outcome(row: Any, started_at: datetime) -> dict[str, Any]:
    settled_at = row["delivered_at"] if row["status"] == DeliveryStatus.DELIVERED else row["last_attempt_at"]
    latency = None
    if row["status"] in SETTLED and settled_at is not None:
        latency = round((settled_at - started_at).total_seconds() * 1000)
    return {
        "outcome": row["status"] if row["status"] in SETTLED else RETRYING,
        "latency_ms": latency,
        "status_code": row["last_status_code"],
        "attempts": row["attempts"],
        "delivery_id": row["id"],
        "error": row["last_error"],
    }


def drill_outcomes(conn: Connection, drill: Drill) -> dict[str, dict[str, Any]]:
    """Per receiver, the first delivery that carried the firing drill (none yet: `no-delivery`)."""
    rows = conn.execute(
        select(deliveries)
        .where(
            cast(deliveries.c.fingerprints, String).like(f'%"{drill.fingerprint}"%'),
            deliveries.c.receiver.in_(drill.receivers),
            deliveries.c.alert_status == "firing",
        )
        .order_by(deliveries.c.created_at, deliveries.c.id)
    ).mappings()
    found: dict[str, dict[str, Any]] = {}
    for row in rows:
        found.setdefault(row["receiver"], _outcome(row, drill.started_at))
    empty = {"outcome": NO_DELIVERY, "latency_ms": None, "status_code": None, "attempts": 0}
    return {name: found.get(name, {**empty, "delivery_id": None, "error": None}) for name in drill.receivers}


def finish_drill(conn: Connection, drill: Drill, now: datetime) -> None:
    """Resolve the drill alert: where `send_resolved`, its receivers get the resolved notice."""
    publish.resolve(conn, [drill.fingerprint], now, reason="drill finished")


def _settled(outcomes: dict[str, dict[str, Any]]) -> bool:
    return all(o["outcome"] in SETTLED for o in outcomes.values())


def run_drill(
    rt: Runtime,
    actor: Actor,
    *,
    alert_id: str = DRILL_ALERT_ID,
    receiver: str | None = None,
    timeout: timedelta = DEFAULT_TIMEOUT,
    pause: Callable[[float], Any] | None = None,
) -> dict[str, Any]:
    """Fire a drill, poll until every receiver answered for good or `timeout` passed, then resolve it.

    Between polls it waits `pause(seconds)` (default: `between_polls`, which the notifier and dispatcher of
    this process run beside; tests pass one that runs them)."""
    if not timedelta(0) < timeout <= MAX_TIMEOUT:
        raise Invalid.field(
            ["body", "timeout"], f"must be more than 0s and at most {MAX_TIMEOUT.seconds // 60}m"
        )
    with rt.db.begin() as conn:
        drill = start_drill(conn, rt.alerting, actor, rt.clock.now(), alert_id=alert_id, receiver=receiver)
    deadline = monotonic() + timeout.total_seconds()
    while True:
        with rt.db.read() as conn:
            outcomes = drill_outcomes(conn, drill)
        if _settled(outcomes) or monotonic() >= deadline:
            break
        (pause or between_polls)(POLL_SECONDS)
    finished_at = rt.clock.now()
    with rt.db.begin() as conn:
        finish_drill(conn, drill, finished_at)
    specs = rt.alerting.receivers
    answers = [
        {
            "receiver": name,
            "type": specs[name].type if name in specs else None,
            "send_resolved": specs[name].send_resolved if name in specs else False,
            **outcome,
        }
        for name, outcome in outcomes.items()
    ]
    report = {
        "drill_id": drill.drill_id,
        "alert_id": drill.alert_id,
        "fingerprint": drill.fingerprint,
        "labels": drill.labels,
        "started_at": rfc3339(drill.started_at),
        "resolved_at": rfc3339(finished_at),
        "receivers": answers,
    }
    log.info(
        "drill finished",
        drill_id=drill.drill_id,
        actor=actor.name,
        outcomes={a["receiver"]: [a["outcome"], a["latency_ms"]] for a in answers},
    )
    return report
