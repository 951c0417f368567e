"""The notify pipeline as an explicit list of small stages, as in Alertmanager's `notify/notify.go`.

Every stage is a class with one method, `exec(ctx, alerts) -> alerts`; `run_stages` composes them in order
and stops once no alert is left (Alertmanager's `MultiStage`). Two pipelines use it:

* `aggregation.stages.INGEST` (route → group) runs over alerts that changed;
* `FLUSH` (mute → dedup → slo → links → delivery), here, runs over the members of one due group and
  leaves at most one pending delivery (the outbox row the delivery worker sends) in the context.

Stages are pure: the notifier loads what they read (groups, firing alerts, silences) into the context and
writes what they leave there, in one transaction. So each stage is tested alone without a database.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

from storyloom.alerting.aggregation.groups import GroupRecord
from storyloom.alerting.mute import MuteIndex
from storyloom.alerting.receivers.base import ReceiverSpec
from storyloom.alerting.setup import AlertingRuntime
from storyloom.domain.alerts import FIRING, Alert, Notification
from storyloom.domain.grouping import NotifyReason, needs_update
from storyloom.domain.routing import Route
from storyloom.domain.slo import SloThreshold, slo_for, slo_status
from storyloom.ids import new_id

CtxT = TypeVar("CtxT")
CtxT_contra = TypeVar("CtxT_contra", contravariant=True)


class Stage(Protocol[CtxT_contra]):
    """Alertmanager's `Stage`: take the alerts, return the ones that go on (recording decisions in ctx)."""

    def exec(self, ctx: CtxT_contra, alerts: list[Alert]) -> list[Alert]: ...


def run_stages(stages: Sequence[Stage[CtxT]], ctx: CtxT, alerts: list[Alert]) -> list[Alert]:
    """Run `stages` in order; stop as soon as no alert is left (Alertmanager's `MultiStage`)."""
    for stage in stages:
        if not alerts:
            break
        alerts = stage.exec(ctx, alerts)
    return alerts


# --- stamps (also used by readers that show alerts outside a notification) ---------------------


def stamp_slo(alert: Alert, thresholds: Sequence[SloThreshold], now: datetime) -> Alert:
    """`slo_minutes` / `slo_breached` from the first matching threshold and the persisted `starts_at`."""
    minutes, breached = slo_status(
        alert.starts_at, now, slo_for(alert.labels, thresholds), firing=alert.status == FIRING
    )
    return dataclasses.replace(alert, slo_minutes=minutes, slo_breached=breached)


def stamp_links(alert: Alert, public_url: str) -> Alert:
    """Runbook and console links, so a receiver can jump from the page to the fix."""
    base = public_url.rstrip("/")
    return dataclasses.replace(
        alert,
        runbook_url=f"{base}/runbooks/{alert.alert_id}",
        console_url=f"{base}/alerts/{alert.fingerprint}",
    )


def enrich(alert: Alert, alerting: AlertingRuntime, now: datetime) -> Alert:
    """Both stamps, for readers (API, health) that show alerts outside a notification."""
    return stamp_links(stamp_slo(alert, alerting.slo_thresholds, now), alerting.public_url)


# --- flushing one due group -------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingDelivery:
    """One notification to enqueue in `deliveries` (the delivery worker signs and sends it)."""

    delivery_id: str
    receiver_type: str
    notification: Notification


@dataclass
class FlushContext:
    """One group's flush: inputs first, then what the stages decided."""

    now: datetime
    alerting: AlertingRuntime
    group: GroupRecord
    route: Route  # the group's route in the current tree (its timers)
    receiver: ReceiverSpec
    mutes: MuteIndex
    make_id: Callable[[str], str] = new_id
    muted: dict[str, str] = field(default_factory=dict)  # fingerprint → "inhibited" | "silenced"
    reason: NotifyReason = NotifyReason.NONE
    firing: frozenset[str] = frozenset()
    resolved: frozenset[str] = frozenset()
    delivery: PendingDelivery | None = None


class MuteStage:
    """Drop alerts muted now: inhibited by a firing source alert (`inhibit_rules`) or silenced."""

    def exec(self, ctx: FlushContext, alerts: list[Alert]) -> list[Alert]:
        kept = []
        for alert in alerts:
            muted = ctx.mutes.muted(alert)
            if muted is None:
                kept.append(alert)
            else:
                ctx.muted[alert.fingerprint] = muted
        return kept


def firing_key(alert: Alert) -> str:
    """How the notification log knows a firing alert: fingerprint and severity, so an escalation is news."""
    return f"{alert.fingerprint}@{alert.severity}"


class DedupStage:
    """Send only when the receiver would learn something (`grouping.needs_update`), else stop here.

    Without `send_resolved` the receiver hears no resolved alert at all, so none stays in the notification.
    """

    def exec(self, ctx: FlushContext, alerts: list[Alert]) -> list[Alert]:
        ctx.firing = frozenset(firing_key(a) for a in alerts if a.status == FIRING)
        ctx.resolved = frozenset(a.fingerprint for a in alerts if a.status != FIRING)
        send_resolved = ctx.receiver.send_resolved
        ctx.reason = needs_update(
            ctx.group.state,
            ctx.firing,
            ctx.resolved,
            send_resolved=send_resolved,
            repeat_interval=ctx.route.repeat_interval,
            now=ctx.now,
        )
        if not ctx.reason.delivers(send_resolved):
            return []
        return alerts if send_resolved else [a for a in alerts if a.status == FIRING]


class SloStage:
    """Stamp `slo_minutes` / `slo_breached` (first matching `slo_thresholds` entry, persisted `starts_at`)."""

    def exec(self, ctx: FlushContext, alerts: list[Alert]) -> list[Alert]:
        return [stamp_slo(a, ctx.alerting.slo_thresholds, ctx.now) for a in alerts]


class LinkStage:
    """Stamp `runbook_url` and `console_url` under `public_url`."""

    def exec(self, ctx: FlushContext, alerts: list[Alert]) -> list[Alert]:
        return [stamp_links(a, ctx.alerting.public_url) for a in alerts]


def _notify_order(alert: Alert) -> tuple[bool, datetime, str]:
    return alert.status != FIRING, alert.starts_at, alert.fingerprint


class DeliveryStage:
    """Build the notification (firing first, oldest first, at most `max_alerts_per_notification`)."""

    def exec(self, ctx: FlushContext, alerts: list[Alert]) -> list[Alert]:
        ordered = sorted(alerts, key=_notify_order)
        limit = ctx.alerting.max_alerts_per_notification
        sent = ordered[:limit]
        spec = ctx.receiver
        notification = Notification(
            notification_id=ctx.make_id("msg"),
            receiver=spec.name,
            group_key=ctx.group.group_key,
            group_labels=dict(ctx.group.group_labels),
            alerts=tuple(sent),
            environment=ctx.alerting.environment,
            source=ctx.alerting.source,
            # A PagerDuty routing_key is its integration key: the renderer reads it from the spec, it is never stored.
            routing_key=None if spec.type == "pagerduty" else spec.routing_key,
            truncated_alerts=len(ordered) - len(sent),
            external_url=ctx.alerting.public_url,
        )
        ctx.delivery = PendingDelivery(ctx.make_id("dlv"), spec.type, notification)
        return sent


FLUSH: tuple[Stage[FlushContext], ...] = (
    MuteStage(),
    DedupStage(),
    SloStage(),
    LinkStage(),
    DeliveryStage(),
)
