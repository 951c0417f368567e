"""The resume contract (CONTRACTS §4.2) over HTTP, one case per rule, plus race, drift and flapping."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from storyloom.api.app import create_app
from storyloom.backlog.contract_drift import reconcile_contract_drift
from storyloom.clock import FrozenClock
from storyloom.engine.scheduler import Scheduler
from storyloom.runtime import Runtime
from storyloom.store.events import BACKLOG_ACTION, BACKLOG_TELEMETRY
from storyloom.store.tables import backlog_items, checkpoints, tasks, workflow_events
from tests.conftest import make_config
from tests.support.health_seed import item as item_row
from tests.support.plan_seed import (
    PROBLEM,
    World,
    contract_events,
    firing,
    heartbeat,
    seed_world,
    set_item,
    snapshot,
    token,
)

H = timedelta(hours=1)


@pytest.fixture
def world(rt: Runtime) -> World:
    return seed_world(rt)


def resume_path(plan_id: str, backlog_id: str) -> str:
    return f"/api/fiction/plans/{plan_id}/backlog/{backlog_id}/resume"


def good_body(world: World, **change: Any) -> dict[str, Any]:
    body = {"agent_id": world.author_agent, "provider": "offline", "model": "m-resume", **change}
    return {k: v for k, v in body.items() if v is not None}


@dataclass
class Case:
    """One rejected resume: how to set it up, what to send, what must come back."""

    name: str
    status: int
    code: str | None  # problem+json `code` and contract event code; None → no contract event
    loc: list[str] | None = None
    setup: Callable[[Runtime, World], None] = lambda rt, w: set_item(rt, w.plan_id, "vision-plan", "failed")
    body: Callable[[World], dict[str, Any]] = good_body
    plan: Callable[[World], str] = lambda w: w.plan_id
    item: str = "vision-plan"
    role: str = "operator"
    bound_to: Callable[[World], list[str]] = field(default=lambda w: [])


def _live_in_progress(rt: Runtime, w: World) -> None:
    heartbeat(rt, "w-live", ttl=timedelta(seconds=30))
    set_item(rt, w.plan_id, "vision-plan", "in_progress", worker_id="w-live", task_status="running")


CASES = [
    # rule 1
    Case("unknown plan", 404, None, plan=lambda w: "plan_missing"),
    Case("unknown item", 404, None, item="nope"),
    Case("unknown plan wins over a bad body", 404, None, plan=lambda w: "plan_missing", body=lambda w: {}),
    # rule 2
    Case(
        "missing agent_id",
        422,
        "missing-agent-or-provider",
        ["body", "agent_id"],
        body=lambda w: good_body(w, agent_id=None),
    ),
    Case(
        "missing provider",
        422,
        "missing-agent-or-provider",
        ["body", "provider"],
        body=lambda w: good_body(w, provider=None),
    ),
    Case(
        "blank provider",
        422,
        "missing-agent-or-provider",
        ["body", "provider"],
        body=lambda w: good_body(w, provider="  "),
    ),
    Case("missing model", 422, "missing-model", ["body", "model"], body=lambda w: good_body(w, model=None)),
    Case(
        "missing model on a complete item (rule 2 before 4)",
        422,
        "missing-model",
        ["body", "model"],
        setup=lambda rt, w: set_item(rt, w.plan_id, "vision-plan", "complete"),
        body=lambda w: good_body(w, model=None),
    ),
    # rule 3
    Case(
        "unknown agent",
        422,
        "unknown-agent",
        ["body", "agent_id"],
        body=lambda w: good_body(w, agent_id="agent_missing"),
    ),
    Case(
        "unknown provider",
        422,
        "unknown-provider",
        ["body", "provider"],
        body=lambda w: good_body(w, provider="gemini"),
    ),
    # rule 4
    Case(
        "complete item",
        409,
        "item-complete",
        setup=lambda rt, w: set_item(rt, w.plan_id, "vision-plan", "complete"),
    ),
    Case("in progress on a live worker", 409, "item-in-progress", setup=_live_in_progress),
    Case(
        "complete item with another persona's agent (rule 4 before 5)",
        409,
        "item-complete",
        setup=lambda rt, w: set_item(rt, w.plan_id, "vision-plan", "complete"),
        body=lambda w: good_body(w, agent_id=w.other_agent),
    ),
    Case(
        "pending item already queued",
        409,
        "item-queued",
        setup=lambda rt, w: set_item(rt, w.plan_id, "vision-plan", "pending", task_status="queued"),
    ),
    # rule 5
    Case(
        "agent of another persona",
        403,
        "agent-persona-mismatch",
        body=lambda w: good_body(w, agent_id=w.other_agent),
    ),
    Case(
        "agent of the plan's character persona",
        403,
        "agent-persona-mismatch",
        body=lambda w: good_body(w, agent_id=w.character_agent),
    ),
    Case(
        "another persona's agent with a wrong task (rule 5 before 6)",
        403,
        "agent-persona-mismatch",
        body=lambda w: good_body(w, agent_id=w.other_agent, task_id="task_other"),
    ),
    Case(
        "token bound to another agent",
        403,
        "agent-token-mismatch",
        bound_to=lambda w: [w.other_agent],
    ),
    # rule 6
    Case(
        "task is not the item's latest",
        409,
        "task-backlog-mismatch",
        setup=lambda rt, w: set_item(rt, w.plan_id, "vision-plan", "failed", task_status="failed"),
        body=lambda w: good_body(w, task_id="task_old"),
    ),
    Case(
        "task given for an item that never ran",
        409,
        "task-backlog-mismatch",
        body=lambda w: good_body(w, task_id="task_x"),
    ),
    Case("other branch", 409, "branch-mismatch", body=lambda w: good_body(w, branch_slug="draft")),
    # bad bodies: 422 naming the field, after the 404 of rule 1 and before rule 2
    Case("wrong type", 422, "invalid-body", ["body", "agent_id"], body=lambda w: good_body(w, agent_id=5)),
    Case(
        "unknown field", 422, "invalid-body", ["body", "surprise"], body=lambda w: good_body(w, surprise=True)
    ),
    Case("not an object", 422, "invalid-body", ["body"], body=lambda w: ["agent"]),
    Case(
        "unknown plan wins over a wrong type", 404, None, plan=lambda w: "plan_x", body=lambda w: {"model": 5}
    ),
    # with rule 4: an item whose inputs are not complete cannot run next
    Case(
        "inputs not complete",
        409,
        "inputs-incomplete",
        setup=lambda rt, w: set_item(rt, w.plan_id, "world-bible", "failed"),
        item="world-bible",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_rejected_resume(case: Case, rt: Runtime, client: TestClient, world: World) -> None:
    case.setup(rt, world)
    headers = token(rt, case.role, case.bound_to(world))
    with rt.db.read() as conn:
        before = snapshot(conn)
    response = client.post(resume_path(case.plan(world), case.item), json=case.body(world), headers=headers)

    assert response.status_code == case.status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    problem = response.json()
    assert problem["status"] == case.status and problem["title"] and problem["detail"] and problem["type"]
    if case.loc:
        assert case.loc in [e["loc"] for e in problem["errors"]], problem
    if case.code:
        assert problem["code"] == case.code
    with rt.db.read() as conn:
        assert snapshot(conn) == before, "a rejected resume changed state"
        events = contract_events(conn)
        drift = firing(conn, "backlog:contract-drift")
    if case.code is None:
        assert events == [] and drift == []
        return
    [event] = events
    body = case.body(world)
    assert event["code"] == case.code
    assert event["plan_id"] == world.plan_id and event["backlog_id"] == case.item
    given = body if isinstance(body, dict) else {}
    for key in ("agent_id", "provider", "model", "task_id"):
        value = given.get(key)
        assert event[key] == (value.strip() or None if isinstance(value, str) else None), key
    assert (
        event["actor"] == "operator-user"
        and event["actor_id"].startswith("tok_")
        and event["source"] == "api"
    )
    [alert] = drift
    assert alert["labels"]["plan_id"] == world.plan_id and alert["labels"]["code"] == case.code
    assert alert["severity"] == "warning"


def test_malformed_json_is_422_and_a_contract_event(rt: Runtime, client: TestClient, world: World) -> None:
    headers = token(rt, "operator")
    response = client.post(
        resume_path(world.plan_id, "vision-plan"),
        content=b"not json",
        headers={**headers, "content-type": "application/json"},
    )
    assert response.status_code == 422 and response.json()["errors"][0]["loc"] == ["body"]
    with rt.db.read() as conn:
        assert [e["code"] for e in contract_events(conn)] == ["invalid-body"]


def _queued_task_of_another_plan(rt: Runtime, minutes_ago: int) -> str:
    other = seed_world(rt)
    task_id = set_item(rt, other.plan_id, "vision-plan", "pending", task_status="queued")
    assert task_id is not None
    with rt.db.begin() as conn:
        conn.execute(
            update(tasks)
            .where(tasks.c.task_id == task_id)
            .values(created_at=rt.clock.now() - timedelta(minutes=minutes_ago))
        )
    return task_id


@pytest.mark.parametrize("status", ["failed", "blocked", "cancelled"])
def test_resume_succeeds_runs_this_item_next_and_reopens_its_checkpoint(
    status: str, rt: Runtime, client: TestClient, world: World
) -> None:
    old_task = set_item(
        rt,
        world.plan_id,
        "world-bible",
        status,
        task_status="failed",
        checkpoint="cancelled",
        last_error="boom",
        attempts=3,
    )
    set_item(rt, world.plan_id, "vision-plan", "complete")  # world-bible is ready; iteration-plan waits on it
    older_task = _queued_task_of_another_plan(rt, minutes_ago=30)
    headers = token(rt, "operator", name="ops-jane")
    response = client.post(
        resume_path(world.plan_id, "world-bible"),
        json=good_body(world, task_id=old_task, notes="retry with a bigger model"),
        headers={**headers, "X-Console-Client": "storyloom-console"},
    )
    assert response.status_code == 202, response.text
    result = response.json()
    item = result["backlog_item"]
    assert set(result) == {"backlog_item", "task_id"} and result["task_id"] != old_task
    assert item["status"] == "pending" and item["task_id"] == result["task_id"]
    assert (item["agent_id"], item["persona_id"], item["provider"], item["model"]) == (
        world.author_agent,
        world.author_persona,
        "offline",
        "m-resume",
    )
    assert item["in_progress_at"] is None and item["completed_at"] is None and item["last_error"] is None

    row = item_row(rt, world.plan_id, "world-bible")
    with rt.db.read() as conn:
        top = max(r.priority for r in conn.execute(select(backlog_items.c.priority)))
        task = conn.execute(select(tasks).where(tasks.c.task_id == result["task_id"])).mappings().one()
        checkpoint = (
            conn.execute(select(checkpoints).where(checkpoints.c.plan_id == world.plan_id)).mappings().one()
        )
        telemetry = (
            conn.execute(
                select(workflow_events.c.payload)
                .where(
                    workflow_events.c.kind == BACKLOG_TELEMETRY, workflow_events.c.backlog_id == "world-bible"
                )
                .order_by(workflow_events.c.id.desc())
            )
            .scalars()
            .first()
        )
        assert contract_events(conn) == []
    assert row["priority"] == top and row["priority"] > 0
    assert (task["status"], task["reason"], task["agent_id"], task["model"], task["notes"]) == (
        "queued",
        "resume",
        world.author_agent,
        "m-resume",
        "retry with a bigger model",
    )
    assert checkpoint["status"] == "open" and checkpoint["task_id"] == result["task_id"]
    assert telemetry["reason"] == "resume" and telemetry["previous_status"] == status
    assert telemetry["task_id"] == result["task_id"]

    action = client.get(f"/api/fiction/plans/{world.plan_id}/backlog/actions", headers=headers).json()[0]
    assert {
        k: action[k]
        for k in (
            "action",
            "backlog_id",
            "actor",
            "source",
            "agent_id",
            "persona_id",
            "provider",
            "model",
            "task_id",
            "status",
            "notes",
        )
    } == {
        "action": "resume",
        "backlog_id": "world-bible",
        "actor": "ops-jane",
        "source": "console",
        "agent_id": world.author_agent,
        "persona_id": world.author_persona,
        "provider": "offline",
        "model": "m-resume",
        "task_id": result["task_id"],
        "status": "pending",
        "notes": "retry with a bigger model",
    }
    assert action["actor_id"].startswith("tok_") and action["time"]

    # the scheduler hands over the resumed item's task first, flagged to run first in the engine's queue,
    # although another item's task has been queued for longer: the resume runs this item, not the oldest
    enqueued: list[tuple[str, bool]] = []
    Scheduler(rt, lambda task_id, _provider, first: enqueued.append((task_id, first))).hand_over(
        rt.clock.now()
    )
    assert enqueued == [(result["task_id"], True), (older_task, False)]


def test_stale_in_progress_resumes_and_abandons_its_task(
    rt: Runtime, client: TestClient, world: World
) -> None:
    heartbeat(rt, "w-dead", ttl=timedelta(seconds=30))
    old = set_item(rt, world.plan_id, "vision-plan", "in_progress", worker_id="w-dead", task_status="running")
    rt.clock.advance(timedelta(minutes=5))  # the worker's lease expired: it is gone
    response = client.post(
        resume_path(world.plan_id, "vision-plan"), json=good_body(world), headers=token(rt, "operator")
    )
    assert response.status_code == 202, response.text
    with rt.db.read() as conn:
        assert conn.execute(select(tasks.c.status).where(tasks.c.task_id == old)).scalar() == "abandoned"
    assert item_row(rt, world.plan_id, "vision-plan")["worker_id"] is None


def test_in_progress_without_any_heartbeat_is_stale(rt: Runtime, client: TestClient, world: World) -> None:
    set_item(rt, world.plan_id, "vision-plan", "in_progress", worker_id="w-never", task_status="running")
    response = client.post(
        resume_path(world.plan_id, "vision-plan"), json=good_body(world), headers=token(rt, "operator")
    )
    assert response.status_code == 202, response.text


def test_admin_may_resume_across_personas(rt: Runtime, client: TestClient, world: World) -> None:
    set_item(rt, world.plan_id, "vision-plan", "failed")
    response = client.post(
        resume_path(world.plan_id, "vision-plan"),
        json=good_body(world, agent_id=world.other_agent),
        headers=token(rt, "admin"),
    )
    assert response.status_code == 202, response.text
    item = response.json()["backlog_item"]
    assert item["agent_id"] == world.other_agent and item["persona_id"] == world.other_persona


def test_bound_token_may_resume_as_its_own_agent(rt: Runtime, client: TestClient, world: World) -> None:
    set_item(rt, world.plan_id, "vision-plan", "failed")
    response = client.post(
        resume_path(world.plan_id, "vision-plan"),
        json=good_body(world),
        headers=token(rt, "operator", [world.author_agent]),
    )
    assert response.status_code == 202, response.text


def test_double_resume_exactly_one_wins(rt: Runtime, world: World) -> None:
    app = create_app(rt)
    headers = token(rt, "operator")
    items = ["vision-plan", "world-bible", "iteration-plan"]
    for backlog_id in items:
        set_item(rt, world.plan_id, backlog_id, "failed", task_status="failed")
    for backlog_id in items:
        barrier = threading.Barrier(2)
        codes: list[int] = []

        def hit(
            backlog_id: str = backlog_id, barrier: threading.Barrier = barrier, codes: list[int] = codes
        ) -> None:
            with TestClient(app) as c:
                barrier.wait()
                codes.append(
                    c.post(
                        resume_path(world.plan_id, backlog_id), json=good_body(world), headers=headers
                    ).status_code
                )

        threads = [threading.Thread(target=hit) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(codes) == [202, 409], (backlog_id, codes)
        with rt.db.read() as conn:
            queued = (
                conn.execute(
                    select(tasks.c.task_id).where(
                        tasks.c.backlog_id == backlog_id, tasks.c.status == "queued"
                    )
                )
                .scalars()
                .all()
            )
        assert len(queued) == 1 and item_row(rt, world.plan_id, backlog_id)["task_id"] == queued[0]
        set_item(rt, world.plan_id, backlog_id, "complete")  # the next item's input


def test_contract_drift_warns_at_one_errors_at_two_and_reconciles(
    rt: Runtime, client: TestClient, world: World
) -> None:
    headers = token(rt, "operator")
    set_item(rt, world.plan_id, "vision-plan", "complete")

    def reject(code_body: dict[str, Any]) -> None:
        assert client.post(
            resume_path(world.plan_id, "vision-plan"), json=code_body, headers=headers
        ).status_code in (409, 422)

    def drift() -> dict[str, str]:
        with rt.db.read() as conn:
            return {a["labels"]["code"]: a["severity"] for a in firing(conn, "backlog:contract-drift")}

    reject(good_body(world))
    assert drift() == {"item-complete": "warning"}
    rt.clock.advance(20 * H)
    reject(good_body(world))
    assert drift() == {"item-complete": "error"}
    reject(good_body(world, model=None))
    assert drift() == {"item-complete": "error", "missing-model": "warning"}

    with rt.db.begin() as conn:
        assert reconcile_contract_drift(conn, rt.clock.now()) == 0
    rt.clock.advance(5 * H)  # the first item-complete event left the 24h window
    with rt.db.begin() as conn:
        assert reconcile_contract_drift(conn, rt.clock.now()) == 1
    assert drift() == {"item-complete": "warning", "missing-model": "warning"}
    rt.clock.advance(24 * H)
    with rt.db.begin() as conn:
        assert reconcile_contract_drift(conn, rt.clock.now()) == 2
    assert drift() == {}


def _resume_until(rt: Runtime, client: TestClient, world: World, returns: int, step: timedelta) -> list[bool]:
    headers = token(rt, "operator")
    flapping: list[bool] = []
    for _ in range(returns):
        set_item(rt, world.plan_id, "vision-plan", "failed", task_status=None)
        assert (
            client.post(
                resume_path(world.plan_id, "vision-plan"), json=good_body(world), headers=headers
            ).status_code
            == 202
        )
        with rt.db.read() as conn:
            flapping.append(bool(firing(conn, "backlog:flapping")))
        rt.clock.advance(step)
    return flapping


def test_flapping_fires_at_the_third_return_within_24h(rt: Runtime, client: TestClient, world: World) -> None:
    assert _resume_until(rt, client, world, 3, H) == [False, False, True]
    with rt.db.read() as conn:
        [alert] = firing(conn, "backlog:flapping")
    assert alert["labels"]["backlog_id"] == "vision-plan" and alert["labels"]["plan_id"] == world.plan_id
    assert alert["labels"]["source"] == "backlog_scheduler" and "task_id" not in alert["labels"]


def test_returns_spread_over_more_than_24h_do_not_flap(rt: Runtime, client: TestClient, world: World) -> None:
    assert _resume_until(rt, client, world, 4, 13 * H) == [False, False, False, False]


@pytest.fixture
def low_threshold_rt(db: Any, clock: Any) -> Runtime:
    return Runtime(config=make_config(health={"flapping_threshold": 2}), db=db, clock=clock)


def test_flapping_threshold_comes_from_config(low_threshold_rt: Runtime) -> None:
    rt = low_threshold_rt
    world = seed_world(rt)
    assert _resume_until(rt, TestClient(create_app(rt)), world, 2, H) == [False, True]


def test_action_log_records_resume_for_the_cli_source(rt: Runtime, client: TestClient, world: World) -> None:
    set_item(rt, world.plan_id, "vision-plan", "failed")
    headers = {**token(rt, "operator"), "X-Storyloom-Client": "cli"}
    assert (
        client.post(
            resume_path(world.plan_id, "vision-plan"), json=good_body(world), headers=headers
        ).status_code
        == 202
    )
    with rt.db.read() as conn:
        payload = (
            conn.execute(
                select(workflow_events.c.payload)
                .where(workflow_events.c.kind == BACKLOG_ACTION)
                .order_by(workflow_events.c.id.desc())
            )
            .scalars()
            .first()
        )
    assert payload["action"] == "resume" and payload["source"] == "cli"


def test_openapi_lists_the_resume_route(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "202" in paths["/api/fiction/plans/{plan_id}/backlog/{backlog_id}/resume"]["post"]["responses"]


def test_auto_resume_moves_an_item_stuck_past_60_minutes_whose_worker_is_gone(
    rt: Runtime, clock: FrozenClock, world: World
) -> None:
    heartbeat(rt, "w-live", ttl=timedelta(hours=3))
    set_item(rt, world.plan_id, "vision-plan", "in_progress", worker_id="w-gone", task_status="running")
    live_task = _queued_task_of_another_plan(rt, minutes_ago=0)
    other = _running_item_of_a_live_worker(rt, "w-live")
    scheduler = Scheduler(rt, lambda *_: None)

    clock.advance(timedelta(minutes=30))
    assert scheduler.auto_resume(clock.now()) == 0, "30 minutes is not stuck yet"
    clock.advance(timedelta(minutes=31))
    assert scheduler.auto_resume(clock.now()) == 1

    item = item_row(rt, world.plan_id, "vision-plan")
    assert item["status"] == "pending" and item["worker_id"] is None
    assert item["task_id"] not in (None, "task_vision-plan_running")
    with rt.db.read() as conn:
        statuses = dict(conn.execute(select(tasks.c.task_id, tasks.c.status)).all())
        telemetry = [
            p
            for p in conn.execute(
                select(workflow_events.c.payload).where(workflow_events.c.kind == BACKLOG_TELEMETRY)
            ).scalars()
            if p["backlog_id"] == "vision-plan" and p["status"] == "pending"
        ]
        [action] = [
            p
            for p in conn.execute(
                select(workflow_events.c.payload).where(workflow_events.c.kind == BACKLOG_ACTION)
            ).scalars()
            if p["action"] == "auto-resume"
        ]
    assert statuses["task_vision-plan_running"] == "abandoned" and statuses[item["task_id"]] == "queued"
    assert telemetry[-1]["reason"] == "auto-resume" and telemetry[-1]["previous_status"] == "in_progress"
    assert action["backlog_id"] == "vision-plan" and action["task_id"] == item["task_id"]
    assert item_row(rt, other[0], other[1])["status"] == "in_progress", "a live worker's item stays"
    assert statuses[live_task] == "queued"


def _running_item_of_a_live_worker(rt: Runtime, worker_id: str) -> tuple[str, str]:
    other = seed_world(rt)
    set_item(rt, other.plan_id, "world-bible", "in_progress", worker_id=worker_id, task_status="running")
    return other.plan_id, "world-bible"
