"""The notify pipeline as an explicit list of small stages, as in Alertmanager's `notify/notify.go`.

Every stage is a class with one method, `exec(ctx, alerts) -> alerts`; `run_stages` composes them in order
and stops once no alert is left (Alertmanager's `MultiStage`). Two pipelines:

* `INGEST` (route → group) runs over alerts that changed: it decides which aggregation groups they join
  and when those groups flush;
* `FLUSH` (inhibit → silence → dedup → slo → links → delivery) runs over the members of one due group and
  leaves at most one pending delivery (the outbox row the dispatcher sends) in the context.

Stages are pure: the `Notifier` loads what they read (groups, firing alerts, silences) into the context and
writes what they leave there, in one transaction. So each stage is tested alone without a database.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar

from storyloom.alerting.receivers.base import ReceiverSpec
from storyloom.alerting.setup import AlertingRuntime
from storyloom.domain.alerts import DRILL_RECEIVER_LABEL, FIRING, Acknowledgement, Alert, Notification
from storyloom.domain.alerts import fingerprint as label_fingerprint
from storyloom.domain.grouping import GroupState, NotifyReason, needs_update, on_alert_added
from storyloom.domain.inhibition import Inhibitor, InhibitRule
from storyloom.domain.routing import Route, group_key
from storyloom.domain.silences import Silence, SilenceState
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


# --- alerts as the pipeline sees them ----------------------------------------------------------------


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


class MuteIndex:
    """Who mutes an alert right now: the firing alerts that inhibit it and the active silences over it.

    Built once per evaluation from every firing alert; used by the flush stages and by the API's
    `silenced_by` / `inhibited_by` (computed at read time, nothing is sent).
    """

    def __init__(
        self,
        rules: Sequence[InhibitRule],
        firing: Iterable[Alert],
        silences: Sequence[Silence],
        now: datetime,
    ) -> None:
        firing = list(firing)
        self.now = now
        self.silences = tuple(s for s in silences if s.state(now) is SilenceState.ACTIVE)
        self._inhibitor = Inhibitor(rules, [a.labels for a in firing]) if rules else None
        # The inhibitor names sources by the hash of all their labels; the API shows alert fingerprints.
        self._alert_fp = {label_fingerprint(a.labels): a.fingerprint for a in firing} if rules else {}

    def inhibited_by(self, alert: Alert) -> list[str]:
        if self._inhibitor is None:
            return []
        found = self._inhibitor.inhibited_by(alert.labels)
        return list(dict.fromkeys(self._alert_fp.get(fp, fp) for fp in found))

    def inhibited(self, alert: Alert) -> bool:
        return self._inhibitor is not None and self._inhibitor.mutes(alert.labels)

    def silenced_by(self, alert: Alert) -> list[str]:
        return [s.silence_id for s in self.silences if s.mutes(alert.labels, self.now)]


# --- aggregation groups -----------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupRecord:
    """One aggregation group: which route and receiver it belongs to, its labels and its timers."""

    group_key: str
    route_id: str
    receiver: str
    group_labels: dict[str, str]
    state: GroupState


GroupLoader = Callable[[Collection[str]], Mapping[str, GroupRecord]]


@dataclass
class IngestContext:
    """What routing and grouping read (`route`, `load_groups`) and what they leave for the notifier."""

    now: datetime
    route: Route | None
    load_groups: GroupLoader
    routed: list[tuple[Alert, Route]] = field(default_factory=list)
    groups: dict[str, GroupRecord] = field(default_factory=dict)  # created or rescheduled: upsert these
    existing: set[str] = field(default_factory=set)  # keys of `groups` that are already stored
    members: set[tuple[str, str]] = field(default_factory=set)  # (group_key, fingerprint)


class RouteStage:
    """Match each firing alert against the routing tree (Alertmanager's dispatcher `route.Match`).

    Resolved alerts are not routed: they are already members of the groups they were notified in, which
    keep flushing until the resolution has been told.
    """

    def exec(self, ctx: IngestContext, alerts: list[Alert]) -> list[Alert]:
        if ctx.route is None:
            return []
        firing = [a for a in alerts if a.status == FIRING]
        for alert in firing:
            ctx.routed.extend((alert, route) for route in routes_of(ctx.route, alert))
        return firing


def routes_of(root: Route, alert: Alert) -> list[Route]:
    """The routes the tree matches; a drill forced to one receiver goes only there, with the root's timers,
    in a group of its own (the notifier flushes a route a reload removed the same way)."""
    forced = alert.labels.get(DRILL_RECEIVER_LABEL)
    if not forced:
        return root.match(alert.labels)
    return [
        dataclasses.replace(
            root, route_id="drill", receiver=forced, group_by=(), group_by_all=True, routes=()
        )
    ]


class GroupStage:
    """Put each routed alert into its aggregation group (one per route, receiver and group labels)
    and schedule the group's flush (`grouping.on_alert_added`)."""

    def exec(self, ctx: IngestContext, alerts: list[Alert]) -> list[Alert]:
        keyed = [(alert, route, route.group_labels(alert.labels)) for alert, route in ctx.routed]
        keys = {group_key(route, labels) for _, route, labels in keyed}
        loaded = ctx.load_groups(keys - set(ctx.groups)) if keys - set(ctx.groups) else {}
        ctx.existing.update(loaded)
        for alert, route, labels in keyed:
            key = group_key(route, labels)
            current = ctx.groups.get(key) or loaded.get(key)
            state = on_alert_added(
                current.state if current else None,
                ctx.now,
                route.group_wait,
                route.group_interval,
                starts_at=alert.starts_at,
            )
            if current is None or state != current.state:
                ctx.groups[key] = GroupRecord(key, route.route_id, route.receiver, labels, state)
            ctx.members.add((key, alert.fingerprint))
        return alerts


INGEST: tuple[Stage[IngestContext], ...] = (RouteStage(), GroupStage())


# --- flushing one due group -------------------------------------------------------------------------


@dataclass(frozen=True)
class PendingDelivery:
    """One notification to enqueue in `deliveries` (the dispatcher signs and sends it)."""

    delivery_id: str
    receiver_type: str
    notification: Notification

    @property
    def fingerprints(self) -> list[str]:
        return [a.fingerprint for a in self.notification.alerts]


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


class InhibitStage:
    """Drop alerts muted by a firing source alert (`inhibit_rules`)."""

    def exec(self, ctx: FlushContext, alerts: list[Alert]) -> list[Alert]:
        kept = []
        for alert in alerts:
            if ctx.mutes.inhibited(alert):
                ctx.muted[alert.fingerprint] = "inhibited"
            else:
                kept.append(alert)
        return kept


class SilenceStage:
    """Drop alerts an active silence matches."""

    def exec(self, ctx: FlushContext, alerts: list[Alert]) -> list[Alert]:
        kept = []
        for alert in alerts:
            if ctx.mutes.silenced_by(alert):
                ctx.muted[alert.fingerprint] = "silenced"
            else:
                kept.append(alert)
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
    InhibitStage(),
    SilenceStage(),
    DedupStage(),
    SloStage(),
    LinkStage(),
    DeliveryStage(),
)


