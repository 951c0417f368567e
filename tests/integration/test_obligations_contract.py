"""The obligation contract (CONTRACTS §4.3) over HTTP, one case per rule; listing, voice drift, reconcile."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import structlog
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from storyloom.backlog.obligations import (
    emit_hook,
    reconcile_obligation_aging,
    reconcile_obligation_drift,
)
from storyloom.runtime import Runtime
from storyloom.store.events import BACKLOG_ACTION, PERSONA_OBLIGATION
from storyloom.store.tables import persona_obligations, workflow_events
from tests.support.plan_seed import PROBLEM, World, firing, iso, seed_world, snapshot, token

H = timedelta(hours=1)


@pytest.fixture
def world(rt: Runtime) -> World:
    return seed_world(rt, obligations=3)


def base(plan_id: str) -> str:
    return f"/api/fiction/plans/{plan_id}/persona-obligations"


def resolve_path(world: World, obligation_id: str | None = None, plan_id: str | None = None) -> str:
    return f"{base(plan_id or world.plan_id)}/{obligation_id or world.obligations[0]}/resolve"


def body(world: World, **change: Any) -> dict[str, Any]:
    out = {
        "action": "resolve",
        "notes": "Mara delivered the lantern in scene 2.",
        "agent_id": world.character_agent,
        **change,
    }
    return {k: v for k, v in out.items() if v is not None}


def obligation_events(rt: Runtime) -> list[dict[str, Any]]:
    with rt.db.read() as conn:
        return [
            dict(p)
            for p in conn.execute(
                select(workflow_events.c.payload)
                .where(workflow_events.c.kind == PERSONA_OBLIGATION)
                .order_by(workflow_events.c.id)
            ).scalars()
        ]


@dataclass
class Case:
    name: str
    status: int
    loc: list[str] | None = None
    body: Callable[[World], dict[str, Any]] = body
    path: Callable[[World], str] = resolve_path
    role: str = "operator"
    bound_to: Callable[[World], list[str]] = field(default=lambda w: [])


CASES = [
    Case("blank notes", 422, ["body", "notes"], body=lambda w: body(w, notes="   ")),
    Case(
        "missing notes",
        422,
        ["body", "notes"],
        body=lambda w: {"action": "resolve", "agent_id": w.character_agent},
    ),
    Case(
        "blank notes before unknown obligation",
        422,
        ["body", "notes"],
        body=lambda w: body(w, notes=""),
        path=lambda w: resolve_path(w, "obl_missing"),
    ),
    Case("unknown obligation", 404, path=lambda w: resolve_path(w, "obl_missing")),
    Case("unknown plan", 404, path=lambda w: resolve_path(w, plan_id="plan_missing")),
    Case("unknown action", 422, ["body", "action"], body=lambda w: body(w, action="ignore")),
    Case("missing agent", 422, ["body", "agent_id"], body=lambda w: {"action": "resolve", "notes": "done"}),
    Case("unknown agent", 422, ["body", "agent_id"], body=lambda w: body(w, agent_id="agent_missing")),
    Case("wrong type", 422, ["body", "voice_drift"], body=lambda w: body(w, voice_drift="maybe")),
    Case("unknown field", 422, ["body", "surprise"], body=lambda w: body(w, surprise=1)),
    Case("unknown backlog item", 422, ["body", "backlog_id"], body=lambda w: body(w, backlog_id="nope")),
    Case("agent of another persona", 403, body=lambda w: body(w, agent_id=w.other_agent)),
    Case("token bound to another agent", 403, bound_to=lambda w: [w.author_agent]),
    Case("viewer", 403, role="viewer"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_rejected_resolve(case: Case, rt: Runtime, client: TestClient, world: World) -> None:
    with rt.db.read() as conn:
        before = snapshot(conn)
        open_alerts = len(firing(conn, "obligation:open"))
    response = client.post(
        case.path(world), json=case.body(world), headers=token(rt, case.role, case.bound_to(world))
    )
    assert response.status_code == case.status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    problem = response.json()
    assert problem["status"] == case.status and problem["detail"]
    if case.loc:
        assert case.loc in [e["loc"] for e in problem["errors"]], problem
    with rt.db.read() as conn:
        assert snapshot(conn) == before
        assert len(firing(conn, "obligation:open")) == open_alerts == 3


@pytest.mark.parametrize("who", ["character", "author", "admin-any"])
def test_resolve_by_an_owner_records_notes_event_action_and_resolves_alerts(
    who: str, rt: Runtime, client: TestClient, world: World
) -> None:
    agent = {
        "character": world.character_agent,
        "author": world.author_agent,
        "admin-any": world.other_agent,
    }[who]
    headers = token(rt, "admin" if who == "admin-any" else "operator", name="ops-jane")
    obligation_id = world.obligations[0]
    response = client.post(
        resolve_path(world),
        headers=headers,
        json=body(world, agent_id=agent, backlog_id="vision-plan", task_id="task_1"),
    )
    assert response.status_code == 200, response.text
    result = response.json()
    now = iso(rt.clock.now())
    assert result["status"] == "resolved" and result["resolved_by"] == "ops-jane"
    assert result["resolved_at"] == now
    assert result["resolution_notes"] == [
        {"note": "Mara delivered the lantern in scene 2.", "actor": "ops-jane", "agent_id": agent, "at": now}
    ]
    event = obligation_events(rt)[-1]
    assert (
        event["action"] == "resolve"
        and event["obligation_id"] == obligation_id
        and event["status"] == "resolved"
    )
    assert event["agent_id"] == agent and event["actor"] == "ops-jane"
    action = client.get(f"/api/fiction/plans/{world.plan_id}/backlog/actions", headers=headers).json()[0]
    assert {
        k: action[k]
        for k in ("action", "obligation_id", "backlog_id", "actor", "source", "agent_id", "task_id", "status")
    } == {
        "action": "resolve",
        "obligation_id": obligation_id,
        "backlog_id": "vision-plan",
        "actor": "ops-jane",
        "source": "api",
        "agent_id": agent,
        "task_id": "task_1",
        "status": "resolved",
    }
    with rt.db.read() as conn:
        still_open = {a["labels"]["obligation_id"] for a in firing(conn, "obligation:open")}
    assert still_open == set(world.obligations[1:])


def test_reapplying_the_current_status_is_200_unchanged_without_event(
    rt: Runtime, client: TestClient, world: World
) -> None:
    headers = token(rt, "operator")
    first = client.post(resolve_path(world), json=body(world), headers=headers).json()
    events = len(obligation_events(rt))
    rt.clock.advance(H)
    again = client.post(resolve_path(world), json=body(world, notes="again"), headers=headers)
    assert again.status_code == 200 and again.json() == first
    assert len(obligation_events(rt)) == events


def test_dismiss_then_resolve_then_reopen(rt: Runtime, client: TestClient, world: World) -> None:
    headers = token(rt, "operator")
    obligation_id = world.obligations[1]
    dismissed = client.post(
        resolve_path(world, obligation_id), json=body(world, action="dismiss", notes="cut"), headers=headers
    ).json()
    assert dismissed["status"] == "dismissed"
    rt.clock.advance(H)
    resolved = client.post(
        resolve_path(world, obligation_id), json=body(world, notes="restored and paid"), headers=headers
    ).json()
    assert resolved["status"] == "resolved"
    assert [n["note"] for n in resolved["resolution_notes"]] == ["cut", "restored and paid"]
    assert [e["action"] for e in obligation_events(rt)][-2:] == ["dismiss", "resolve"]
    # a later phase emitting the same hook reopens it, and its open alert fires again
    with rt.db.begin() as conn:
        emit_hook(
            conn,
            plan_id=world.plan_id,
            persona_id=world.character_persona,
            character_id=None,
            slug="hook-1",
            title="Hook 1",
            description="again",
            source_phase="scroll_refiner",
            source_backlog_id="scroll-1",
            branch_slug="main",
            now=rt.clock.now(),
        )
    listed = client.get(base(world.plan_id), params={"status": "open"}, headers=headers).json()
    assert obligation_id in [o["obligation_id"] for o in listed["items"]]
    with rt.db.read() as conn:
        assert obligation_id in {a["labels"]["obligation_id"] for a in firing(conn, "obligation:open")}


def test_list_filters_and_pages(rt: Runtime, client: TestClient, world: World) -> None:
    headers = token(rt, "viewer")
    client.post(resolve_path(world, world.obligations[2]), json=body(world), headers=token(rt, "operator"))
    everything = client.get(base(world.plan_id), headers=headers).json()
    assert (everything["total"], everything["page"], everything["page_size"]) == (3, 1, 50)
    assert set(everything["items"][0]) >= {
        "obligation_id",
        "plan_id",
        "persona_id",
        "character_id",
        "slug",
        "title",
        "description",
        "status",
        "source_phase",
        "source_backlog_id",
        "branch_slug",
        "voice_drift",
        "resolution_notes",
        "resolved_at",
        "resolved_by",
        "created_at",
        "updated_at",
    }
    page2 = client.get(base(world.plan_id), params={"page": 2, "page_size": 2}, headers=headers).json()
    assert page2["total"] == 3 and len(page2["items"]) == 1
    assert [
        o["status"]
        for o in client.get(base(world.plan_id), params={"status": "resolved"}, headers=headers).json()[
            "items"
        ]
    ] == ["resolved"]
    assert client.get(base(world.plan_id), params={"status": "open"}, headers=headers).json()["total"] == 2


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page_size": 0}, "page_size"),
        ({"page_size": 201}, "page_size"),
        ({"page": 0}, "page"),
        ({"page": "x"}, "page"),
        ({"status": "closed"}, "status"),
    ],
)
def test_bad_list_parameters_are_422_naming_the_field(
    params: dict[str, Any], field: str, rt: Runtime, client: TestClient, world: World
) -> None:
    response = client.get(base(world.plan_id), params=params, headers=token(rt, "viewer"))
    assert response.status_code == 422
    assert ["query", field] in [e["loc"] for e in response.json()["errors"]]


def test_list_of_unknown_plan_is_404(rt: Runtime, client: TestClient) -> None:
    assert client.get(base("plan_missing"), headers=token(rt, "viewer")).status_code == 404


def drift_path(world: World, obligation_id: str | None = None) -> str:
    return f"{base(world.plan_id)}/{obligation_id or world.obligations[0]}/voice-drift"


def drifting(rt: Runtime) -> set[str]:
    with rt.db.read() as conn:
        return {a["labels"]["obligation_id"] for a in firing(conn, "obligation:drift")}


def test_voice_drift_flag_drives_the_drift_alert(rt: Runtime, client: TestClient, world: World) -> None:
    headers = token(rt, "operator")
    flag = {"voice_drift": True, "agent_id": world.author_agent, "notes": "Mara sounds like the narrator"}
    response = client.post(drift_path(world), json=flag, headers=headers)
    assert response.status_code == 200 and response.json()["voice_drift"] is True
    assert drifting(rt) == {world.obligations[0]}
    events = len(obligation_events(rt))
    assert client.post(drift_path(world), json=flag, headers=headers).status_code == 200  # same value
    assert len(obligation_events(rt)) == events
    assert (
        client.post(drift_path(world), json={**flag, "voice_drift": False}, headers=headers).status_code
        == 200
    )
    assert drifting(rt) == set()
    # flagged again, then resolved: a settled obligation does not drift
    client.post(drift_path(world), json=flag, headers=headers)
    client.post(resolve_path(world), json=body(world), headers=headers)
    assert drifting(rt) == set()
    settled = client.post(drift_path(world), json=flag, headers=headers)
    assert settled.status_code == 409 and settled.headers["content-type"].startswith(PROBLEM)


@pytest.mark.parametrize(
    ("change", "status", "loc"),
    [
        ({"agent_id": "other"}, 403, None),
        ({"voice_drift": "yes"}, 422, ["body", "voice_drift"]),
        ({"agent_id": "agent_missing"}, 422, ["body", "agent_id"]),
        ({"surprise": 1}, 422, ["body", "surprise"]),
    ],
)
def test_voice_drift_rejections(
    change: dict[str, Any], status: int, loc: list[str] | None, rt: Runtime, client: TestClient, world: World
) -> None:
    flag: dict[str, Any] = {"voice_drift": True, "agent_id": world.character_agent, **change}
    if flag["agent_id"] == "other":
        flag["agent_id"] = world.other_agent
    response = client.post(drift_path(world), json=flag, headers=token(rt, "operator"))
    assert response.status_code == status, response.text
    if loc:
        assert loc in [e["loc"] for e in response.json()["errors"]]
    assert drifting(rt) == set()


def test_aging_reconcile_follows_the_obligation(rt: Runtime, client: TestClient, world: World) -> None:
    def aging() -> set[str]:
        with rt.db.read() as conn:
            return {a["labels"]["obligation_id"] for a in firing(conn, "obligation:aging")}

    with rt.db.begin() as conn:
        assert reconcile_obligation_aging(conn, rt.clock.now(), 12 * H) == 0
    rt.clock.advance(11 * H)
    with rt.db.begin() as conn:
        reconcile_obligation_aging(conn, rt.clock.now(), 12 * H)
    assert aging() == set()
    rt.clock.advance(2 * H)
    with rt.db.begin() as conn:
        assert reconcile_obligation_aging(conn, rt.clock.now(), 12 * H) == 3
        assert reconcile_obligation_aging(conn, rt.clock.now(), 12 * H) == 0  # idempotent
    assert aging() == set(world.obligations)
    with rt.db.read() as conn:
        [alert] = [
            a
            for a in firing(conn, "obligation:aging")
            if a["labels"]["obligation_id"] == world.obligations[0]
        ]
    assert alert["severity"] == "warning" and alert["labels"]["persona_id"] == world.character_persona
    # resolving clears aging at once; the reconcile clears one settled behind its back
    client.post(resolve_path(world), json=body(world), headers=token(rt, "operator"))
    assert aging() == set(world.obligations[1:])
    with rt.db.begin() as conn:
        conn.execute(
            update(persona_obligations)
            .where(persona_obligations.c.obligation_id == world.obligations[1])
            .values(status="dismissed")
        )
    with rt.db.begin() as conn:
        assert reconcile_obligation_aging(conn, rt.clock.now(), 12 * H) == 1
    assert aging() == {world.obligations[2]}


def test_drift_reconcile_counts_only_open_obligations_flagged_true(rt: Runtime, world: World) -> None:
    first, second, third = world.obligations
    with rt.db.begin() as conn:
        conn.execute(
            update(persona_obligations)
            .where(persona_obligations.c.obligation_id == first)
            .values(voice_drift=True)
        )
        conn.execute(
            update(persona_obligations)
            .where(persona_obligations.c.obligation_id == second)
            .values(voice_drift=True, status="resolved")
        )
        conn.execute(
            update(persona_obligations)
            .where(persona_obligations.c.obligation_id == third)
            .values(voice_drift=False)
        )
    with rt.db.begin() as conn:
        assert reconcile_obligation_drift(conn, rt.clock.now()) == 1
    assert drifting(rt) == {first}
    with rt.db.begin() as conn:
        conn.execute(
            update(persona_obligations)
            .where(persona_obligations.c.obligation_id == first)
            .values(status="dismissed")
        )
    with rt.db.begin() as conn:
        assert reconcile_obligation_drift(conn, rt.clock.now()) == 1
    assert drifting(rt) == set()


def test_resolve_action_is_logged_with_backlog_action_kind(
    rt: Runtime, client: TestClient, world: World
) -> None:
    client.post(resolve_path(world), json=body(world, action="dismiss"), headers=token(rt, "operator"))
    with rt.db.read() as conn:
        kinds = [
            r.payload["action"]
            for r in conn.execute(
                select(workflow_events.c.payload).where(workflow_events.c.kind == BACKLOG_ACTION)
            )
        ]
    assert "dismiss" in kinds


def test_resolve_and_dismiss_each_write_one_server_log_line(
    rt: Runtime, client: TestClient, world: World
) -> None:
    headers = token(rt, "operator", name="ops-kim")
    with structlog.testing.capture_logs() as logs:
        client.post(resolve_path(world), json=body(world, notes="paid in full"), headers=headers)
        client.post(
            resolve_path(world, world.obligations[1]), json=body(world, action="dismiss"), headers=headers
        )
    actions = [entry for entry in logs if entry["event"] == "operator action"]
    assert [(a["action"], a["obligation_id"], a["actor"], a["agent_id"], a["plan_id"]) for a in actions] == [
        ("resolve", world.obligations[0], "ops-kim", world.character_agent, world.plan_id),
        ("dismiss", world.obligations[1], "ops-kim", world.character_agent, world.plan_id),
    ]
    assert "notes" not in actions[0] and "paid in full" not in str(actions)
    assert not any(headers["Authorization"].split()[1] in str(entry) for entry in logs)
