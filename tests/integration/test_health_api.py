"""`GET /api/diagnostics/planner` (CONTRACTS §5): exact shape, status, figures, routes; reading never
fires, resolves or sends anything."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import insert

from storyloom.alerting.notifier import Notifier
from storyloom.clock import FrozenClock
from storyloom.health.evaluate import evaluate
from storyloom.runtime import Runtime
from storyloom.services.tokens import create_token
from storyloom.store.db import Database
from storyloom.store.tables import deliveries, lore_requirements, planner_templates
from tests.conftest import make_config
from tests.support.health_seed import (
    add_execution,
    alert_tables,
    give_task,
    new_plan,
    raise_alert,
    seed_templates_now,
    set_item,
    set_task,
)

TOP = {"generated_at", "status", "planners", "backlog", "telemetry", "slo", "alerts", "routes", "warnings"}
BACKLOG = {
    "total_items",
    "pending",
    "in_progress",
    "complete",
    "blocked",
    "failed",
    "plans",
    "recent_transitions",
    "stale_items",
    "orphaned_items",
    "action_logs",
}
TELEMETRY = {
    "total_executions",
    "last_execution_at",
    "outcome_counts",
    "critique_status_counts",
    "recent_failures",
}
SLO = {"phase_latency", "queue", "critique", "delivery"}
PHASE_LATENCY = {"p50_ms", "p95_ms", "p99_ms", "objective", "good_ratio", "burn_rate_1h", "burn_rate_6h"}
ALERT = {
    "alert_id",
    "fingerprint",
    "status",
    "severity",
    "title",
    "description",
    "labels",
    "starts_at",
    "ends_at",
    "generated_at",
    "slo_minutes",
    "slo_breached",
    "runbook_url",
    "console_url",
    "acknowledgement",
    "drill",
}


def alerting() -> dict[str, Any]:
    return {
        "receivers": [
            {"name": "ops", "url": "http://127.0.0.1:9/hooks/ops"},
            {"name": "pager", "url": "http://127.0.0.1:9/hooks/pager"},
        ],
        "route": {
            "receiver": "ops",
            "group_by": ["alert_id", "plan_id"],
            "group_wait": "0s",
            "routes": [
                {"matchers": ['severity=~"error|critical"'], "receiver": "pager", "continue": True},
                {"matchers": ['alert_id=~"planner:.*"'], "receiver": "ops"},
            ],
        },
    }


@pytest.fixture
def rt(db: Database, clock: FrozenClock) -> Runtime:
    runtime = Runtime(
        config=make_config(alerting=alerting(), public_url="http://console.test"), db=db, clock=clock
    )
    seed_templates_now(runtime)
    return runtime


@pytest.fixture
def viewer(rt: Runtime) -> dict[str, str]:
    with rt.db.begin() as conn:
        plain, _ = create_token(conn, name="viewer", role="viewer", agent_ids=[], now=rt.clock.now())
    return {"Authorization": f"Bearer {plain}"}


def report(client: TestClient, viewer: dict[str, str]) -> dict[str, Any]:
    response = client.get("/api/diagnostics/planner", headers=viewer)
    assert response.status_code == 200, response.text
    return response.json()


def test_needs_a_viewer_token(client: TestClient) -> None:
    response = client.get("/api/diagnostics/planner")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")


def test_fresh_install_is_healthy_with_the_exact_shape(client: TestClient, viewer: dict[str, str]) -> None:
    body = report(client, viewer)
    assert set(body) == TOP
    assert body["status"] == "healthy"
    assert body["generated_at"] == "2026-11-25T20:00:00Z"
    assert set(body["backlog"]) == BACKLOG
    assert set(body["telemetry"]) == TELEMETRY
    assert set(body["slo"]) == SLO
    assert set(body["slo"]["phase_latency"]) == PHASE_LATENCY
    assert set(body["slo"]["queue"]) == {"depth", "ready", "oldest_age_s"}
    assert set(body["slo"]["critique"]) == {"pass_ratio", "exhausted"}
    assert set(body["slo"]["delivery"]) == {"success_ratio", "p95_ms", "pending", "dead"}
    assert body["alerts"] == [] and body["routes"] == []
    assert [p["name"] for p in body["planners"]] == [
        "Vision Planner",
        "World Bible Manager",
        "Iterative Planner",
        "Chapter Architect",
        "Scroll Refiner",
        "Scene Weaver",
    ]
    for planner in body["planners"]:
        for step in planner["steps"]:
            assert set(step) == {"step_id", "template_id", "template_found", "template_active", "issue"}
            assert step["template_found"] and step["template_active"] and step["issue"] is None
    assert body["telemetry"]["total_executions"] == 0
    assert body["slo"]["phase_latency"]["p95_ms"] is None
    assert body["slo"]["phase_latency"]["objective"] == 0.95
    assert body["slo"]["queue"] == {"depth": 0, "ready": 0, "oldest_age_s": None}
    assert all(isinstance(w, str) and w.endswith(".") for w in body["warnings"])


def test_reading_never_changes_alerts(rt: Runtime, client: TestClient, viewer: dict[str, str]) -> None:
    plan = new_plan(rt)
    task_id = give_task(rt, plan["id"], "vision-plan")
    set_item(
        rt, plan["id"], "vision-plan", status="in_progress", updated_at=rt.clock.now() - timedelta(hours=3)
    )
    set_task(rt, task_id, "failed")
    add_execution(rt, plan["id"], outcome="failed")
    with rt.db.begin() as conn:
        conn.execute(
            planner_templates.delete().where(planner_templates.c.template_id == "planner.fiction.vision")
        )
    before = alert_tables(rt)
    first = report(client, viewer)
    second = report(client, viewer)
    assert alert_tables(rt) == before, "reading the report fired or resolved something"
    assert first["alerts"] == second["alerts"] == []
    # ...yet it tells the truth now: a missing template is critical before any evaluation ran
    assert first["status"] == "critical"
    assert len(first["backlog"]["stale_items"]) == 1
    assert first["backlog"]["orphaned_items"][0]["reason"] == "task-finished"
    assert any("has not run yet" in w for w in first["warnings"])


def test_info_only_is_healthy_and_planned_lore_does_not_degrade(
    rt: Runtime, client: TestClient, viewer: dict[str, str]
) -> None:
    plan = new_plan(rt)
    with rt.db.begin() as conn:
        conn.execute(
            insert(lore_requirements).values(
                plan_id=plan["id"],
                slug="harbor-law",
                title="Harbor law",
                description="",
                status="planned",
                created_at=rt.clock.now(),
                updated_at=rt.clock.now(),
            )
        )
    evaluate(rt)
    body = report(client, viewer)
    assert [a["alert_id"] for a in body["alerts"]] == ["planner:no-executions"]
    assert body["status"] == "healthy"
    assert any(
        w == "No planner execution has been recorded yet although 1 plan exists." for w in body["warnings"]
    )


def test_warning_degrades_and_error_contract_drift_is_critical(
    rt: Runtime, client: TestClient, viewer: dict[str, str]
) -> None:
    raise_alert(rt, "backlog:contract-drift", {"plan_id": "p1", "code": "unknown-agent"}, severity="warning")
    assert report(client, viewer)["status"] == "degraded"
    raise_alert(rt, "backlog:contract-drift", {"plan_id": "p1", "code": "unknown-agent"}, severity="error")
    assert report(client, viewer)["status"] == "critical"


def test_evaluated_alerts_and_their_routes(rt: Runtime, client: TestClient, viewer: dict[str, str]) -> None:
    plan = new_plan(rt)
    add_execution(rt, plan["id"], outcome="failed")
    evaluate(rt)
    body = report(client, viewer)
    assert body["status"] == "degraded"
    (alert,) = body["alerts"]
    assert set(alert) == ALERT
    assert alert["alert_id"] == "planner:recent-failures"
    assert alert["runbook_url"] == "http://console.test/runbooks/planner:recent-failures"
    # not grouped by the notifier yet: the routing tree says where it will go
    assert body["routes"] == [{"alert_fingerprint": alert["fingerprint"], "receivers": ["pager", "ops"]}]
    Notifier(rt).tick()
    body = report(client, viewer)
    assert body["routes"] == [{"alert_fingerprint": alert["fingerprint"], "receivers": ["pager", "ops"]}]


def test_backlog_and_telemetry_figures(
    rt: Runtime, clock: FrozenClock, client: TestClient, viewer: dict[str, str]
) -> None:
    plan = new_plan(rt, "Tide Ledger")
    set_item(rt, plan["id"], "vision-plan", status="complete")
    claimed = clock.now() - timedelta(minutes=3)
    set_item(rt, plan["id"], "world-bible", ready_at=claimed, updated_at=claimed)
    for n in range(1, 101):  # latencies 1..100 s; 6 over the 95 s... threshold is 2m: all good
        add_execution(
            rt,
            plan["id"],
            latency_ms=n * 1000.0,
            finished_at=clock.now() - timedelta(minutes=1),
            critique_status="used" if n % 10 else "count-exhausted",
            tokens=(10, 5, 1),
        )
    add_execution(
        rt,
        plan["id"],
        outcome="failed",
        latency_ms=500.0,
        error="malformed JSON",
        transcript=[("user", "Write the vision"), ("assistant", '```json\n{"author_summary": "short"}\n```')],
    )
    body = report(client, viewer)
    backlog = body["backlog"]
    assert (backlog["total_items"], backlog["pending"], backlog["complete"]) == (3, 2, 1)
    (summary,) = backlog["plans"]
    assert summary["plan_id"] == plan["id"] and summary["name"] == "Tide Ledger"
    assert summary["agent_id"] == plan["agent_id"] and summary["persona_id"] == plan["persona_id"]
    assert summary["counts"]["pending"] == 2 and summary["total_items"] == 3
    assert {t["backlog_id"] for t in backlog["recent_transitions"]} == {
        "vision-plan",
        "world-bible",
        "iteration-plan",
    }
    assert backlog["recent_transitions"][0]["reason"] == "plan-created"
    assert backlog["action_logs"][0]["action"] == "plan-create"

    telemetry = body["telemetry"]
    assert telemetry["total_executions"] == 101
    assert telemetry["outcome_counts"] == {"success": 100, "partial": 0, "failed": 1, "cancelled": 0}
    assert telemetry["last_execution_at"] == "2026-11-25T20:00:00Z"
    assert telemetry["critique_status_counts"] == {"used": 90, "count-exhausted": 10, "idle": 1}
    (failure,) = telemetry["recent_failures"]
    assert failure["error"] == "malformed JSON"
    assert failure["transcript_snippet"] == '```json {"author_summary": "short"} ```'

    slo = body["slo"]
    latency = slo["phase_latency"]
    # 101 samples: 0.5 s and 1..100 s; nearest rank
    assert (latency["p50_ms"], latency["p95_ms"], latency["p99_ms"]) == (50_000.0, 95_000.0, 99_000.0)
    assert latency["good_ratio"] == 1.0 and latency["burn_rate_1h"] == 0.0
    assert slo["critique"] == {"pass_ratio": round(91 / 101, 4), "exhausted": 10}
    assert slo["queue"] == {"depth": 2, "ready": 1, "oldest_age_s": 180.0}


def test_burn_rate_and_delivery_figures(
    rt: Runtime, clock: FrozenClock, client: TestClient, viewer: dict[str, str]
) -> None:
    plan = new_plan(rt)
    for n in range(10):
        add_execution(rt, plan["id"], latency_ms=300_000.0 if n < 3 else 1_000.0)
    now = clock.now()
    rows = [
        ("delivered", 100.0),
        ("delivered", 200.0),
        ("delivered", 300.0),
        ("dead", None),
        ("pending", None),
    ]
    with rt.db.begin() as conn:
        for n, (status, latency) in enumerate(rows):
            conn.execute(
                insert(deliveries).values(
                    id=f"d{n}",
                    webhook_id=f"w{n}",
                    receiver="ops",
                    receiver_type="webhook",
                    group_key="g",
                    status=status,
                    alert_status="firing",
                    fingerprints=[],
                    notification={},
                    attempts=1,
                    latency_ms=latency,
                    created_at=now - timedelta(minutes=n),
                )
            )
    slo = report(client, viewer)["slo"]
    assert slo["phase_latency"]["good_ratio"] == 0.7
    assert slo["phase_latency"]["burn_rate_1h"] == pytest.approx(6.0)  # 30% slow / 5% budget
    assert slo["phase_latency"]["burn_rate_6h"] == pytest.approx(6.0)
    assert slo["delivery"] == {"success_ratio": 0.75, "p95_ms": 300.0, "pending": 1, "dead": 1}