# --- the stored notification ------------------------------------------------------------------------


def notification_json(notification: Notification) -> dict[str, Any]:
    """What `deliveries.notification` holds: the webhook body (docs/reference/payloads.md) and what rebuilds it."""
    return {
        "notification_id": notification.notification_id,
        "source": notification.source,
        "environment": notification.environment,
        "receiver": notification.receiver,
        "routing_key": notification.routing_key,
        "group_key": notification.group_key,
        "status": notification.status,
        "group_labels": dict(notification.group_labels),
        "alerts": [{**a.to_payload(), "annotations": dict(a.annotations)} for a in notification.alerts],
        "truncated_alerts": notification.truncated_alerts,
        "external_url": notification.external_url,
    }


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def notification_from_json(data: Mapping[str, Any], *, notification_id: str | None = None) -> Notification:
    """Rebuild the Notification a delivery row carries (the dispatcher renders it per receiver type)."""
    alerts = []
    for item in data.get("alerts", []):
        starts_at = _time(item["starts_at"])
        generated_at = _time(item.get("generated_at")) or starts_at
        assert starts_at is not None and generated_at is not None
        alerts.append(
            Alert(
                alert_id=item["alert_id"],
                fingerprint=item["fingerprint"],
                status=item["status"],
                severity=item["severity"],
                title=item["title"],
                description=item["description"],
                labels=dict(item["labels"]),
                starts_at=starts_at,
                ends_at=_time(item.get("ends_at")),
                generated_at=generated_at,
                slo_minutes=item.get("slo_minutes"),
                slo_breached=bool(item.get("slo_breached")),
                runbook_url=item.get("runbook_url", ""),
                console_url=item.get("console_url", ""),
                annotations=dict(item.get("annotations") or {}),
                acknowledgement=Acknowledgement.from_payload(item.get("acknowledgement")),
            )
        )
    return Notification(
        notification_id=notification_id or data["notification_id"],
        receiver=data["receiver"],
        group_key=data["group_key"],
        group_labels=dict(data.get("group_labels") or {}),
        alerts=tuple(alerts),
        environment=data.get("environment", ""),
        source=data.get("source", "storyloom"),
        routing_key=data.get("routing_key"),
        truncated_alerts=int(data.get("truncated_alerts", 0)),
        external_url=data.get("external_url", ""),
    )
