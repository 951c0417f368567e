"""GET /api/deliveries and POST /api/deliveries/{id}/replay over HTTP (TestClient, real database)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import structlog
from fastapi.testclient import TestClient
from sqlalchemy import select

from storyloom.alerting.delivery.worker import DeliveryDispatcher
from storyloom.clock import FrozenClock
from storyloom.runtime import Runtime
from storyloom.services.tokens import create_token
from storyloom.store.db import Database
from storyloom.store.events import BACKLOG_ACTION, DELIVERY_ACTION
from storyloom.store.tables import workflow_events
from tests.support.deliveries import (
    SECRET,
    SECRET_ENV,
    PrivateReceiver,
    delivery,
    enqueue,
    make_alert,
    receiver,
    receiver_state,
    runtime,
    wall_clock,
)
from tests.support.receivers import Reply, standard_webhook

S = timedelta(seconds=1)


@pytest.fixture
def clock() -> FrozenClock:
    return wall_clock()


@pytest.fixture
def server() -> Iterator[PrivateReceiver]:
    with PrivateReceiver(standard_webhook(SECRET)) as srv:
        yield srv


@pytest.fixture
def rt(db: Database, clock: FrozenClock, server: PrivateReceiver, monkeypatch: pytest.MonkeyPatch) -> Runtime:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    return runtime(
        db,
        clock,
        receiver("ops", server.url_for("/ops"), retry={"schedule": ["0s", "0s"]}),
        receiver("pager", server.url_for("/pager")),
    )


def headers(rt: Runtime, role: str, name: str | None = None) -> dict[str, str]:
    with rt.db.begin() as conn:
        plain, _ = create_token(
            conn, name=name or f"{role}-token", role=role, agent_ids=[], now=rt.clock.now()
        )
    return {"Authorization": f"Bearer {plain}"}


async def dispatch(rt: Runtime, passes: int = 1) -> None:
    dispatcher = DeliveryDispatcher(rt)
    try:
        for _ in range(passes):
            await dispatcher.run_once()
    finally:
        await dispatcher.aclose()


async def test_list_filters_newest_first_with_attempts_and_pages(
    rt: Runtime, client: TestClient, server: PrivateReceiver, clock: FrozenClock
) -> None:
    server.script(Reply(500, "down"))
    failed = enqueue(rt, "ops")
    clock.advance(S)
    delivered = enqueue(rt, "pager")
    clock.advance(S)
    pending = enqueue(rt, "pager")
    dispatcher = DeliveryDispatcher(rt, batch_size=1)  # one at a time: the 500 goes to `failed`
    try:
        await dispatcher.run_once()
        await dispatcher.run_once()
    finally:
        await dispatcher.aclose()
    viewer = headers(rt, "viewer")

    listed = client.get("/api/deliveries", headers=viewer)
    assert listed.status_code == 200, listed.text
    assert [d["id"] for d in listed.json()] == [pending, delivered, failed]
    first_failed = listed.json()[2]
    assert first_failed["delivery_id"] == failed and first_failed["status"] == "failed"
    assert first_failed["attempts"] == 1 and first_failed["last_status_code"] == 500
    [attempt] = first_failed["attempt_log"]
    assert attempt["outcome"] == "retry" and attempt["status_code"] == 500 and attempt["attempt"] == 1
    assert attempt["at"].endswith("Z") and first_failed["alert_ids"] == ["planner:phase-failed"]

    def ids(**params: str | int) -> list[str]:
        response = client.get("/api/deliveries", params=params, headers=viewer)
        assert response.status_code == 200, response.text
        return [d["id"] for d in response.json()]

    assert ids(receiver="pager") == [pending, delivered]
    assert ids(status="delivered") == [delivered]
    assert ids(status="pending", receiver="pager") == [pending]
    assert ids(limit=2) == [pending, delivered]
    assert ids(limit=2, page=2) == [failed]
    assert client.get("/api/deliveries", params={"status": "lost"}, headers=viewer).status_code == 422
    assert client.get(f"/api/deliveries/{failed}", headers=viewer).json()["id"] == failed
    assert client.get("/api/deliveries/dlv_nope", headers=viewer).status_code == 404
    no_token = client.get("/api/deliveries")
    assert no_token.status_code == 401
    assert no_token.headers["content-type"].startswith("application/problem+json")


async def test_replay_keeps_the_webhook_id_and_logs_the_action(
    rt: Runtime, client: TestClient, server: PrivateReceiver
) -> None:
    original = enqueue(rt, "pager")
    await dispatch(rt)
    operator = headers(rt, "operator", "olga")

    response = client.post(
        f"/api/deliveries/{original}/replay",
        headers={**operator, "X-Console-Client": "storyloom-console"},
    )
    assert response.status_code == 202, response.text
    replay = response.json()
    assert replay["id"] != original and replay["delivery_id"] == replay["id"]
    assert replay["replay_of"] == original and replay["status"] == "pending" and replay["attempts"] == 0
    assert replay["webhook_id"] == delivery(rt, original)["webhook_id"]
    assert replay["receiver_reenabled"] is False and original in replay["message"]
    assert delivery(rt, replay["id"])["notification"] == delivery(rt, original)["notification"]

    with rt.db.read() as conn:
        events = conn.execute(
            select(workflow_events.c.kind, workflow_events.c.payload).where(
                workflow_events.c.kind.in_([BACKLOG_ACTION, DELIVERY_ACTION])
            )
        ).all()
    logged = [e for e in events if e.payload.get("action") == "replay"]
    assert {e.kind for e in logged} == {BACKLOG_ACTION, DELIVERY_ACTION}
    payload = logged[0].payload
    assert payload["delivery_id"] == original and payload["receiver"] == "pager"
    assert payload["actor"] == "olga" and payload["actor_id"] and payload["source"] == "console"

    await dispatch(rt)
    first, second = server.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == replay["webhook_id"]
    assert first.body == second.body
    assert delivery(rt, replay["id"])["status"] == "delivered"


def test_replay_needs_an_operator(rt: Runtime, client: TestClient) -> None:
    original = enqueue(rt, "pager")
    forbidden = client.post(f"/api/deliveries/{original}/replay", headers=headers(rt, "viewer"))
    assert forbidden.status_code == 403
    assert forbidden.headers["content-type"].startswith("application/problem+json")
    assert "operator" in forbidden.json()["detail"]
    assert client.post(f"/api/deliveries/{original}/replay").status_code == 401
    missing = client.post("/api/deliveries/dlv_missing/replay", headers=headers(rt, "operator"))
    assert missing.status_code == 404 and "GET /api/deliveries" in missing.json()["detail"]


def test_a_replay_is_logged_once_per_plan_its_alerts_concern(rt: Runtime, client: TestClient) -> None:
    now = rt.clock.now()
    original = enqueue(
        rt,
        "pager",
        make_alert(now, plan_id="plan_a", backlog_id="scroll-1", agent_id="agent_a", task_id="task_1"),
        make_alert(now, plan_id="plan_a", backlog_id="scroll-2", agent_id="agent_a", task_id="task_2"),
        make_alert(now, plan_id="plan_b", backlog_id="vision-plan", agent_id="agent_b"),
    )
    with structlog.testing.capture_logs() as logs:
        replay = client.post(f"/api/deliveries/{original}/replay", headers=headers(rt, "operator", "ops-lee"))
    assert replay.status_code == 202
    [line] = [entry for entry in logs if entry["event"] == "operator action"]
    assert (
        line["action"],
        line["delivery_id"],
        line["new_delivery_id"],
        line["receiver"],
        line["actor"],
    ) == (
        "replay",
        original,
        replay.json()["id"],
        "pager",
        "ops-lee",
    ), "one line for the replay, however many plans its action log names"
    with rt.db.read() as conn:
        logged = {
            row.plan_id: row.payload
            for row in conn.execute(
                select(workflow_events.c.plan_id, workflow_events.c.payload).where(
                    workflow_events.c.kind == BACKLOG_ACTION
                )
            )
        }
    assert set(logged) == {"plan_a", "plan_b"}
    assert (logged["plan_a"]["agent_id"], logged["plan_a"]["backlog_id"], logged["plan_a"]["task_id"]) == (
        "agent_a",
        None,
        None,
    ), "only what all of the plan's alerts agree on"
    assert (logged["plan_b"]["backlog_id"], logged["plan_b"]["agent_id"]) == ("vision-plan", "agent_b")
    assert all(p["action"] == "replay" and p["status"] == "pending" for p in logged.values())


async def test_replay_re_enables_a_receiver_disabled_by_410(
    rt: Runtime, client: TestClient, server: PrivateReceiver
) -> None:
    server.script(Reply(410))
    gone = enqueue(rt, "ops")
    await dispatch(rt)
    assert receiver_state(rt, "ops")["disabled_at"] is not None  # type: ignore[index]

    response = client.post(f"/api/deliveries/{gone}/replay", headers=headers(rt, "operator"))
    assert response.status_code == 202, response.text
    assert response.json()["receiver_reenabled"] is True
    assert "enabled again" in response.json()["message"]
    state = receiver_state(rt, "ops")
    assert state is not None and state["disabled_at"] is None and state["consecutive_failures"] == 0
    await dispatch(rt)
    assert delivery(rt, response.json()["id"])["status"] == "delivered"


def test_replay_to_a_receiver_no_longer_configured_is_a_conflict(
    rt: Runtime, client: TestClient, db: Database, clock: FrozenClock, server: PrivateReceiver
) -> None:
    original = enqueue(rt, "pager")
    rt.alerting = runtime(db, clock, receiver("ops", server.url_for("/ops"))).alerting
    response = client.post(f"/api/deliveries/{original}/replay", headers=headers(rt, "operator"))
    assert response.status_code == 409
    assert "alerting.receivers" in response.json()["detail"]
