"""Cluster metrics, the same from every process: worker heartbeat ages and takeovers, read from the database."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy import func, select

from storyloom.runtime import Runtime
from storyloom.store.events import WORKER_TAKEOVER
from storyloom.store.leases import WORKER_LEASE_PREFIX
from storyloom.store.tables import leases, workflow_events


def cluster_families(rt: Runtime, now: datetime) -> Iterator[Metric]:
    """`storyloom_worker_heartbeat_age_seconds{worker}` per known worker, `storyloom_worker_takeovers_total`."""
    ttl = rt.config.cluster.takeover_after
    with rt.db.read() as conn:
        beats = conn.execute(
            select(leases.c.name, leases.c.holder, leases.c.expires_at).where(
                leases.c.name.like(f"{WORKER_LEASE_PREFIX}%")
            )
        ).all()
        takeovers = conn.execute(
            select(func.count()).select_from(workflow_events).where(workflow_events.c.kind == WORKER_TAKEOVER)
        ).scalar_one()
    age = GaugeMetricFamily(
        "storyloom_worker_heartbeat_age_seconds",
        "Seconds since each worker's last heartbeat (a worker silent past cluster.takeover_after is taken over).",
        labels=["worker"],
    )
    for name, _holder, expires_at in sorted(beats):
        last_beat = expires_at - ttl
        age.add_metric([name.removeprefix(WORKER_LEASE_PREFIX)], max(0.0, (now - last_beat).total_seconds()))
    yield age
    yield CounterMetricFamily(
        "storyloom_worker_takeovers",
        "Silent workers whose work a live worker took over, cluster-wide.",
        value=int(takeovers),
    )
