"""Record what a batch of attempts came to, in one transaction of set-based statements.

The `delivery_attempts` rows, each delivery's new state (delivered; failed with the next attempt from the
retry policy, Retry-After and `max_age`; or dead), the receivers' state and the `delivery:failing` alert.
Only deliveries still claimed under the batch's token are written (the claim fence). Logs carry receiver
names and ids only (never a URL, secret or signature; errors are scrubbed by the sender).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, insert

from storyloom.alerting.delivery.queue import Job, still_claimed
from storyloom.alerting.delivery.receiver_state import ReceiverTally, update_receivers
from storyloom.alerting.delivery.retry import Random, next_attempt
from storyloom.alerting.delivery.send import SendOutcome
from storyloom.alerting.delivery.status import DeliveryStatus
from storyloom.alerting.setup import AlertingRuntime
from storyloom.store.bulk import KEY, update_many
from storyloom.store.events import DELIVERY_ACTION, record_event
from storyloom.store.set_aside import set_aside
from storyloom.store.tables import deliveries, delivery_attempts

log = structlog.get_logger(__name__)

SET_ASIDE_PASS = "delivery"

Counted = tuple[str, str, float | None]  # (receiver, metric result, latency in seconds)

_METRIC_RESULT = {
    "disable": "disabled",
    "skipped": "skipped",
    "empty": "skipped",
    "gone": "dead",
    "set_aside": "dead",
}
_RELEASE = {"claimed_by": None, "claim_expires_at": None}


@dataclass(frozen=True)
class Result:
    """What became of one job. `kind` is an outcome kind when a request was tried, else one of
    `skipped` (own failing alert), `gone` (receiver left the config), `empty` (nothing to send),
    `set_aside` (processing it raised: it goes `dead` with the error and is listed as set aside),
    `unclaim` (its receiver got disabled meanwhile) or `defer` (the rate limit's turn is later)."""

    job: Job
    kind: str
    outcome: SendOutcome | None = None
    attempt_at: datetime | None = None
    delay: float = 0.0
    note: str | None = None


def record_results(
    conn: Connection,
    token: str,
    results: Sequence[Result],
    alerting: AlertingRuntime,
    now: datetime,
    rng: Random,
) -> list[Counted]:
    """Write `results` (those still claimed under `token`); returns what to count in the metrics."""
    counted: list[Counted] = []
    tallies: dict[str, ReceiverTally] = {}
    changed = {DeliveryStatus.DELIVERED: 0, DeliveryStatus.FAILED: 0, DeliveryStatus.DEAD: 0}
    updates: list[dict[str, Any]] = []
    attempts: list[dict[str, Any]] = []
    held = still_claimed(conn, token, [r.job.delivery_id for r in results])
    for result in results:
        job = result.job
        if job.delivery_id not in held:
            if result.outcome is not None:
                log.warning(
                    "a delivery's claim was taken over before its attempt was recorded",
                    delivery_id=job.delivery_id,
                )
            continue
        if result.kind in ("unclaim", "defer"):
            values: dict[str, Any] = dict(_RELEASE)
            if result.kind == "defer":
                values["next_attempt_at"] = now + timedelta(seconds=result.delay)
            updates.append({KEY: job.delivery_id, **values})
            continue
        if result.outcome is None:  # settled without a request: skipped, gone, empty or set aside
            status = DeliveryStatus.DELIVERED if result.kind == "empty" else DeliveryStatus.DEAD
            if result.kind == "set_aside":
                set_aside(conn, SET_ASIDE_PASS, job.delivery_id, result.note or "internal error", now)
            updates.append(
                {
                    KEY: job.delivery_id,
                    "status": status,
                    "last_error": result.note,
                    "next_attempt_at": None,
                    "delivered_at": now if status == DeliveryStatus.DELIVERED else None,
                    **_RELEASE,
                }
            )
            changed[status] += 1
            counted.append((job.receiver, _METRIC_RESULT[result.kind], None))
            _log_settled(job, status, result.note)
            continue
        values, attempt, status = _attempt_rows(result, alerting, now, rng, tallies, counted)
        changed[status] += 1
        updates.append({KEY: job.delivery_id, **values})
        attempts.append(attempt)
    update_many(conn, deliveries, deliveries.c.id, updates)
    if attempts:
        conn.execute(insert(delivery_attempts), attempts)
    update_receivers(conn, tallies, now)
    if any(changed.values()):
        receivers = sorted({r.job.receiver for r in results})
        record_event(
            conn,
            DELIVERY_ACTION,
            {"action": "dispatch", **{str(k): v for k, v in changed.items()}, "receivers": receivers},
            now,
        )
    return counted


def _attempt_rows(
    result: Result,
    alerting: AlertingRuntime,
    now: datetime,
    rng: Random,
    tallies: dict[str, ReceiverTally],
    counted: list[Counted],
) -> tuple[dict[str, Any], dict[str, Any], DeliveryStatus]:
    """(the delivery's new values, its `delivery_attempts` row, its new status) for one attempted job."""
    job, outcome = result.job, result.outcome
    assert outcome is not None and result.attempt_at is not None
    number = job.attempts + 1
    first = job.first_attempt_at or result.attempt_at
    values: dict[str, Any] = {
        "attempts": number,
        "first_attempt_at": first,
        "last_attempt_at": result.attempt_at,
        "last_status_code": outcome.status_code,
        "latency_ms": outcome.latency_ms,
        **_RELEASE,
    }
    spec = alerting.receivers.get(job.receiver)
    if outcome.kind == "delivered":
        status = DeliveryStatus.DELIVERED
        values.update(status=status, delivered_at=now, next_attempt_at=None, last_error=None)
    else:
        decision = next_attempt(
            outcome,
            number,
            first,
            now,
            spec.retry_schedule if spec else (),
            spec.retry_max_age if spec else timedelta(0),
            rng,
            previous_client_errors=job.client_errors,
        )
        if decision[0] == "retry":
            status = DeliveryStatus.FAILED
            values.update(status=status, next_attempt_at=decision[1], last_error=outcome.error)
        else:
            status = DeliveryStatus.DEAD
            values.update(status=status, next_attempt_at=None, last_error=decision[1])
    attempt = {
        "delivery_id": job.delivery_id,
        "attempt": number,
        "at": result.attempt_at,
        "status_code": outcome.status_code,
        "outcome": outcome.kind,
        "error": outcome.error,
        "latency_ms": outcome.latency_ms,
    }
    tally = tallies.setdefault(job.receiver, ReceiverTally())
    tally.outcomes.append(outcome.kind)
    if outcome.kind != "delivered":
        tally.last_error = outcome.error
    if outcome.kind == "disable":
        tally.disabled = outcome.error or "HTTP 410"
    if status == DeliveryStatus.DEAD:
        tally.dead.append(str(values["last_error"]))
    dead_retry = status == DeliveryStatus.DEAD and outcome.kind in ("retry", "client_error")
    metric = "dead" if dead_retry else outcome.kind
    counted.append((job.receiver, _METRIC_RESULT.get(metric, metric), outcome.latency_ms / 1000))
    _log_attempt(job, number, outcome, status, values.get("next_attempt_at"))
    return values, attempt, status


def _log_attempt(
    job: Job, number: int, outcome: SendOutcome, status: DeliveryStatus, next_at: datetime | None
) -> None:
    fields = {
        "delivery_id": job.delivery_id,
        "receiver": job.receiver,
        "attempt": number,
        "status_code": outcome.status_code,
        "latency_ms": round(outcome.latency_ms, 1),
    }
    if status == DeliveryStatus.DELIVERED:
        log.debug("delivery delivered", **fields)
    elif status == DeliveryStatus.FAILED:
        log.info("delivery failed; will retry", error=outcome.error, next_attempt_at=next_at, **fields)
    else:
        log.warning("delivery dead", error=outcome.error, **fields)


def _log_settled(job: Job, status: DeliveryStatus, note: str | None) -> None:
    log.info(
        f"delivery {status} without a request",
        delivery_id=job.delivery_id,
        receiver=job.receiver,
        reason=note,
    )
