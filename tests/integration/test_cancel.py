"""Cancelling a backlog item over HTTP, and a phase cancelled while its planner call is in flight."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import structlog
from fastapi.testclient import TestClient
from sqlalchemy import select

from storyloom.alerting.publish import AlertSignal, fire
from storyloom.pipeline.attempt import CANCELLED
from storyloom.pipeline.dispatcher import ToolDispatcher
from storyloom.pipeline.llm.base import LLMRequest, LLMResponse
from storyloom.pipeline.providers import build_provider
from storyloom.pipeline.runner import PhaseRunner
from storyloom.runtime import Runtime
from storyloom.server import prepare
from storyloom.services.actors import Actor
from storyloom.services.cancel import cancel
from storyloom.store.events import BACKLOG_ACTION, BACKLOG_TELEMETRY
from storyloom.store.tables import checkpoints, planner_executions, tasks
from tests.support.health_seed import item as item_row
from tests.support.plan_seed import PROBLEM, World, events_of, firing, seed_world, set_item, token


@pytest.fixture
def world(rt: Runtime) -> World:
    prepare(rt)
    return seed_world(rt)


def cancel_path(plan_id: str, backlog_id: str) -> str:
    return f"/api/fiction/plans/{plan_id}/backlog/{backlog_id}/cancel"


def _payloads(rt: Runtime, kind: str) -> list[dict[str, Any]]:
    with rt.db.read() as conn:
        return events_of(conn, kind)


def test_cancel_a_failed_item_cancels_its_checkpoint_resolves_its_alerts_and_is_logged(
    rt: Runtime, client: TestClient, world: World
) -> None:
    set_item(rt, world.plan_id, "vision-plan", "failed", task_status="failed", checkpoint="failed")
    with rt.db.begin() as conn:
        fire(
            conn,
            AlertSignal("planner:phase-failed", {"plan_id": world.plan_id, "backlog_id": "vision-plan"}, "x"),
            rt.clock.now(),
        )
    headers = {**token(rt, "operator", name="ops-jane"), "X-Console-Client": "storyloom-console"}
    body = {"agent_id": world.author_agent, "notes": "the premise changed"}

    with structlog.testing.capture_logs() as logs:
        response = client.post(cancel_path(world.plan_id, "vision-plan"), json=body, headers=headers)

    assert response.status_code == 200, response.text
    [logged] = [entry for entry in logs if entry["event"] == "operator action"]
    assert logged == {
        "event": "operator action",
        "log_level": "info",
        "action": "cancel",
        "actor": "ops-jane",
        "actor_id": logged["actor_id"],
        "source": "console",
        "agent_id": world.author_agent,
        "persona_id": world.author_persona,
        "plan_id": world.plan_id,
        "backlog_id": "vision-plan",
        "task_id": logged["task_id"],
        "previous_status": "failed",
        "status": "cancelled",
    }
    assert response.json()["backlog_item"]["status"] == "cancelled"
    assert response.json()["cancelled_task_id"] is None, "its task had already finished"
    with rt.db.read() as conn:
        checkpoint = conn.execute(select(checkpoints.c.status)).scalar()
        assert firing(conn, "planner:phase-failed") == []
    assert checkpoint == "cancelled"
    telemetry = _payloads(rt, BACKLOG_TELEMETRY)[-1]
    assert (telemetry["status"], telemetry["previous_status"], telemetry["reason"]) == (
        "cancelled",
        "failed",
        "cancel-requested",
    )
    [action] = [a for a in _payloads(rt, BACKLOG_ACTION) if a["action"] == "cancel"]
    assert (action["actor"], action["source"], action["agent_id"], action["persona_id"], action["notes"]) == (
        "ops-jane",
        "console",
        world.author_agent,
        world.author_persona,
        "the premise changed",
    )
    assert action["actor_id"].startswith("tok_") and action["status"] == "cancelled"

    again = client.post(cancel_path(world.plan_id, "vision-plan"), json=body, headers=headers)
    assert again.status_code == 200 and again.json()["backlog_item"]["status"] == "cancelled"
    assert len([a for a in _payloads(rt, BACKLOG_ACTION) if a["action"] == "cancel"]) == 1, "idempotent"


def test_cancel_a_queued_item_cancels_its_task_so_it_never_starts(rt: Runtime, world: World) -> None:
    task_id = set_item(rt, world.plan_id, "vision-plan", "pending", task_status="queued")
    assert task_id is not None
    result = cancel(
        rt.db, world.plan_id, "vision-plan", {"agent_id": world.author_agent}, _admin(), rt.clock.now()
    )
    assert result["cancelled_task_id"] == task_id
    start = _runner(rt, build_provider("offline", rt.config)).start(task_id)
    assert start.skip == "cancelled"
    assert item_row(rt, world.plan_id, "vision-plan")["status"] == "cancelled"


def test_a_cancelled_item_resumes_as_a_new_task(rt: Runtime, client: TestClient, world: World) -> None:
    headers = token(rt, "operator")
    set_item(rt, world.plan_id, "vision-plan", "failed", task_status="failed", checkpoint="failed")
    client.post(
        cancel_path(world.plan_id, "vision-plan"), json={"agent_id": world.author_agent}, headers=headers
    )
    resumed = client.post(
        f"/api/fiction/plans/{world.plan_id}/backlog/vision-plan/resume",
        json={"agent_id": world.author_agent, "provider": "offline", "model": "m2"},
        headers=headers,
    )
    assert resumed.status_code == 202, resumed.text
    assert resumed.json()["backlog_item"]["status"] == "pending"
    with rt.db.read() as conn:
        assert conn.execute(select(checkpoints.c.status)).scalar() == "open"


@pytest.mark.parametrize(
    ("name", "status", "role", "body", "item_status"),
    [
        ("complete item", 409, "operator", "author", "complete"),
        ("agent of another persona", 403, "operator", "other", "failed"),
        ("viewer", 403, "viewer", "author", "failed"),
        ("unknown agent", 422, "operator", "missing", "failed"),
        ("no agent", 422, "operator", None, "failed"),
    ],
)
def test_refused_cancel_changes_nothing(
    name: str,
    status: int,
    role: str,
    body: str | None,
    item_status: str,
    rt: Runtime,
    client: TestClient,
    world: World,
) -> None:
    set_item(rt, world.plan_id, "vision-plan", item_status)
    agent = {"author": world.author_agent, "other": world.other_agent, "missing": "agent_nope"}
    payload = {"agent_id": agent[body]} if body else {}
    response = client.post(cancel_path(world.plan_id, "vision-plan"), json=payload, headers=token(rt, role))
    assert response.status_code == status, name
    assert response.headers["content-type"].startswith(PROBLEM) and response.json()["detail"]
    assert item_row(rt, world.plan_id, "vision-plan")["status"] == item_status
    assert [a for a in _payloads(rt, BACKLOG_ACTION) if a["action"] == "cancel"] == []


def test_admin_may_cancel_as_another_personas_agent(rt: Runtime, client: TestClient, world: World) -> None:
    set_item(rt, world.plan_id, "vision-plan", "failed")
    response = client.post(
        cancel_path(world.plan_id, "vision-plan"),
        json={"agent_id": world.other_agent},
        headers=token(rt, "admin"),
    )
    assert response.status_code == 200, response.text


def test_unknown_item_is_404(rt: Runtime, client: TestClient, world: World) -> None:
    response = client.post(
        cancel_path(world.plan_id, "nope"),
        json={"agent_id": world.author_agent},
        headers=token(rt, "operator"),
    )
    assert response.status_code == 404


class HeldProvider:
    """The offline provider, holding each call until released: a planner call in flight."""

    name = "offline"

    def __init__(self, rt: Runtime) -> None:
        self.inner = build_provider("offline", rt.config)
        self.called = threading.Event()
        self.release = threading.Event()

    def complete(self, request: LLMRequest) -> LLMResponse:
        self.called.set()
        assert self.release.wait(30), "the test never released the call"
        return self.inner.complete(request)


def test_cancel_during_a_planner_call_records_a_cancelled_execution_and_drops_its_output(
    rt: Runtime, world: World
) -> None:
    task_id = set_item(rt, world.plan_id, "vision-plan", "pending", task_status="queued")
    assert task_id is not None
    provider = HeldProvider(rt)
    runner = _runner(rt, provider)
    assert runner.start(task_id).skip is None
    outcomes: list[Any] = []
    attempt = threading.Thread(target=lambda: outcomes.append(runner.attempt(task_id, 1)))
    attempt.start()
    assert provider.called.wait(30)

    cancel(rt.db, world.plan_id, "vision-plan", {"agent_id": world.author_agent}, _admin(), rt.clock.now())
    provider.release.set()
    attempt.join(30)

    [outcome] = outcomes
    assert outcome.kind == CANCELLED and outcome.output is None
    assert runner.complete(task_id, {"anything": True}) == []
    with rt.db.read() as conn:
        executions = conn.execute(select(planner_executions.c.outcome)).scalars().all()
        task_status = conn.execute(select(tasks.c.status).where(tasks.c.task_id == task_id)).scalar()
    assert executions == ["cancelled"] and task_status == "cancelled"
    assert item_row(rt, world.plan_id, "vision-plan")["status"] == "cancelled"


def _runner(rt: Runtime, provider: Any) -> PhaseRunner:
    dispatcher = ToolDispatcher(rt.db, lambda: rt.config, rt.clock, lambda _name: provider)
    return PhaseRunner(rt.db, lambda: rt.config, rt.clock, dispatcher, "w-test")


def _admin() -> Actor:
    return Actor(name="root", actor_id="tok_root", role="admin")
