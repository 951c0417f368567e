"""The effective routing tree and route tests, secrets redacted."""

from __future__ import annotations

from pydantic import Field

from storyloom.api.schemas import Body


class Route(Body):
    route_id: str = Field(description='its position in the tree: "0" is the root, "0.1" its second child')
    receiver: str
    matchers: list[str]
    continue_: bool = Field(alias="continue", description="keep matching siblings after this route")
    group_by: list[str] = Field(description='`["..."]` groups by every label')
    group_wait: str = Field(description="a duration, e.g. 30s")
    group_interval: str
    repeat_interval: str
    routes: list[Route] = Field(description="child routes, in matching order")


class Retry(Body):
    schedule: list[str] = Field(description="the waits between attempts, e.g. 10s")
    max_age: str = Field(description="a delivery older than this is dead")


class Receiver(Body):
    name: str
    type: str = Field(description="webhook, slack, pagerduty or alertmanager_webhook")
    url: str = Field(description="scheme and host only: the path is redacted")
    signed: bool = Field(description="a signing secret is set")
    routing_key: str | None = Field(description="redacted for pagerduty (its integration key)")
    send_resolved: bool
    timeout: str
    max_per_second: float = Field(description="0 is unlimited")
    retry: Retry
    headers: dict[str, str] = Field(description="each configured header name, its value redacted")


class InhibitRule(Body):
    source_matchers: list[str]
    target_matchers: list[str]
    equal: list[str]


class SloThreshold(Body):
    matchers: list[str]
    threshold: str = Field(description="a duration, e.g. 15m")


class RoutingTree(Body):
    route: Route | None = Field(description="null when no routing is configured")
    receivers: list[Receiver]
    inhibit_rules: list[InhibitRule]
    slo_thresholds: list[SloThreshold]


class MatchedRoute(Body):
    route_id: str
    receiver: str
    group_labels: dict[str, str] = Field(description="the labels the alert's group would be keyed by")
    group_key: str


class RouteMatch(Body):
    receivers: list[str] = Field(description="in routing order")
    routes: list[MatchedRoute]
