"""Personas, agents, plans and the read endpoints over HTTP: auth, roles, problem+json, validation."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from storyloom.runtime import Runtime
from storyloom.services.tokens import create_token
from storyloom.store.events import BACKLOG_ACTION
from storyloom.store.tables import api_tokens, workflow_events

PROBLEM = "application/problem+json"


def _token(rt: Runtime, role: str, agent_ids: list[str] | None = None) -> dict[str, str]:
    with rt.db.begin() as conn:
        token, _ = create_token(
            conn, name=f"{role}-user", role=role, agent_ids=agent_ids or [], now=rt.clock.now()
        )
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def admin(rt: Runtime) -> dict[str, str]:
    return _token(rt, "admin")


def _author(client: TestClient, admin: dict[str, str]) -> tuple[str, str]:
    persona = client.post(
        "/api/personas", json={"name": "June Arden", "kind": "author"}, headers=admin
    ).json()
    agent = client.post(
        "/api/agents",
        json={"name": "June agent", "persona_id": persona["id"], "provider": "offline", "model": "m"},
        headers=admin,
    ).json()
    return persona["id"], agent["id"]


def _plan_body(persona_id: str, agent_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "Ash Lantern",
        "premise": "A lamplighter guild keeps the dark at bay.",
        "persona_id": persona_id,
        "agent_id": agent_id,
        **extra,
    }


def test_no_token_is_401_problem_json(client: TestClient) -> None:
    response = client.get("/api/fiction/plans")
    assert response.status_code == 401
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == 401 and "Bearer" in body["detail"]


def test_invalid_token_is_401(client: TestClient) -> None:
    assert client.get("/api/fiction/plans", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_create_plan_seeds_three_items_with_ownership(client: TestClient, admin: dict[str, str]) -> None:
    persona_id, agent_id = _author(client, admin)
    response = client.post("/api/fiction/plans", json=_plan_body(persona_id, agent_id), headers=admin)
    assert response.status_code == 201, response.text
    plan = response.json()
    assert (
        plan["status"] == "in_progress" and plan["persona_id"] == persona_id and plan["agent_id"] == agent_id
    )
    backlog = client.get(f"/api/fiction/plans/{plan['plan_id']}/backlog", headers=admin).json()
    assert [(i["backlog_id"], i["phase"], i["status"]) for i in backlog] == [
        ("vision-plan", "vision", "pending"),
        ("world-bible", "world_bible", "pending"),
        ("iteration-plan", "iterative", "pending"),
    ]
    assert backlog[1]["inputs"] == ["vision-plan"]
    assert all(i["agent_id"] == agent_id and i["persona_id"] == persona_id for i in backlog)
    assert set(backlog[0]) >= {
        "backlog_id",
        "plan_id",
        "description",
        "phase",
        "status",
        "inputs",
        "outputs",
        "agent_id",
        "persona_id",
        "provider",
        "model",
        "task_id",
        "attempts",
        "last_error",
        "branch_slug",
        "created_at",
        "updated_at",
        "in_progress_at",
        "completed_at",
    }
    assert backlog[0]["created_at"].endswith("Z")
    actions = client.get(f"/api/fiction/plans/{plan['plan_id']}/backlog/actions", headers=admin).json()
    assert actions[0]["action"] == "plan-create" and actions[0]["agent_id"] == agent_id


def test_viewer_reads_but_cannot_create(client: TestClient, rt: Runtime, admin: dict[str, str]) -> None:
    persona_id, agent_id = _author(client, admin)
    viewer = _token(rt, "viewer")
    assert client.get("/api/fiction/plans", headers=viewer).status_code == 200
    response = client.post("/api/fiction/plans", json=_plan_body(persona_id, agent_id), headers=viewer)
    assert response.status_code == 403
    assert "operator" in response.json()["detail"]


def test_operator_cannot_create_personas(client: TestClient, rt: Runtime) -> None:
    response = client.post(
        "/api/personas", json={"name": "X", "kind": "author"}, headers=_token(rt, "operator")
    )
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"persona_id": "persona_missing"}, "persona_id", "unknown persona"),
        ({"agent_id": "agent_missing"}, "agent_id", "unknown agent"),
        ({"provider": "gemini"}, "provider", "unknown provider"),
        ({"premise": "x" * 20_001}, "premise", "limit"),
        ({"name": ""}, "name", "at least 1"),
        ({"surprise": 1}, "surprise", "Extra inputs"),
    ],
)
def test_bad_plan_bodies_are_422_naming_the_field(
    client: TestClient, admin: dict[str, str], change: dict[str, Any], field: str, fragment: str
) -> None:
    persona_id, agent_id = _author(client, admin)
    response = client.post(
        "/api/fiction/plans", json={**_plan_body(persona_id, agent_id), **change}, headers=admin
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert response.headers["content-type"].startswith(PROBLEM)
    assert any(e["loc"][-1] == field for e in body["errors"]), body
    assert fragment in body["detail"] + " ".join(e["msg"] for e in body["errors"])
    assert client.get("/api/fiction/plans", headers=admin).json() == []  # nothing half-created


def test_agent_of_another_persona_is_refused(client: TestClient, admin: dict[str, str]) -> None:
    persona_id, _ = _author(client, admin)
    _, other_agent = _author(client, admin)
    response = client.post("/api/fiction/plans", json=_plan_body(persona_id, other_agent), headers=admin)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "agent_id"]


def test_character_persona_cannot_own_a_plan(client: TestClient, admin: dict[str, str]) -> None:
    persona = client.post("/api/personas", json={"name": "Rook", "kind": "character"}, headers=admin).json()
    response = client.post("/api/fiction/plans", json=_plan_body(persona["id"], ""), headers=admin)
    assert response.status_code == 422


def test_token_bound_to_another_agent_cannot_create_for_this_one(
    client: TestClient, rt: Runtime, admin: dict[str, str]
) -> None:
    persona_id, agent_id = _author(client, admin)
    _, other_agent = _author(client, admin)
    bound = _token(rt, "operator", [other_agent])
    response = client.post("/api/fiction/plans", json=_plan_body(persona_id, agent_id), headers=bound)
    assert response.status_code == 403
    assert client.get("/api/fiction/plans", headers=admin).json() == []


def test_unknown_plan_is_404(client: TestClient, admin: dict[str, str]) -> None:
    for path in ("", "/backlog", "/backlog/actions", "/roster"):
        response = client.get(f"/api/fiction/plans/plan_nope{path}", headers=admin)
        assert response.status_code == 404, path
        assert response.json()["title"] == "Not found"


def test_health_and_readiness_need_no_token(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"


def test_admin_env_token_is_accepted(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STORYLOOM_ADMIN_TOKEN", "sl_env_admin_secret_value")
    assert (
        client.get("/api/personas", headers={"Authorization": "Bearer sl_env_admin_secret_value"}).status_code
        == 200
    )
    assert (
        client.get("/api/personas", headers={"Authorization": "Bearer sl_env_admin_secret_valuX"}).status_code
        == 401
    )


def test_openapi_lists_the_contract_paths(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/fiction/plans",
        "/api/fiction/plans/{plan_id}/backlog",
        "/api/personas",
        "/api/agents",
    ):
        assert path in paths


def _token_id(rt: Runtime, name: str) -> str:
    with rt.db.read() as conn:
        return str(conn.execute(select(api_tokens.c.id).where(api_tokens.c.name == name)).scalar_one())


def _actions(rt: Runtime) -> list[dict[str, Any]]:
    """Every action-log entry, oldest first (persona and agent entries belong to no plan)."""
    with rt.db.read() as conn:
        return list(
            conn.execute(
                select(workflow_events.c.payload)
                .where(workflow_events.c.kind == BACKLOG_ACTION)
                .order_by(workflow_events.c.id)
            ).scalars()
        )


@pytest.mark.parametrize(
    ("headers", "source"),
    [
        ({}, "api"),
        ({"X-Console-Client": "storyloom-console"}, "console"),
        ({"X-Storyloom-Client": "cli"}, "cli"),
    ],
)
def test_plan_create_is_logged_with_who_did_it_and_from_where(
    client: TestClient, rt: Runtime, admin: dict[str, str], headers: dict[str, str], source: str
) -> None:
    persona_id, agent_id = _author(client, admin)
    operator = _token(rt, "operator")
    plan = client.post(
        "/api/fiction/plans", json=_plan_body(persona_id, agent_id), headers={**operator, **headers}
    ).json()
    [action] = client.get(f"/api/fiction/plans/{plan['plan_id']}/backlog/actions", headers=admin).json()
    assert action["action"] == "plan-create" and action["plan_id"] == plan["plan_id"]
    assert (action["actor"], action["actor_id"], action["source"]) == (
        "operator-user",
        _token_id(rt, "operator-user"),
        source,
    )
    assert (action["agent_id"], action["persona_id"]) == (agent_id, persona_id)
    assert (action["provider"], action["model"], action["status"]) == ("offline", "m", "in_progress")
    assert action["branch"] == "main" and action["description"] == "plan 'Ash Lantern' created"
    assert action["time"].endswith("Z")


def test_creating_a_persona_and_an_agent_logs_an_action_each(
    client: TestClient, rt: Runtime, admin: dict[str, str]
) -> None:
    persona_id, agent_id = _author(client, admin)
    persona_action, agent_action = _actions(rt)
    who = {"actor": "admin-user", "actor_id": _token_id(rt, "admin-user"), "source": "api"}
    assert persona_action == {
        "action": "persona-create",
        "description": "author persona 'June Arden' created",
        **who,
        "persona_id": persona_id,
        "plan_id": None,
        "agent_id": None,
    }
    assert agent_action == {
        "action": "agent-create",
        "description": "agent 'June agent' created for persona 'June Arden'",
        **who,
        "agent_id": agent_id,
        "persona_id": persona_id,
        "plan_id": None,
        "provider": "offline",
        "model": "m",
    }


def test_a_refused_persona_or_agent_logs_nothing(client: TestClient, rt: Runtime) -> None:
    operator = _token(rt, "operator")
    assert (
        client.post("/api/personas", json={"name": "X", "kind": "author"}, headers=operator).status_code
        == 403
    )
    admin = _token(rt, "admin")
    response = client.post("/api/agents", json={"name": "A", "persona_id": "persona_nope"}, headers=admin)
    assert response.status_code == 422
    assert _actions(rt) == []
