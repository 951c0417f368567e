"""The aggregation stages (`INGEST`: route → group), run over alerts that changed.

They decide which aggregation groups the alerts join and when those groups flush; pure, like the flush
stages: the notifier loads the groups they read and writes what they leave in the context.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from storyloom.alerting.aggregation.groups import GroupRecord
from storyloom.alerting.notify import Stage
from storyloom.domain.alerts import DRILL_RECEIVER_LABEL, FIRING, Alert
from storyloom.domain.grouping import on_alert_added
from storyloom.domain.routing import Route, group_key

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
    the resolution re-arms (`quiet.rearm`) until it has been told.
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
