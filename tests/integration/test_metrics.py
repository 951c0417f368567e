"""`GET /metrics` (CONTRACTS §9): Prometheus text format that parses, with the right types, labels and values."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert

from storyloom.api.app import create_app
from storyloom.clock import FrozenClock
from storyloom.config import Config
from storyloom.health import metrics
from storyloom.runtime import Runtime
from storyloom.services.tokens import create_token
from storyloom.store.db import Database
from storyloom.store.tables import deliveries
from tests.conftest import make_config
from tests.support.health_seed import add_execution, new_plan, raise_alert, seed_templates_now, set_item

OPS = {"receivers": [{"name": "ops", "url": "http://127.0.0.1:9000/ops"}], "route": {"receiver": "ops"}}


@pytest.fixture
def config() -> Config:
    return make_config(alerting=OPS)


def scrape(client: TestClient, headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = client.get("/metrics", headers=headers or {})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def samples(family: Any, name: str | None = None) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value for s in family.samples if name is None or s.name == name
    }


def test_every_contract_metric_with_type_and_labels(
    rt: Runtime, clock: FrozenClock, client: TestClient
) -> None:
    seed_templates_now(rt)
    plan = new_plan(rt)
    set_item(rt, plan["id"], "vision-plan", ready_at=clock.now())
    add_execution(rt, plan["id"], latency_ms=50.0, phase="vision", tokens=(100, 40, 7))
    add_execution(
        rt,
        plan["id"],
        latency_ms=3_000.0,
        phase="vision",
        tokens=(200, 60, 0),
        critique_status="count-exhausted",
    )
    add_execution(rt, plan["id"], latency_ms=700_000.0, phase="vision", outcome="failed")
    raise_alert(rt, "backlog:stale", {"plan_id": plan["id"], "backlog_id": "vision-plan"})
    with rt.db.begin() as conn:
        conn.execute(
            insert(deliveries).values(
                id="d1",
                webhook_id="w1",
                receiver="ops",
                receiver_type="webhook",
                group_key="g",
                status="delivered",
                alert_status="firing",
                fingerprints=[],
                notification={},
                attempts=1,
                created_at=clock.now(),
            )
        )
    clock.advance(timedelta(seconds=90))
    families = scrape(client)

    duration = families["storyloom_phase_duration_seconds"]
    assert duration.type == "histogram"
    buckets = samples(duration, "storyloom_phase_duration_seconds_bucket")

    def bucket(le: str, outcome: str = "success") -> float:
        return buckets[(("le", le), ("outcome", outcome), ("phase", "vision"))]

    assert bucket("0.1") == 1 and bucket("2.5") == 1 and bucket("5.0") == 2 and bucket("+Inf") == 2
    assert bucket("600.0", "failed") == 0 and bucket("+Inf", "failed") == 1
    counts = samples(duration, "storyloom_phase_duration_seconds_count")
    sums = samples(duration, "storyloom_phase_duration_seconds_sum")
    assert counts[(("outcome", "success"), ("phase", "vision"))] == 2
    assert sums[(("outcome", "success"), ("phase", "vision"))] == pytest.approx(3.05)

    backlog = families["storyloom_backlog_items"]
    assert backlog.type == "gauge"
    assert samples(backlog) == {
        (("status", "pending"),): 3.0,
        (("status", "in_progress"),): 0.0,
        (("status", "complete"),): 0.0,
        (("status", "blocked"),): 0.0,
        (("status", "failed"),): 0.0,
        (("status", "cancelled"),): 0.0,
    }
    oldest = families["storyloom_backlog_oldest_ready_age_seconds"]
    assert oldest.type == "gauge" and oldest.samples[0].value == 90.0

    alerts = families["storyloom_alerts"]
    assert alerts.type == "gauge"
    assert (
        samples(alerts)[(("alert_id", "backlog:stale"), ("severity", "warning"), ("status", "firing"))] == 1
    )

    assert families["storyloom_deliveries"].type == "gauge"
    assert samples(families["storyloom_deliveries"]) == {(("receiver", "ops"), ("status", "delivered")): 1.0}

    critique = families["storyloom_critique"]
    assert critique.type == "counter"
    assert samples(critique, "storyloom_critique_total") == {
        (("phase", "vision"), ("status", "idle")): 2.0,
        (("phase", "vision"), ("status", "count-exhausted")): 1.0,
    }

    tokens = families["storyloom_llm_tokens"]
    assert tokens.type == "counter"
    got = samples(tokens, "storyloom_llm_tokens_total")
    assert got[(("kind", "prompt"), ("model", "m1"), ("provider", "offline"))] == 400
    assert got[(("kind", "completion"), ("model", "m1"), ("provider", "offline"))] == 150
    assert got[(("kind", "critique"), ("model", "m1"), ("provider", "offline"))] == 7


def test_counters_keep_counting_across_scrapes(rt: Runtime, client: TestClient) -> None:
    plan = new_plan(rt)
    assert "storyloom_phase_duration_seconds_count" not in str(
        scrape(client)["storyloom_phase_duration_seconds"].samples
    )
    add_execution(rt, plan["id"], latency_ms=100.0)
    first = samples(
        scrape(client)["storyloom_phase_duration_seconds"], "storyloom_phase_duration_seconds_count"
    )
    assert first == {(("outcome", "success"), ("phase", "vision")): 1.0}
    add_execution(rt, plan["id"], latency_ms=100.0)
    add_execution(rt, plan["id"], latency_ms=100.0, outcome="failed")
    second = samples(
        scrape(client)["storyloom_phase_duration_seconds"], "storyloom_phase_duration_seconds_count"
    )
    assert second == {
        (("outcome", "success"), ("phase", "vision")): 2.0,
        (("outcome", "failed"), ("phase", "vision")): 1.0,
    }
    # a second app (another process) over the same database reports the same totals
    with TestClient(create_app(rt)) as other:
        third = samples(
            scrape(other)["storyloom_phase_duration_seconds"], "storyloom_phase_duration_seconds_count"
        )
    assert third == second


def test_extra_collectors_are_included(rt: Runtime, client: TestClient) -> None:
    def notifications(runtime: Runtime) -> list[Any]:
        family = GaugeMetricFamily("storyloom_test_extra", "an extra family", labels=["receiver"])
        family.add_metric(["ops"], 1)
        return [family]

    metrics.EXTRA_COLLECTORS.append(notifications)
    try:
        families = scrape(client)
    finally:
        metrics.EXTRA_COLLECTORS.remove(notifications)
    assert samples(families["storyloom_test_extra"]) == {(("receiver", "ops"),): 1.0}


def test_open_by_default_and_the_openapi_document_says_so(client: TestClient) -> None:
    assert client.get("/metrics").status_code == 200
    operation = client.get("/openapi.json").json()["paths"]["/metrics"]["get"]
    assert {} in operation["security"] and {"HTTPBearer": []} in operation["security"]
    assert (
        "Open by default" in operation["description"] and "metrics_require_token" in operation["description"]
    )
    assert "401" in operation["responses"]


def test_a_token_can_be_required(db: Database, clock: FrozenClock) -> None:
    rt = Runtime(config=make_config(metrics_require_token=True), db=db, clock=clock)
    with rt.db.begin() as conn:
        plain, _ = create_token(conn, name="prom", role="viewer", agent_ids=[], now=clock.now())
    with TestClient(create_app(rt)) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert "storyloom_backlog_items" in scrape(client, {"Authorization": f"Bearer {plain}"})


def test_the_dispatcher_counters_are_included(client: TestClient) -> None:
    from storyloom.alerting.delivery import metrics as metrics_delivery

    metrics_delivery.observe("ops", "delivered", 0.02)
    families = scrape(client)
    assert families["storyloom_notifications"].type == "counter"
    sent = samples(families["storyloom_notifications"], "storyloom_notifications_total")
    assert sent[(("receiver", "ops"), ("result", "delivered"), ("worker", "local"))] >= 1  # rt's worker id
    latency = families["storyloom_notification_latency_seconds"]
    assert latency.type == "histogram"
    counts = samples(latency, "storyloom_notification_latency_seconds_count")
    assert counts[(("receiver", "ops"), ("worker", "local"))] >= 1


# --- bounded label sets ----------------------------------------------------------------------------


def series(client: TestClient) -> list[str]:
    """Every sample line of a scrape (one per series)."""
    text = client.get("/metrics").text
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def test_label_sets_stay_bounded_whatever_is_ingested(rt: Runtime, client: TestClient) -> None:
    """Thousands of distinct ingested alert names and receivers that are gone add no series."""
    from storyloom.alerting.delivery import metrics as metrics_delivery

    operator = {"Authorization": f"Bearer {token(rt, 'operator')}"}

    def ingest(first: int, count: int) -> None:
        batch = [
            {"labels": {"alertname": f"DiskFull{i}", "instance": f"host-{i}", "severity": "warning"}}
            for i in range(first, first + count)
        ]
        assert client.post("/api/v2/alerts", json=batch, headers=operator).status_code == 200

    def deliver(receiver: str, i: int) -> None:
        with rt.db.begin() as conn:
            conn.execute(
                insert(deliveries).values(
                    id=f"d-{receiver}-{i}",
                    webhook_id=f"w-{receiver}-{i}",
                    receiver=receiver,
                    receiver_type="webhook",
                    group_key="g",
                    status="pending",
                    alert_status="firing",
                    fingerprints=[],
                    notification={},
                    attempts=0,
                    created_at=rt.clock.now(),
                )
            )
        metrics_delivery.observe(receiver, "retry", 0.01)

    ingest(0, 2)
    deliver("ops", 0)
    deliver("removed-by-reload-0", 0)
    before = series(client)
    for first in range(2, 3002, 500):
        ingest(first, 500)
    for i in range(1, 50):
        deliver(f"removed-by-reload-{i}", i)
    after = series(client)

    assert len(after) == len(before), sorted(set(after) - set(before))[:10]
    families = scrape(client)
    alerts = samples(families["storyloom_alerts"])
    assert alerts == {(("alert_id", "external"), ("severity", "warning"), ("status", "firing")): 3002.0}
    queued = samples(families["storyloom_deliveries"])
    assert queued == {
        (("receiver", "ops"), ("status", "pending")): 1.0,
        (("receiver", "other"), ("status", "pending")): 50.0,
    }
    attempts = samples(families["storyloom_notifications"], "storyloom_notifications_total")
    assert {labels[0] for labels in attempts} <= {("receiver", "ops"), ("receiver", "other")}
    assert attempts[(("receiver", "other"), ("result", "retry"), ("worker", "local"))] >= 50
    assert "DiskFull" not in "".join(after) and "removed-by-reload" not in "".join(after)


def token(rt: Runtime, role: str) -> str:
    with rt.db.begin() as conn:
        plain, _ = create_token(conn, name=role, role=role, agent_ids=[], now=rt.clock.now())
    return plain
