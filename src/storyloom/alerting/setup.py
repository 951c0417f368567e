"""From the validated config to the alerting runtime: receivers with secrets, route tree, inhibit rules, SLOs."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from storyloom.alerting.egress import DEFAULT_EGRESS, EgressPolicy, EgressRefused, EgressUnresolved, check_url
from storyloom.alerting.receivers.base import ReceiverSpec
from storyloom.config import AlertingConfig, Config, ConfigError, RouteConfig
from storyloom.domain.inhibition import InhibitRule
from storyloom.domain.matchers import Matcher, parse_matcher
from storyloom.domain.routing import Route, RouteSpec, build_route_tree
from storyloom.domain.slo import SloThreshold

SECRET_PREFIX = "whsec_"


@dataclass(frozen=True)
class AlertingRuntime:
    """Everything the notify pipeline and the delivery worker need, built once per (re)load."""

    receivers: dict[str, ReceiverSpec] = field(default_factory=dict)
    route: Route | None = None
    inhibit_rules: tuple[InhibitRule, ...] = ()
    slo_thresholds: tuple[SloThreshold, ...] = ()
    environment: str = "pre-alpha"
    source: str = "storyloom"
    public_url: str = ""
    max_alerts_per_notification: int = 100
    egress: EgressPolicy = DEFAULT_EGRESS


class _Problems:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.lines.append(f"{path}: {message}")

    def matchers(self, path: str, texts: list[str]) -> tuple[Matcher, ...]:
        out = []
        for i, text in enumerate(texts):
            try:
                out.append(parse_matcher(text))
            except ValueError as exc:
                self.add(f"{path}[{i}]", str(exc))
        return tuple(out)


def _secret(
    problems: _Problems,
    path: str,
    secret_env: str | None,
    secret_file: str | None,
    env: Mapping[str, str],
    required_format: bool,
) -> str | None:
    if secret_env and secret_file:
        problems.add(path, "set secret_env or secret_file, not both")
        return None
    value: str | None = None
    if secret_env:
        value = env.get(secret_env)
        if not value:
            problems.add(
                f"{path}.secret_env",
                f"environment variable {secret_env} is not set (export it or use secret_file)",
            )
            return None
    elif secret_file:
        try:
            value = Path(secret_file).read_text().strip()
        except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
            problems.add(
                f"{path}.secret_file", f"cannot read {secret_file}: {getattr(exc, 'strerror', None) or exc}"
            )
            return None
    if value and required_format:
        for part in value.split():
            if not part.startswith(SECRET_PREFIX) or len(part) <= len(SECRET_PREFIX) + 8:
                problems.add(
                    f"{path}.{'secret_env' if secret_env else 'secret_file'}",
                    "the secret must look like whsec_<base64> (Standard Webhooks); "
                    "generate one with: python -c \"import os,base64;print('whsec_'+base64.b64encode(os.urandom(24)).decode())\"",
                )
                return None
    return value


def _route_spec(problems: _Problems, route: RouteConfig, path: str, names: set[str]) -> RouteSpec:
    if route.receiver is not None and route.receiver not in names:
        known = ", ".join(sorted(names)) or "none are configured"
        problems.add(f"{path}.receiver", f"unknown receiver {route.receiver!r} (receivers: {known})")
    group_by = tuple(route.group_by) if route.group_by is not None else None
    return RouteSpec(
        receiver=route.receiver,
        matchers=problems.matchers(f"{path}.matchers", route.matchers),
        continue_=route.continue_,
        group_by=group_by,
        group_wait=route.group_wait,
        group_interval=route.group_interval,
        repeat_interval=route.repeat_interval,
        routes=tuple(
            _route_spec(problems, child, f"{path}.routes[{i}]", names) for i, child in enumerate(route.routes)
        ),
    )


def _build(config: Config, env: Mapping[str, str], *, resolve: bool) -> tuple[AlertingRuntime, list[str]]:
    problems = _Problems()
    alerting: AlertingConfig = config.alerting
    receivers: dict[str, ReceiverSpec] = {}
    for i, rc in enumerate(alerting.receivers):
        path = f"alerting.receivers[{i}]"
        if rc.name in receivers:
            problems.add(f"{path}.name", f"receiver name {rc.name!r} is used twice")
        try:
            check_url(rc.url, alerting.egress.policy(), resolve=resolve)
        except EgressUnresolved:
            pass  # a name that does not resolve now may later; the sender checks again at send time
        except EgressRefused as exc:
            problems.add(f"{path}.url", str(exc))
        if rc.type == "pagerduty" and not rc.routing_key:
            problems.add(
                f"{path}.routing_key", "a pagerduty receiver needs its integration key as routing_key"
            )
        secret = _secret(problems, path, rc.secret_env, rc.secret_file, env, required_format=True)
        receivers[rc.name] = ReceiverSpec(
            name=rc.name,
            type=rc.type,
            url=rc.url,
            secret=secret,
            routing_key=rc.routing_key,
            send_resolved=rc.send_resolved,
            timeout=rc.timeout,
            max_per_second=rc.max_per_second,
            retry_schedule=tuple(rc.retry.schedule),
            retry_max_age=rc.retry.max_age,
            headers=dict(rc.headers),
        )
    route: Route | None = None
    if alerting.route is None:
        if receivers:
            problems.add(
                "alerting.route",
                "receivers are configured but no route sends alerts to them; add route.receiver",
            )
    else:
        spec = _route_spec(problems, alerting.route, "alerting.route", set(receivers))
        if not alerting.route.receiver:
            problems.add(
                "alerting.route.receiver", "the root route needs a receiver (it catches every alert)"
            )
        elif not problems.lines:
            try:
                route = build_route_tree(
                    spec,
                    group_wait=spec.group_wait or _default("group_wait"),
                    group_interval=spec.group_interval or _default("group_interval"),
                    repeat_interval=spec.repeat_interval or _default("repeat_interval"),
                )
            except ValueError as exc:
                problems.add("alerting.route", str(exc))
    rules = []
    for i, rule in enumerate(alerting.inhibit_rules):
        path = f"alerting.inhibit_rules[{i}]"
        rules.append(
            InhibitRule(
                problems.matchers(f"{path}.source_matchers", rule.source_matchers),
                problems.matchers(f"{path}.target_matchers", rule.target_matchers),
                tuple(rule.equal),
            )
        )
    thresholds = []
    for i, slo in enumerate(alerting.slo_thresholds):
        thresholds.append(
            SloThreshold(
                problems.matchers(f"alerting.slo_thresholds[{i}].matchers", slo.matchers), slo.threshold
            )
        )
    runtime = AlertingRuntime(
        receivers=receivers,
        route=route,
        inhibit_rules=tuple(rules),
        slo_thresholds=tuple(thresholds),
        environment=config.environment,
        source=alerting.source,
        public_url=config.public_url,
        max_alerts_per_notification=alerting.max_alerts_per_notification,
        egress=alerting.egress.policy(),
    )
    return runtime, problems.lines


def _default(name: str) -> timedelta:
    from storyloom.domain import routing

    return {
        "group_wait": routing.DEFAULT_GROUP_WAIT,
        "group_interval": routing.DEFAULT_GROUP_INTERVAL,
        "repeat_interval": routing.DEFAULT_REPEAT_INTERVAL,
    }[name]


def alerting_problems(config: Config, env: Mapping[str, str]) -> list[str]:
    """The `config check` lines for the alerting section (names are not resolved: checks work offline)."""
    return _build(config, env, resolve=False)[1]


def build_alerting(config: Config, env: Mapping[str, str]) -> AlertingRuntime:
    """The runtime of a served config; ConfigError (the `config check` lines) when what the process adds
    to the file, such as the demo receiver, cannot work (e.g. loopback refused by `alerting.egress`)."""
    runtime, problems = _build(config, env, resolve=False)
    if problems:
        raise ConfigError(problems)
    return runtime


class SecretPlaceholders(Mapping[str, str]):
    """The process environment, with a well-formed placeholder for every unset variable.

    Routing needs no secrets: `routes test --config FILE` reads a file whose secrets are not exported here.
    """

    PLACEHOLDER = SECRET_PREFIX + "cm91dGVzLXRlc3QtcGxhY2Vob2xkZXI="

    def __getitem__(self, name: str) -> str:
        return os.environ.get(name) or self.PLACEHOLDER

    def __iter__(self) -> Iterator[str]:
        return iter(os.environ)

    def __len__(self) -> int:
        return len(os.environ)


def routing_without_secrets(config: Config) -> AlertingRuntime:
    """The alerting runtime of `config` for routing questions: its receivers' secrets need not be exported."""
    return build_alerting(config, SecretPlaceholders())
