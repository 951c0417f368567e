"""Prometheus metrics (docs/reference/metrics.md), computed from the database at scrape time (a custom Collector).

Gauges (`storyloom_backlog_items`, `storyloom_backlog_oldest_ready_age_seconds`, `storyloom_alerts`,
`storyloom_deliveries`) are GROUP BY counts over indexed columns at each scrape. The execution-derived
series (`storyloom_phase_duration_seconds` histogram, `storyloom_critique_total`,
`storyloom_llm_tokens_total`) are counters: SQL aggregates (bucket counts with SUM(CASE ...)) kept as
running totals by `health.totals.IncrementalTotals`, so after the first scrape of a process a scrape
only aggregates the executions recorded since. Every process serves the same database-wide totals.

Label values stay bounded whatever is ingested: an alert id outside Storyloom's catalog (an alert posted
to `/api/v2/alerts` by Prometheus or another source) is counted under `alert_id="external"`, and a
receiver that is not configured now (removed by a reload) under `receiver="other"`.

The delivery dispatcher's own counters (`storyloom_notifications_total`,
`storyloom_notification_latency_seconds`) are included when `storyloom.alerting.delivery.metrics` is
importable; see `extra_collectors`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import structlog
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import ColumnElement, case, func, literal, select

from storyloom.alerting.delivery.metrics import OTHER_RECEIVER
from storyloom.domain import backlog as bl
from storyloom.domain.catalog import CATALOG
from storyloom.health import queries as q
from storyloom.health.metrics_cluster import cluster_families
from storyloom.health.totals import IncrementalTotals
from storyloom.runtime import Runtime
from storyloom.store.tables import alerts, deliveries, planner_executions, set_aside

log = structlog.get_logger(__name__)

PHASE_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
TOKEN_KINDS = ("prompt", "completion", "critique")
EXTERNAL_ALERT_ID = "external"

_pe = planner_executions.c
EXECUTIONS = IncrementalTotals(
    "metrics",
    [_pe.phase, _pe.outcome, _pe.critique_status, _pe.provider, _pe.model],
    [
        func.count(),
        func.sum(_pe.latency_ms),
        func.sum(_pe.prompt_tokens),
        func.sum(_pe.completion_tokens),
        func.sum(_pe.critique_tokens),
        *(func.sum(case((_pe.latency_ms <= le * 1000.0, 1), else_=0)) for le in PHASE_BUCKETS_S),
    ],
)


def execution_families(totals: dict[tuple[str, ...], list[float]]) -> Iterator[Metric]:
    """The histogram and the two counters from the per-group execution totals."""
    histograms: dict[tuple[str, str], list[float]] = {}
    critique: dict[tuple[str, str], float] = {}
    tokens: dict[tuple[str, str, str], float] = {}
    for (phase, outcome, critique_status, provider, model), values in totals.items():
        count, sum_ms, prompt, completion, critique_tokens = values[:5]
        hist = histograms.setdefault((phase, outcome), [0.0] * (len(PHASE_BUCKETS_S) + 2))
        for i, in_bucket in enumerate(values[5:]):
            hist[i] += in_bucket
        hist[-2] += count
        hist[-1] += sum_ms
        critique[(phase, critique_status)] = critique.get((phase, critique_status), 0) + count
        for kind, value in zip(TOKEN_KINDS, (prompt, completion, critique_tokens), strict=True):
            tokens[(provider, model, kind)] = tokens.get((provider, model, kind), 0) + value
    duration = HistogramMetricFamily(
        "storyloom_phase_duration_seconds",
        "Planner phase execution latency, by phase and outcome (every recorded execution).",
        labels=["phase", "outcome"],
    )
    for (phase, outcome), hist in sorted(histograms.items()):
        buckets = [(_le(le), hist[i]) for i, le in enumerate(PHASE_BUCKETS_S)]
        buckets.append(("+Inf", hist[-2]))
        duration.add_metric([phase, outcome], buckets, sum_value=hist[-1] / 1000.0)
    yield duration
    family = CounterMetricFamily(
        "storyloom_critique",
        "Planner executions by phase and critique status (disabled, idle, used, count-exhausted, "
        "token-exhausted).",
        labels=["phase", "status"],
    )
    for (phase, status), count in sorted(critique.items()):
        family.add_metric([phase, status], count)
    yield family
    family = CounterMetricFamily(
        "storyloom_llm_tokens",
        "LLM tokens spent by planner executions, by provider, model and kind (prompt, completion, critique).",
        labels=["provider", "model", "kind"],
    )
    for (provider, model, kind), count in sorted(tokens.items()):
        family.add_metric([provider, model, kind], count)
    yield family


def _known_or(column: ColumnElement[str], known: list[str], other: str) -> ColumnElement[str]:
    """The column's value when it is one of `known`, else `other`: one bounded label value for the rest."""
    return case((column.in_(known), column), else_=literal(other)).label(column.name)


