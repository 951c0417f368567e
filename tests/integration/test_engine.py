"""The engine in-process on a real database: a plan runs end to end, faults fail items, resume recovers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from storyloom.clock import FrozenClock, SystemClock
from storyloom.config import Config
from storyloom.engine.engine import Engine
from storyloom.runtime import Runtime
from storyloom.server import prepare
from storyloom.services.catalog import create_agent, create_persona
from storyloom.services.plans import PlanRequest, create_plan, list_backlog
from storyloom.store.db import Database
from storyloom.store.tables import alerts, planner_executions, tasks, workflow_events
from tests.conftest import make_config
from tests.support.engine import ShiftedClock, item_statuses, running, seed_plan
from tests.support.server import wait_for


@pytest.fixture
def small_config() -> Config:
    return make_config(pipeline={"chapters": 2, "scenes_per_chapter": 2, "retry_backoff": "10ms"})


def test_plan_runs_every_phase_to_complete(db: Database, small_config: Config) -> None:
    with running(db, small_config) as rt:
        plan_id = seed_plan(rt)
        expected = [
            "vision-plan",
            "world-bible",
            "iteration-plan",
            "chapter-1",
            "chapter-2",
            "scroll-1",
            "scroll-2",
            "scene-1-1",
            "scene-1-2",
            "scene-2-1",
            "scene-2-2",
        ]
        statuses = wait_for(
            lambda: (
                (s := item_statuses(rt, plan_id))
                and len(s) == len(expected)
                and set(s.values()) == {"complete"}
                and s
            ),
            timeout=60,
            message="every item complete",
        )
        assert sorted(statuses) == sorted(expected)
        with rt.db.read() as conn:
            executions = conn.execute(select(func.count()).select_from(planner_executions)).scalar()
            telemetry = conn.execute(
                select(func.count())
                .select_from(workflow_events)
                .where(workflow_events.c.kind == "fiction.backlog.telemetry")
            ).scalar()
        assert executions == len(statuses)
        # pending (seed or added) → in_progress → complete for every item
        assert telemetry == 3 * len(statuses)


def test_failing_phase_records_every_attempt_and_fires_phase_failed(db: Database) -> None:
    config = make_config(
        pipeline={"chapters": 1, "retry_backoff": "10ms"},
        llm={"faults": [{"phase": "scroll_refiner", "mode": "fail", "times": 3}]},
    )
    with running(db, config) as rt:
        plan_id = seed_plan(rt)
        wait_for(
            lambda: item_statuses(rt, plan_id).get("scroll-1") == "failed",
            timeout=60,
            message="scroll-1 failed",
        )
        with rt.db.read() as conn:
            outcomes = (
                conn.execute(
                    select(planner_executions.c.outcome).where(planner_executions.c.backlog_id == "scroll-1")
                )
                .scalars()
                .all()
            )
            alert = (
                conn.execute(select(alerts).where(alerts.c.alert_id == "planner:phase-failed"))
                .mappings()
                .one()
            )
        assert outcomes == ["failed", "failed", "failed"]
        assert alert["status"] == "firing"
        assert alert["severity"] == "error"
        labels = alert["labels"]
        assert labels["backlog_id"] == "scroll-1" and labels["phase"] == "scroll_refiner"
        assert {"plan_id", "task_id", "agent_id", "persona_id", "provider", "model"} <= set(labels)


def test_malformed_output_is_retried_with_validation_errors_recorded(db: Database) -> None:
    config = make_config(
        pipeline={"chapters": 1, "retry_backoff": "10ms"},
        llm={"faults": [{"phase": "vision", "mode": "malformed", "times": 1}]},
    )
    with running(db, config) as rt:
        plan_id = seed_plan(rt)
        wait_for(
            lambda: item_statuses(rt, plan_id).get("vision-plan") == "complete",
            timeout=60,
            message="vision done",
        )
        with rt.db.read() as conn:
            rows = conn.execute(
                select(planner_executions.c.outcome, planner_executions.c.diagnostics)
                .where(planner_executions.c.backlog_id == "vision-plan")
                .order_by(planner_executions.c.id)
            ).all()
            task_count = conn.execute(
                select(func.count()).select_from(tasks).where(tasks.c.backlog_id == "vision-plan")
            ).scalar()
        assert [r.outcome for r in rows] == ["failed", "success"]
        assert rows[0].diagnostics["validation_errors"]
        assert task_count == 1  # the retry is an attempt of the same task


def test_unready_lore_blocks_scrolls_until_the_lore_sla_fulfils_it(db: Database) -> None:
    config = make_config(
        pipeline={"chapters": 1, "scenes_per_chapter": 1, "lore_sla": "45m"},
        llm={"offline_lore_status": "planned"},
    )
    clock = ShiftedClock()
    with running(db, config, clock) as rt:
        plan_id = seed_plan(rt)
        wait_for(
            lambda: item_statuses(rt, plan_id).get("scroll-1") == "blocked",
            timeout=60,
            message="scroll blocked",
        )
        with rt.db.read() as conn:
            blocked = conn.execute(
                select(alerts.c.status, alerts.c.labels).where(alerts.c.alert_id == "planner:phase-blocked")
            ).one()
        assert blocked.status == "firing" and blocked.labels["backlog_id"] == "scroll-1"
        assert item_statuses(rt, plan_id)["scroll-1"] == "blocked", "the lore SLA has not passed yet"
        clock.advance(timedelta(minutes=46))
        wait_for(
            lambda: set(item_statuses(rt, plan_id).values()) == {"complete"},
            timeout=60,
            message="plan completes once the lore SLA fulfils the lore",
        )
        with rt.db.read() as conn:
            status = conn.execute(
                select(alerts.c.status).where(alerts.c.alert_id == "planner:phase-blocked")
            ).scalar()
        assert status == "resolved"


def test_a_plan_runs_through_the_openai_provider_and_survives_a_malformed_reply(db: Database) -> None:
    from tests.support.fake_openai import FakeOpenAIServer, FakeReply

    with FakeOpenAIServer() as fake:
        fake.enqueue(
            FakeReply(content='{"author_summary": "cut off')
        )  # the first (vision) reply is malformed
        config = make_config(
            llm={"provider": "openai", "base_url": fake.base_url, "model": "fake-4o", "max_retries": 0},
            pipeline={"chapters": 1, "scenes_per_chapter": 1, "retry_backoff": "10ms"},
        )
        with running(db, config) as rt:
            now = rt.clock.now()
            with rt.db.begin() as conn:
                persona = create_persona(conn, name="Ola", kind="author", summary=None, now=now)
                agent = create_agent(
                    conn,
                    name="Ola agent",
                    persona_id=persona["id"],
                    provider="openai",
                    model="fake-4o",
                    now=now,
                )
                plan_id = create_plan(
                    conn,
                    PlanRequest(
                        name="Glass Harbour",
                        premise="A harbour made of glass.",
                        persona_id=persona["id"],
                        agent_id=agent["id"],
                    ),
                    default_provider="openai",
                    default_model="fake-4o",
                    max_premise_chars=20_000,
                    now=now,
                )["id"]
            wait_for(
                lambda: (s := item_statuses(rt, plan_id)) and len(s) == 6 and set(s.values()) == {"complete"},
                timeout=60,
                message="plan complete over the openai provider",
            )
            with rt.db.read() as conn:
                vision = conn.execute(
                    select(planner_executions.c.outcome, planner_executions.c.prompt_tokens)
                    .where(planner_executions.c.backlog_id == "vision-plan")
                    .order_by(planner_executions.c.id)
                ).all()
        assert [v.outcome for v in vision] == ["failed", "success"]
        assert vision[1].prompt_tokens > 0
        assert fake.completions() and all(r.body["model"] == "fake-4o" for r in fake.completions())


def test_a_ready_item_behind_a_full_page_of_waiting_items_is_still_claimed(
    db: Database, clock: FrozenClock
) -> None:
    from storyloom.engine import scheduler as scheduler_module
    from storyloom.engine.scheduler import Scheduler

    rt = Runtime(config=make_config(), db=db, clock=clock)
    plan_ids = [seed_plan(rt) for _ in range(3)]  # each seeds 1 ready + 2 waiting items
    enqueued: list[str] = []
    scheduler = Scheduler(rt, lambda task_id, _provider, _first: enqueued.append(task_id))
    original = scheduler_module.BATCH
    scheduler_module.BATCH = 2  # a page holds only waiting items after the first plan's
    try:
        claimed = sum(scheduler.claim_ready(clock.now()) for _ in range(6))
    finally:
        scheduler_module.BATCH = original
    assert claimed == 3
    with db.read() as conn:
        queued = {i["plan_id"] for p in plan_ids for i in list_backlog(conn, p) if i["task_id"]}
    assert queued == set(plan_ids)


def test_a_resumed_task_is_enqueued_ahead_of_the_others(db: Database) -> None:
    """DBOS dequeues by ascending priority: a resume's task is enqueued with FIRST, the rest with NORMAL."""
    from dbos import DBOS

    from storyloom.engine.engine import FIRST, NORMAL

    rt = Runtime(config=make_config(), db=db, clock=SystemClock())
    prepare(rt)
    engine = Engine(rt)
    engine.start()
    try:
        engine.enqueue("task_unknown_scheduled", "offline")
        engine.enqueue("task_unknown_resumed", "offline", first=True)
        statuses = {
            w.workflow_id: w.priority
            for w in DBOS.list_workflows(workflow_ids=["task_unknown_scheduled", "task_unknown_resumed"])
        }
    finally:
        engine.stop()
    assert statuses == {"task_unknown_scheduled": NORMAL, "task_unknown_resumed": FIRST}
