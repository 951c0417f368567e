"""The scheduled health evaluation: every evaluated alert fires when its cause appears and resolves when it
goes away, with the frozen clock; other services' reconcilers run too; the engine schedules it on DBOS."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from dbos import DBOS
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import insert, select, text, update

from storyloom.api.app import create_app
from storyloom.clock import FrozenClock
from storyloom.domain.alerts import FIRING, RESOLVED
from storyloom.engine.health_schedule import SCHEDULE_NAME
from storyloom.health import evaluate as ev
from storyloom.health.evaluate import evaluate
from storyloom.health.report import planner_health
from storyloom.runtime import Runtime
from storyloom.services.actors import Actor
from storyloom.services.backlog import resume_item
from storyloom.store.db import Database
from storyloom.store.tables import alerts, lore_requirements, persona_obligations, planner_templates
from tests.conftest import make_config
from tests.support.engine import ShiftedClock, item_statuses, running
from tests.support.faults import reject_writes
from tests.support.health_seed import (
    add_execution,
    add_executions,
    add_world_bible_entry,
    firing,
    give_task,
    new_plan,
    raise_alert,
    seed_templates_now,
    set_item,
    set_task,
)
from tests.support.server import ADMIN_TOKEN, wait_for


@pytest.fixture
def hrt(rt: Runtime) -> Runtime:
    """A runtime whose planner templates are seeded, as `storyloom run` does at start."""
    seed_templates_now(rt)
    return rt


def status_of(rt: Runtime, fingerprint: str) -> str:
    with rt.db.read() as conn:
        return str(
            conn.execute(select(alerts.c.status).where(alerts.c.fingerprint == fingerprint)).scalar_one()
        )


def only(rt: Runtime, alert_id: str) -> dict:
    found = firing(rt, alert_id)
    assert len(found) == 1, found
    return found[0]


# --- backlog -------------------------------------------------------------------------------------------


def test_stale_in_progress_item_fires_then_resolves(hrt: Runtime, clock: FrozenClock) -> None:
    plan = new_plan(hrt)
    task_id = give_task(hrt, plan["id"], "vision-plan")
    set_item(
        hrt, plan["id"], "vision-plan", status="in_progress", updated_at=clock.now() - timedelta(minutes=90)
    )
    evaluate(hrt)
    assert not firing(hrt, "backlog:stale"), "90 minutes is under the 2h threshold"

    clock.advance(timedelta(minutes=31))
    result = evaluate(hrt)
    alert = only(hrt, "backlog:stale")
    assert alert["fingerprint"] in result.fired
    assert alert["severity"] == "warning"
    assert alert["labels"]["backlog_id"] == "vision-plan"
    assert alert["labels"]["task_id"] == task_id
    assert alert["labels"]["agent_id"] == plan["agent_id"]
    assert alert["labels"]["source"] == "health"

    evaluate(hrt)  # still stale: nothing changes
    assert status_of(hrt, alert["fingerprint"]) == FIRING

    set_item(hrt, plan["id"], "vision-plan", updated_at=clock.now())  # the worker made progress
    result = evaluate(hrt)
    assert alert["fingerprint"] in result.resolved
    assert status_of(hrt, alert["fingerprint"]) == RESOLVED


def test_orphaned_items_fire_then_resolve(hrt: Runtime) -> None:
    plan = new_plan(hrt)
    task_id = give_task(hrt, plan["id"], "vision-plan")
    set_item(hrt, plan["id"], "vision-plan", status="in_progress")
    evaluate(hrt)
    assert not firing(hrt, "backlog:orphaned")

    set_task(hrt, task_id, "succeeded")  # in progress under a finished task
    set_item(hrt, plan["id"], "world-bible", task_id="task-that-never-existed")  # pending, task row gone
    evaluate(hrt)
    orphans = {a["labels"]["backlog_id"]: a for a in firing(hrt, "backlog:orphaned")}
    assert set(orphans) == {"vision-plan", "world-bible"}
    assert "already finished (succeeded)" in orphans["vision-plan"]["description"]
    assert "task-that-never-existed no longer exists" in orphans["world-bible"]["description"]

    set_task(hrt, task_id, "running")
    set_item(hrt, plan["id"], "world-bible", task_id=None)
    result = evaluate(hrt)
    assert not firing(hrt, "backlog:orphaned")
    assert {orphans["vision-plan"]["fingerprint"], orphans["world-bible"]["fingerprint"]} <= set(
        result.resolved
    )


def test_queue_age_fires_for_the_oldest_ready_item_then_resolves(hrt: Runtime, clock: FrozenClock) -> None:
    plan = new_plan(hrt)  # vision-plan has no inputs: ready at once, not yet claimed (no ready_at)
    clock.advance(timedelta(minutes=14))
    evaluate(hrt)
    assert not firing(hrt, "backlog:queue-age")

    clock.advance(timedelta(minutes=2))
    evaluate(hrt)
    alert = only(hrt, "backlog:queue-age")
    assert "vision-plan" in alert["description"]
    assert "15m" in alert["description"]

    # world-bible waits on vision-plan (not complete): not ready however old it is
    set_item(hrt, plan["id"], "vision-plan", status="in_progress")
    give_task(hrt, plan["id"], "vision-plan")
    evaluate(hrt)
    assert not firing(hrt, "backlog:queue-age")

    # once its input is complete it is ready, and it counts from when the scheduler stamped it
    set_item(hrt, plan["id"], "vision-plan", status="complete")
    five_minutes_ago = clock.now() - timedelta(minutes=5)
    set_item(hrt, plan["id"], "world-bible", ready_at=five_minutes_ago, updated_at=five_minutes_ago)
    evaluate(hrt)
    assert not firing(hrt, "backlog:queue-age")
    clock.advance(timedelta(minutes=11))
    evaluate(hrt)
    assert "world-bible" in only(hrt, "backlog:queue-age")["description"]


def test_queue_age_counts_a_resumed_item_from_its_resume(hrt: Runtime, clock: FrozenClock) -> None:
    plan = new_plan(hrt)
    set_item(hrt, plan["id"], "vision-plan", ready_at=clock.now())  # claimed and run long ago...
    clock.advance(timedelta(hours=3))
    set_item(hrt, plan["id"], "vision-plan", status="pending")  # ...failed, and resumed just now
    evaluate(hrt)
    assert not firing(hrt, "backlog:queue-age")
    clock.advance(timedelta(minutes=16))
    evaluate(hrt)
    assert firing(hrt, "backlog:queue-age")


def test_queue_age_ignores_plans_that_are_not_running(hrt: Runtime, clock: FrozenClock) -> None:
    plan = new_plan(hrt)
    with hrt.db.begin() as conn:
        from storyloom.store.tables import plans

        conn.execute(update(plans).where(plans.c.id == plan["id"]).values(status="archived"))
    clock.advance(timedelta(hours=5))
    evaluate(hrt)
    assert not firing(hrt, "backlog:queue-age")


def test_lore_blocked_fires_per_plan_then_resolves(hrt: Runtime) -> None:
    plan = new_plan(hrt)
    with hrt.db.begin() as conn:
        conn.execute(
            insert(lore_requirements).values(
                plan_id=plan["id"],
                slug="harbor-law",
                title="Harbor law",
                description="",
                status="planned",
                created_at=hrt.clock.now(),
                updated_at=hrt.clock.now(),
            )
        )
    evaluate(hrt)
    assert not firing(hrt, "lore:blocked"), "planned lore alone blocks nothing (and must not degrade health)"

    set_item(
        hrt,
        plan["id"],
        "vision-plan",
        status="blocked",
        last_error="lore gate: requirements not ready: harbor-law",
    )
    evaluate(hrt)
    alert = only(hrt, "lore:blocked")
    assert alert["labels"]["plan_id"] == plan["id"]
    assert "harbor-law" in alert["description"]

    set_item(hrt, plan["id"], "vision-plan", status="pending", last_error=None)
    evaluate(hrt)
    assert not firing(hrt, "lore:blocked")
    assert status_of(hrt, alert["fingerprint"]) == RESOLVED


# --- planner executions --------------------------------------------------------------------------------


def test_recent_failures_fire_then_resolve_when_the_window_passes(hrt: Runtime, clock: FrozenClock) -> None:
    plan = new_plan(hrt)
    add_execution(hrt, plan["id"], outcome="success")
    evaluate(hrt)
    assert not firing(hrt, "planner:recent-failures")

    add_executions(hrt, plan["id"], 2, outcome="failed", error="provider timed out")
    evaluate(hrt)
    alert = only(hrt, "planner:recent-failures")
    assert alert["severity"] == "error"
    assert alert["labels"]["plan_id"] == plan["id"]
    assert alert["description"].startswith("2 failed planner execution(s) of 1 item(s)")

    add_execution(hrt, plan["id"], outcome="failed")
    evaluate(hrt)
    assert only(hrt, "planner:recent-failures")["description"].startswith("3 failed")

    clock.advance(timedelta(hours=24, minutes=1))
    evaluate(hrt)
    assert not firing(hrt, "planner:recent-failures")
    assert status_of(hrt, alert["fingerprint"]) == RESOLVED


def test_recent_failures_count_only_items_not_completed_since(hrt: Runtime, clock: FrozenClock) -> None:
    plan = new_plan(hrt)
    add_executions(hrt, plan["id"], 2, backlog_id="vision-plan", outcome="failed")
    add_execution(hrt, plan["id"], backlog_id="world-bible", outcome="failed")
    add_execution(hrt, plan["id"], backlog_id="iteration-plan", outcome="failed")
    set_item(hrt, plan["id"], "vision-plan", status="failed")
    set_item(hrt, plan["id"], "world-bible", status="failed")
    evaluate(hrt)
    alert = only(hrt, "planner:recent-failures")
    assert alert["description"].startswith("4 failed planner execution(s) of 3 item(s)")

    set_item(hrt, plan["id"], "vision-plan", status="complete")  # its retry or resume succeeded
    set_item(hrt, plan["id"], "iteration-plan", status="cancelled")
    clock.advance(hrt.config.health.evaluate_every)
    evaluate(hrt)
    assert only(hrt, "planner:recent-failures")["description"].startswith(
        "1 failed planner execution(s) of 1 item(s)"
    ), "the failed world-bible item still counts"

    set_item(hrt, plan["id"], "world-bible", status="pending")  # resumed, not yet run again
    clock.advance(hrt.config.health.evaluate_every)
    evaluate(hrt)
    assert only(hrt, "planner:recent-failures")["description"].startswith("1 failed")

    set_item(hrt, plan["id"], "world-bible", status="complete")
    clock.advance(hrt.config.health.evaluate_every)
    evaluate(hrt)
    assert not firing(hrt, "planner:recent-failures")
    assert status_of(hrt, alert["fingerprint"]) == RESOLVED


def test_failures_of_an_item_that_is_gone_still_count(hrt: Runtime) -> None:
    plan = new_plan(hrt)
    add_execution(hrt, plan["id"], backlog_id="scroll-9", outcome="failed")  # no such item
    evaluate(hrt)
    assert only(hrt, "planner:recent-failures")["description"].startswith("1 failed")


def test_a_plan_completed_after_a_resume_is_healthy_within_two_evaluation_intervals(db: Database) -> None:
    """The demo's story: a phase fails for good, the operator resumes it, the plan completes; health goes
    back to healthy at the next evaluations instead of staying degraded for the failure window."""
    config = make_config(
        pipeline={"chapters": 1, "scenes_per_chapter": 1, "retry_backoff": "10ms"},
        llm={"faults": [{"phase": "scroll_refiner", "mode": "fail", "times": 3}]},
    )
    clock = ShiftedClock()
    with running(db, config, clock) as rt:
        plan = new_plan(rt)
        wait_for(
            lambda: item_statuses(rt, plan["id"]).get("scroll-1") == "failed",
            timeout=60,
            message="scroll-1 failed",
        )
        evaluate(rt)
        assert firing(rt, "planner:recent-failures")
        assert planner_health(rt)["status"] == "degraded"

        actor = Actor(name="alice", actor_id="tok_alice", role="operator")
        body = {"agent_id": plan["agent_id"], "provider": "offline", "model": "m1"}
        resume_item(rt.db, plan["id"], "scroll-1", body, actor, clock.now(), rt.config)
        wait_for(
            lambda: set(item_statuses(rt, plan["id"]).values()) == {"complete"},
            timeout=60,
            message="every item complete after the resume",
        )
        for _ in range(2):
            clock.advance(rt.config.health.evaluate_every)
            evaluate(rt)
        assert not firing(rt, "planner:recent-failures")
        report = planner_health(rt)
        assert report["status"] == "healthy", [(a["alert_id"], a["severity"]) for a in report["alerts"]]
        assert report["telemetry"]["outcome_counts"]["failed"] == 3, "the history is kept"


def test_no_executions_is_info_and_resolves_at_the_first_execution(hrt: Runtime) -> None:
    evaluate(hrt)
    assert not firing(hrt, "planner:no-executions"), "no plans: nothing is waiting"
    plan = new_plan(hrt)
    evaluate(hrt)
    alert = only(hrt, "planner:no-executions")
    assert alert["severity"] == "info"

    add_execution(hrt, plan["id"], outcome="failed")  # any execution counts, failed ones too
    evaluate(hrt)
    assert not firing(hrt, "planner:no-executions")
    assert status_of(hrt, alert["fingerprint"]) == RESOLVED


def _burn(rt: Runtime, plan_id: str, count: int, *, ago: timedelta, slow: bool) -> None:
    latency = 300_000.0 if slow else 1_000.0  # threshold 2m
    add_executions(rt, plan_id, count, latency_ms=latency, finished_at=rt.clock.now() - ago)


def test_latency_burn_rates_fire_fast_then_slow_then_resolve(hrt: Runtime, clock: FrozenClock) -> None:
    plan = new_plan(hrt)
    _burn(hrt, plan["id"], 19, ago=timedelta(minutes=2), slow=False)
    _burn(hrt, plan["id"], 1, ago=timedelta(minutes=2), slow=True)
    evaluate(hrt)
    assert not firing(hrt, "planner:latency-slo"), "5% slow is exactly the budget: burn rate 1"

    _burn(hrt, plan["id"], 80, ago=timedelta(minutes=1), slow=True)  # 81% slow: burn rate 16.2
    evaluate(hrt)
    alert = only(hrt, "planner:latency-slo")
    assert "fast burn" in alert["description"]

    clock.advance(timedelta(minutes=10))  # the 5m window is empty: no fast burn, but 6h/30m still burn
    evaluate(hrt)
    assert "slow burn" in only(hrt, "planner:latency-slo")["description"]

    clock.advance(timedelta(minutes=25))  # the 30m window is empty too
    evaluate(hrt)
    assert not firing(hrt, "planner:latency-slo")
    assert status_of(hrt, alert["fingerprint"]) == RESOLVED


def test_latency_needs_both_windows_of_a_pair(hrt: Runtime) -> None:
    plan = new_plan(hrt)
    _burn(hrt, plan["id"], 10, ago=timedelta(minutes=40), slow=True)  # long windows burn...
    _burn(hrt, plan["id"], 30, ago=timedelta(minutes=1), slow=False)  # ...the short ones do not
    evaluate(hrt)
    assert not firing(hrt, "planner:latency-slo")


# --- templates ----------------------------------------------------------------------------------------


def test_template_missing_fires_critical_then_resolves(rt: Runtime) -> None:
    evaluate(rt)  # nothing seeded: every step's template is missing
    missing = firing(rt, "planner:template-missing")
    assert len(missing) == 6
    assert {a["severity"] for a in missing} == {"critical"}
    assert {a["labels"]["step_id"] for a in missing} >= {"vision-plan", "scene-draft"}
    assert all(a["labels"]["template_id"].startswith("planner.fiction.") for a in missing)

    seed_templates_now(rt)
    evaluate(rt)
    assert not firing(rt, "planner:template-missing")


def test_template_inactive_or_empty_fires_warning_then_resolves(hrt: Runtime) -> None:
    with hrt.db.begin() as conn:
        conn.execute(
            update(planner_templates)
            .where(planner_templates.c.template_id == "planner.fiction.vision")
            .values(active=False)
        )
        conn.execute(
            update(planner_templates)
            .where(planner_templates.c.template_id == "planner.fiction.sceneWeaver")
            .values(body="   ")
        )
    evaluate(hrt)
    inactive = {a["labels"]["template_id"]: a for a in firing(hrt, "planner:template-inactive")}
    assert set(inactive) == {"planner.fiction.vision", "planner.fiction.sceneWeaver"}
    assert "no active version" in inactive["planner.fiction.vision"]["description"]
    assert "is empty" in inactive["planner.fiction.sceneWeaver"]["description"]
    assert not firing(hrt, "planner:template-missing")

    with hrt.db.begin() as conn:
        conn.execute(update(planner_templates).values(active=True, body="Write {{ premise }}"))
    evaluate(hrt)
    assert not firing(hrt, "planner:template-inactive")


# --- world bible --------------------------------------------------------------------------------------


def test_world_bible_missing_fires_past_the_phase_then_resolves(hrt: Runtime) -> None:
    plan = new_plan(hrt)
    evaluate(hrt)
    assert not firing(hrt, "worldbible:missing"), "before the world-bible phase nothing is missing"

    set_item(hrt, plan["id"], "world-bible", status="complete")
    add_world_bible_entry(hrt, plan["id"], active=False)  # only an inactive (superseded) version
    evaluate(hrt)
    alert = only(hrt, "worldbible:missing")
    assert alert["labels"]["plan_id"] == plan["id"]

    add_world_bible_entry(hrt, plan["id"], "Bram")
    evaluate(hrt)
    assert not firing(hrt, "worldbible:missing")
    assert status_of(hrt, alert["fingerprint"]) == RESOLVED


def test_world_bible_stale_fires_for_running_plans_then_resolves(hrt: Runtime, clock: FrozenClock) -> None:
    plan = new_plan(hrt)
    add_world_bible_entry(hrt, plan["id"])
    clock.advance(timedelta(hours=5, minutes=59))
    evaluate(hrt)
    assert not firing(hrt, "worldbible:stale")

    clock.advance(timedelta(minutes=2))
    evaluate(hrt)
    alert = only(hrt, "worldbible:stale")
    assert "6h" in alert["description"]

    add_world_bible_entry(hrt, plan["id"], "Ada")  # a new version: updated just now
    evaluate(hrt)
    assert not firing(hrt, "worldbible:stale")
    assert status_of(hrt, alert["fingerprint"]) == RESOLVED


# --- other services' reconcilers, scope, lease -------------------------------------------------------


def test_obligation_aging_is_reconciled_by_the_evaluation(hrt: Runtime, clock: FrozenClock) -> None:
    from tests.support.plan_seed import seed_world

    world = seed_world(hrt, obligations=1)
    evaluate(hrt)
    assert not firing(hrt, "obligation:aging")
    clock.advance(timedelta(hours=12, minutes=1))
    result = evaluate(hrt)
    alert = only(hrt, "obligation:aging")
    assert result.extra_changes >= 1
    with hrt.db.begin() as conn:
        conn.execute(
            update(persona_obligations)
            .where(persona_obligations.c.obligation_id == world.obligations[0])
            .values(status="resolved")
        )
    evaluate(hrt)
    assert status_of(hrt, alert["fingerprint"]) == RESOLVED


def test_critique_exhausted_resolves_once_the_budget_is_raised(hrt: Runtime, clock: FrozenClock) -> None:
    hrt.config = make_config(pipeline={"critique": {"max_total": 0}})
    plan = new_plan(hrt)
    add_execution(hrt, plan["id"], critique_status="count-exhausted", outcome="partial")
    labels = {"plan_id": plan["id"], "backlog_id": "vision-plan", "budget": "count"}
    fp = raise_alert(hrt, "planner:critique-exhausted", labels)
    clock.advance(timedelta(seconds=1))
    add_execution(hrt, plan["id"], critique_status="count-exhausted")  # still out of budget
    evaluate(hrt)
    assert status_of(hrt, fp) == FIRING

    hrt.config = make_config(pipeline={"critique": {"max_total": 50}})  # the operator raised the budget
    clock.advance(timedelta(seconds=1))
    add_execution(hrt, plan["id"], critique_status="used")
    evaluate(hrt)
    assert status_of(hrt, fp) == RESOLVED


def test_fallback_critique_reconciler_resolves_after_a_later_execution_within_budget(
    hrt: Runtime, clock: FrozenClock
) -> None:
    plan = new_plan(hrt)
    labels = {"plan_id": plan["id"], "backlog_id": "vision-plan", "budget": "count"}
    fp = raise_alert(hrt, "planner:critique-exhausted", labels)
    clock.advance(timedelta(seconds=1))
    add_execution(hrt, plan["id"], critique_status="token-exhausted")
    with hrt.db.begin() as conn:
        assert ev.reconcile_critique_exhausted(conn, hrt, clock.now()) == 0
    add_execution(hrt, plan["id"], critique_status="used")
    with hrt.db.begin() as conn:
        assert ev.reconcile_critique_exhausted(conn, hrt, clock.now()) == 1
    assert status_of(hrt, fp) == RESOLVED


def test_extra_evaluators_run_and_one_failing_does_not_stop_the_pass(hrt: Runtime) -> None:
    calls: list[str] = []

    def good(conn, rt, now):  # type: ignore[no-untyped-def]
        calls.append("good")
        return 2

    def broken(conn, rt, now):  # type: ignore[no-untyped-def]
        raise RuntimeError("boom")

    ev.EXTRA_EVALUATORS.extend([broken, good])
    try:
        new_plan(hrt)
        result = evaluate(hrt)
    finally:
        ev.EXTRA_EVALUATORS.remove(broken)
        ev.EXTRA_EVALUATORS.remove(good)
    assert calls == ["good"]
    assert result.extra_changes >= 2
    assert result.errors == ("RuntimeError: boom",)
    assert firing(hrt, "planner:no-executions"), "the rules' own work still committed"


def test_alerts_from_other_sources_are_left_alone(hrt: Runtime) -> None:
    fp = raise_alert(hrt, "backlog:stale", {"plan_id": "p-x", "backlog_id": "b"}, source="ingest")
    evaluate(hrt)
    assert status_of(hrt, fp) == FIRING


def test_each_pass_stamps_the_worker_that_ran_it(hrt: Runtime, clock: FrozenClock) -> None:
    new_plan(hrt)
    evaluate(hrt, worker="worker-a")
    clock.advance(timedelta(seconds=5))
    evaluate(hrt, worker="worker-b")  # another worker's tick: it runs too, nothing holds it off
    with hrt.db.read() as conn:
        assert ev.last_evaluation(conn) == ("worker-b", clock.now() + ev.lease_ttl_for(hrt.config))


def test_the_engine_runs_the_evaluation_as_a_dbos_scheduled_workflow(db: Database) -> None:
    with running(db, make_config(health={"evaluate_every": "1s"})) as rt:
        wait_for(lambda: DBOS.get_schedule(SCHEDULE_NAME) is not None, timeout=20, message="the schedule")
        assert DBOS.get_schedule(SCHEDULE_NAME)["schedule"] == "*/1 * * * * *"
        wait_for(lambda: _last_worker(rt) == rt.worker_id, timeout=20, message="a scheduled pass")
        wait_for(lambda: _finished_runs(), timeout=20, message="a scheduled workflow finished")
        assert all(run.workflow_id.startswith(f"sched-{SCHEDULE_NAME}-") for run in _finished_runs())

        rt.config = make_config(health={"evaluate_every": "2s"})  # what a reload does
        wait_for(
            lambda: DBOS.get_schedule(SCHEDULE_NAME)["schedule"] == "*/2 * * * * *",
            timeout=20,
            message="the schedule follows the reloaded interval",
        )


def _finished_runs() -> list[Any]:
    return DBOS.list_workflows(name="storyloom.health.scheduled", status="SUCCESS")


def _last_worker(rt: Runtime) -> str | None:
    with rt.db.read() as conn:
        last = ev.last_evaluation(conn)
    return last[0] if last else None


# --- poison-proof: a rule or an alert the pass cannot process is set aside; the pass goes on ------------


def _block_on_lore(rt: Runtime, plan_id: str) -> None:
    with rt.db.begin() as conn:
        conn.execute(
            insert(lore_requirements).values(
                plan_id=plan_id,
                slug="harbor-law",
                title="Harbor law",
                description="",
                status="planned",
                created_at=rt.clock.now(),
                updated_at=rt.clock.now(),
            )
        )
    set_item(rt, plan_id, "vision-plan", status="blocked", last_error="lore gate: not ready: harbor-law")


def _health_set_aside(rt: Runtime) -> dict[str, str]:
    with TestClient(create_app(rt)) as client:
        listed = client.get(
            "/api/set-aside", params={"pass": "health"}, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ).json()
        metrics = client.get("/metrics").text
    counted = [
        s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
        if s.name == "storyloom_set_aside_rows" and s.labels["pass"] == "health"
    ]
    assert counted == ([len(listed)] if listed else []), "the metric counts what the API lists"
    return {r["item"]: r["error"] for r in listed}


def test_a_rule_that_cannot_run_is_set_aside_keeps_its_alerts_and_the_others_still_fire(
    hrt: Runtime, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORYLOOM_ADMIN_TOKEN", ADMIN_TOKEN)
    blocked = new_plan(hrt, "Blocked")
    _block_on_lore(hrt, blocked["id"])
    evaluate(hrt)
    lore = only(hrt, "lore:blocked")

    with hrt.db.begin() as conn:  # the lore rule's table is gone: its query raises
        conn.execute(text("ALTER TABLE lore_requirements RENAME TO lore_requirements_away"))
    stale = new_plan(hrt, "Stale")
    set_item(hrt, stale["id"], "vision-plan", status="in_progress", updated_at=clock.now())
    clock.advance(timedelta(hours=3))
    result = evaluate(hrt)

    assert any("rule_lore_blocked" in e for e in result.errors)
    assert status_of(hrt, lore["fingerprint"]) == FIRING, "a rule that cannot run resolves nothing"
    assert only(hrt, "backlog:stale")["labels"]["plan_id"] == stale["id"], "the other rules still fire"
    aside = _health_set_aside(hrt)
    assert set(aside) == {"rule:rule_lore_blocked"} and "lore_requirements" in aside["rule:rule_lore_blocked"]

    with hrt.db.begin() as conn:
        conn.execute(text("ALTER TABLE lore_requirements_away RENAME TO lore_requirements"))
    set_item(hrt, blocked["id"], "vision-plan", status="pending", last_error=None)
    result = evaluate(hrt)
    assert result.errors == ()
    assert status_of(hrt, lore["fingerprint"]) == RESOLVED, "once it runs again, it decides again"
    assert _health_set_aside(hrt) == {}, "a rule that works again is no longer set aside"


def test_an_alert_the_pass_cannot_fire_is_set_aside_and_the_others_still_fire(
    hrt: Runtime, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STORYLOOM_ADMIN_TOKEN", ADMIN_TOKEN)
    reject_writes(
        hrt.db,
        "reject_lore_alerts",
        table="alerts",
        event="INSERT",
        when="NEW.alert_id = 'lore:blocked'",
        message="injected: this alert cannot be stored",
    )
    blocked = new_plan(hrt, "Blocked")
    _block_on_lore(hrt, blocked["id"])
    stale = new_plan(hrt, "Stale")
    set_item(hrt, stale["id"], "vision-plan", status="in_progress", updated_at=clock.now())
    clock.advance(timedelta(hours=3))

    evaluate(hrt)
    evaluate(hrt)  # the set-aside alert is not retried (one row, one log line)

    assert not firing(hrt, "lore:blocked")
    assert only(hrt, "backlog:stale")["labels"]["plan_id"] == stale["id"]
    aside = _health_set_aside(hrt)
    assert len(aside) == 1 and "injected: this alert cannot be stored" in next(iter(aside.values()))