def _le(value: float) -> str:
    return repr(float(value))


class StoryloomCollector(Collector):
    """Queries the database at every scrape; registered in a dedicated registry per app."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def describe(self) -> Iterable[Metric]:
        return []  # collected on demand only: registering must not query the database

    def collect(self) -> Iterator[Metric]:
        rt = self.rt
        now = rt.clock.now()
        with rt.db.read() as conn:
            totals = EXECUTIONS.read(conn, now)
            counts = q.status_counts(conn)
            queue = q.queue_stats(conn)
            alert_id = _known_or(alerts.c.alert_id, sorted(CATALOG), EXTERNAL_ALERT_ID)
            alert_rows = conn.execute(
                select(alert_id, alerts.c.severity, alerts.c.status, func.count()).group_by(
                    alert_id, alerts.c.severity, alerts.c.status
                )
            ).all()
            receiver = _known_or(deliveries.c.receiver, sorted(rt.alerting.receivers), OTHER_RECEIVER)
            set_aside_rows = conn.execute(
                select(set_aside.c.pass_name, func.count()).group_by(set_aside.c.pass_name)
            ).all()
            delivery_rows = conn.execute(
                select(receiver, deliveries.c.status, func.count()).group_by(receiver, deliveries.c.status)
            ).all()
        yield from execution_families(totals)
        backlog = GaugeMetricFamily("storyloom_backlog_items", "Backlog items by status.", labels=["status"])
        for status in bl.STATUSES:
            backlog.add_metric([status], counts.get(status, 0))
        yield backlog
        age = queue.oldest_age(now)
        yield GaugeMetricFamily(
            "storyloom_backlog_oldest_ready_age_seconds",
            "How long the oldest ready backlog item has waited to run (0 when none is ready).",
            value=age.total_seconds() if age is not None else 0.0,
        )
        alert_family = GaugeMetricFamily(
            "storyloom_alerts",
            "Alerts by id, severity and status.",
            labels=["alert_id", "severity", "status"],
        )
        for alert_id, severity, status, count in alert_rows:
            alert_family.add_metric([str(alert_id), str(severity), str(status)], int(count))
        yield alert_family
        delivery_family = GaugeMetricFamily(
            "storyloom_deliveries",
            "Webhook deliveries by receiver and status.",
            labels=["receiver", "status"],
        )
        for receiver, status, count in delivery_rows:
            delivery_family.add_metric([str(receiver), str(status)], int(count))
        yield delivery_family
        aside = GaugeMetricFamily(
            "storyloom_set_aside_rows",
            "Rows a background pass could not process and set aside (GET /api/set-aside), by pass.",
            labels=["pass"],
        )
        for pass_name, count in set_aside_rows:
            aside.add_metric([str(pass_name)], int(count))
        yield aside
        yield from cluster_families(rt, now)
        for extra in extra_collectors(rt):
            try:
                yield from extra()
            except Exception:  # one broken extra must not break the scrape
                log.exception("extra metrics collector failed")


# Other modules' metric families: callables (rt) → iterable of metric families, appended at import time.
EXTRA_COLLECTORS: list[Callable[[Runtime], Iterable[Metric]]] = []


def extra_collectors(rt: Runtime) -> list[Callable[[], Iterable[Metric]]]:
    """EXTRA_COLLECTORS plus the delivery worker's counters when `alerting.delivery.metrics` exists.

    That module exposes `collect(rt)` → metric families (`storyloom_notifications_total`,
    `storyloom_notification_latency_seconds`).
    """
    found: list[Callable[[], Iterable[Metric]]] = [lambda f=f: f(rt) for f in EXTRA_COLLECTORS]  # type: ignore[misc]
    try:
        from storyloom.alerting.delivery import metrics as metrics_delivery
    except ImportError:
        return found
    collect = getattr(metrics_delivery, "collect", None)
    if callable(collect):
        found.append(lambda: collect(rt))
    return found


def build_registry(rt: Runtime) -> CollectorRegistry:
    """A dedicated registry (not the process-global one) holding Storyloom's collector for `rt`."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoryloomCollector(rt))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
