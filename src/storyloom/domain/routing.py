"""The routing tree (Alertmanager `route:`): which receivers an alert reaches and how it is grouped.

`RouteSpec` is the config as written (unset fields are None); `build_route_tree` resolves inheritance once
into immutable `Route` nodes, so matching never looks at parents again.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from storyloom.domain.durations import format_duration
from storyloom.domain.matchers import Matcher, matches_all

GROUP_BY_ALL = "..."
DEFAULT_GROUP_WAIT = timedelta(seconds=30)
DEFAULT_GROUP_INTERVAL = timedelta(minutes=5)
DEFAULT_REPEAT_INTERVAL = timedelta(hours=4)


@dataclass(frozen=True)
class RouteSpec:
    """One `route:` node as configured; None means "inherit from the parent"."""

    receiver: str | None = None
    matchers: tuple[Matcher, ...] = ()
    continue_: bool = False
    group_by: tuple[str, ...] | None = None  # `('...',)` is accepted and means group_by_all
    group_by_all: bool = False
    group_wait: timedelta | None = None
    group_interval: timedelta | None = None
    repeat_interval: timedelta | None = None
    routes: tuple[RouteSpec, ...] = ()


@dataclass(frozen=True)
class Route:
    """A resolved routing node: every setting is concrete."""

    route_id: str  # tree path: root "0", its second child "0.1", that child's third child "0.1.2"
    receiver: str
    matchers: tuple[Matcher, ...]
    continue_: bool
    group_by: tuple[str, ...]
    group_by_all: bool
    group_wait: timedelta
    group_interval: timedelta
    repeat_interval: timedelta
    routes: tuple[Route, ...] = field(default=())

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """Alertmanager `Route.Match`: depth-first; the first matching child wins unless it has `continue`."""
        if not matches_all(self.matchers, labels):
            return []
        found: list[Route] = []
        for child in self.routes:
            hits = child.match(labels)
            found.extend(hits)
            if hits and not child.continue_:
                break
        return found or [self]

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """The labels that name this alert's aggregation group; absent group_by labels are left out."""
        if self.group_by_all:
            return dict(labels)
        return {name: labels[name] for name in self.group_by if name in labels}

    def walk(self) -> Iterator[Route]:
        """Every route, parents before children, in config order."""
        yield self
        for child in self.routes:
            yield from child.walk()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view for `/api/alert-routes` and the console."""
        return {
            "route_id": self.route_id,
            "receiver": self.receiver,
            "matchers": [str(m) for m in self.matchers],
            "continue": self.continue_,
            "group_by": [GROUP_BY_ALL] if self.group_by_all else list(self.group_by),
            "group_wait": format_duration(self.group_wait),
            "group_interval": format_duration(self.group_interval),
            "repeat_interval": format_duration(self.repeat_interval),
            "routes": [child.as_dict() for child in self.routes],
        }


def _group_by(spec: RouteSpec, path: str) -> tuple[tuple[str, ...] | None, bool]:
    """Normalise `group_by` so that `['...']` and `group_by_all` mean the same thing."""
    if spec.group_by is None:
        return None, spec.group_by_all
    if GROUP_BY_ALL in spec.group_by:
        if len(spec.group_by) > 1:
            raise ValueError(f"route {path}: group_by cannot mix '...' with other labels")
        return (), True
    if spec.group_by_all:
        raise ValueError(f"route {path}: group_by_all cannot be combined with a group_by list")
    if len(set(spec.group_by)) != len(spec.group_by):
        raise ValueError(f"route {path}: group_by lists a label twice")
    return tuple(spec.group_by), False


def build_route_tree(
    root: RouteSpec,
    *,
    group_wait: timedelta = DEFAULT_GROUP_WAIT,
    group_interval: timedelta = DEFAULT_GROUP_INTERVAL,
    repeat_interval: timedelta = DEFAULT_REPEAT_INTERVAL,
) -> Route:
    """Resolve inheritance; the keyword timers are used only where the root leaves its own unset."""
    if not root.receiver:
        raise ValueError("route 0: the root route needs a receiver")
    if root.matchers:
        raise ValueError("route 0: the root route matches every alert and cannot have matchers")
    if root.continue_:
        raise ValueError("route 0: the root route cannot have continue")
    base = Route(
        route_id="",
        receiver=root.receiver,
        matchers=(),
        continue_=False,
        group_by=(),
        group_by_all=False,
        group_wait=group_wait,
        group_interval=group_interval,
        repeat_interval=repeat_interval,
    )
    return _resolve(root, base, "0")


def _resolve(spec: RouteSpec, parent: Route, path: str) -> Route:
    group_by, group_by_all = _group_by(spec, path)
    if group_by is None and not group_by_all:
        group_by, group_by_all = parent.group_by, parent.group_by_all
    if spec.group_wait is not None and spec.group_wait < timedelta(0):
        raise ValueError(f"route {path}: group_wait cannot be negative")
    for name in ("group_interval", "repeat_interval"):
        value = getattr(spec, name)
        if value is not None and value <= timedelta(0):
            raise ValueError(f"route {path}: {name} must be greater than 0")
    node = Route(
        route_id=path,
        receiver=spec.receiver or parent.receiver,
        matchers=tuple(spec.matchers),
        continue_=spec.continue_,
        group_by=group_by or (),
        group_by_all=group_by_all,
        group_wait=spec.group_wait if spec.group_wait is not None else parent.group_wait,
        group_interval=spec.group_interval if spec.group_interval is not None else parent.group_interval,
        repeat_interval=spec.repeat_interval if spec.repeat_interval is not None else parent.repeat_interval,
    )
    children = tuple(_resolve(child, node, f"{path}.{i}") for i, child in enumerate(spec.routes))
    return replace(node, routes=children)


def group_key(route: Route, group_labels: Mapping[str, str]) -> str:
    """Stable, readable aggregation-group key: `{route_id}:{receiver}:{sorted group labels as JSON}`."""
    labels = json.dumps(dict(sorted(group_labels.items())), separators=(",", ":"), ensure_ascii=False)
    return f"{route.route_id}:{route.receiver}:{labels}"


def receivers_for(root: Route, labels: Mapping[str, str]) -> list[str]:
    """Receiver names in routing order; a receiver reached by two routes appears twice, as in Alertmanager."""
    return [route.receiver for route in root.match(labels)]
