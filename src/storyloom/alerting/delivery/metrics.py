"""The delivery worker's own counters (docs/reference/metrics.md), counted in the process that sends.

`storyloom_notifications_total{receiver,result}` counts attempts by outcome: `delivered`, `retry` (5xx,
429, timeout, connection error: tried again later), `client_error` (other 4xx: retried once), `disabled`
(410: the receiver is switched off), `dead` (given up) and `skipped` (a receiver's own `delivery:failing`
notification, which is never sent back to it). `storyloom_notification_latency_seconds{receiver}` is the
time of each HTTP attempt.

A receiver that is not configured now (removed by a reload) is reported as `receiver="other"`, so the
label set stays bounded by the config.

The metrics live in a private registry (never the process-global one) and reach `/metrics` through
`collect(rt)`, which `health.metrics.extra_collectors` calls. They are per process, so each sample carries
a `worker` label (the process's `STORYLOOM_WORKER_ID`): in a split deployment every worker serves its own
on `storyloom worker --metrics-port`, and `sum by (receiver, result)` adds the workers up without double
counting (the database-wide picture is `storyloom_deliveries`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import Metric

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
OTHER_RECEIVER = "other"
RESULTS = ("delivered", "retry", "client_error", "disabled", "dead", "skipped")

REGISTRY = CollectorRegistry(auto_describe=True)

NOTIFICATIONS = Counter(
    "storyloom_notifications",
    "Webhook delivery attempts by receiver and result.",
    ["receiver", "result"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "storyloom_notification_latency_seconds",
    "Time of one webhook delivery attempt (request sent to response read), by receiver.",
    ["receiver"],
    buckets=LATENCY_BUCKETS_S,
    registry=REGISTRY,
)


def observe(receiver: str, result: str, latency_seconds: float | None) -> None:
    """Count one attempt (or a skip) and, when an HTTP request was made, its latency."""
    NOTIFICATIONS.labels(receiver=receiver, result=result).inc()
    if latency_seconds is not None:
        LATENCY.labels(receiver=receiver).observe(max(latency_seconds, 0.0))


def collect(rt: Any = None) -> Iterable[Metric]:
    """The two families, for a custom Collector (`health.metrics`): receivers bounded by `rt`'s config,
    each sample labelled with `rt`'s worker id."""
    if rt is None:
        yield from (*NOTIFICATIONS.collect(), *LATENCY.collect())
        return
    configured = set(rt.alerting.receivers)
    for family in (*NOTIFICATIONS.collect(), *LATENCY.collect()):
        yield _bounded(family, configured, rt.worker_id)


def _bounded(family: Metric, configured: set[str], worker: str) -> Metric:
    """`family` with every receiver outside `configured` merged into `other` (counts summed), and this
    process's `worker` label on each sample."""
    merged: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for sample in family.samples:
        labels = {**sample.labels, "worker": worker}
        if labels.get("receiver") not in configured:
            labels["receiver"] = OTHER_RECEIVER
        key = (sample.name, tuple(labels.items()))
        if sample.name.endswith("_created"):  # when the series began: the earliest of the merged ones
            merged[key] = min(merged.get(key, sample.value), sample.value)
        else:
            merged[key] = merged.get(key, 0.0) + sample.value
    bounded = Metric(family.name, family.documentation, family.type, family.unit)
    for (name, label_items), value in merged.items():
        bounded.add_sample(name, dict(label_items), value)
    return bounded
