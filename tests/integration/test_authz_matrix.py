"""Who may call which mutating endpoint: no token, viewer, operator acting as another persona's agent,
operator whose token is bound to a different agent, and admin across personas (docs/contract-extensions.md, HTTP API)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from storyloom.alerting.publish import AlertSignal, fire
from storyloom.api.app import create_app
from storyloom.runtime import Runtime
from storyloom.services.acknowledgements import acknowledge
from storyloom.services.actors import SYSTEM
from storyloom.services.silences import create_silence
from tests.support.plan_seed import PROBLEM, World, iso, seed_world, set_item, token

Build = Callable[[Runtime, World, str], tuple[str, Any]]  # (rt, world, acting agent) → (path, json body)


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    route: str  # the route template, as the OpenAPI document names it
    build: Build
    role: str  # the least role that may call it
    ok: int
    agent_scoped: bool = False  # the body names the agent the caller acts as


def _resume(rt: Runtime, w: World, agent: str) -> tuple[str, Any]:
    set_item(rt, w.plan_id, "vision-plan", "failed")
    return (
        f"/api/fiction/plans/{w.plan_id}/backlog/vision-plan/resume",
        {"agent_id": agent, "provider": "offline", "model": "m"},
    )


def _resolve(rt: Runtime, w: World, agent: str) -> tuple[str, Any]:
    return (
        f"/api/fiction/plans/{w.plan_id}/persona-obligations/{w.obligations[0]}/resolve",
        {"action": "resolve", "notes": "paid", "agent_id": agent},
    )


def _voice_drift(rt: Runtime, w: World, agent: str) -> tuple[str, Any]:
    return (
        f"/api/fiction/plans/{w.plan_id}/persona-obligations/{w.obligations[0]}/voice-drift",
        {"voice_drift": True, "agent_id": agent},
    )


def _plan(rt: Runtime, w: World, agent: str) -> tuple[str, Any]:
    persona = w.other_persona if agent == w.other_agent else w.author_persona
    return "/api/fiction/plans", {
        "name": "P",
        "premise": "A premise.",
        "persona_id": persona,
        "agent_id": agent,
    }


def _silence(rt: Runtime, w: World, agent: str) -> tuple[str, Any]:
    return "/api/silences", {
        "matchers": ['alert_id="tool:failed"'],
        "ends_at": iso(rt.clock.now() + timedelta(hours=1)),
        "comment": "maintenance",
    }


def _expire_silence(rt: Runtime, w: World, agent: str) -> tuple[str, Any]:
    silence = create_silence(
        rt.db,
        SYSTEM,
        matchers=['alert_id="tool:failed"'],
        starts_at=None,
        ends_at=rt.clock.now() + timedelta(hours=1),
        comment="x",
        now=rt.clock.now(),
    )
    return f"/api/silences/{silence['id']}", None


def _firing_alert(rt: Runtime) -> str:
    with rt.db.begin() as conn:
        return fire(conn, AlertSignal("tool:failed", {"plan_id": "p", "tool": "search"}, "x"), rt.clock.now())


def _acknowledge(rt: Runtime, w: World, agent: str) -> tuple[str, Any]:
    return f"/api/alerts/{_firing_alert(rt)}/acknowledge", {"note": "on it"}


def _unacknowledge(rt: Runtime, w: World, agent: str) -> tuple[str, Any]:
    fingerprint = _firing_alert(rt)
    acknowledge(rt.db, SYSTEM, fingerprint, rt.clock.now())
    return f"/api/alerts/{fingerprint}/acknowledge", None


ENDPOINTS = [
    Endpoint("plans create", "POST", "/api/fiction/plans", _plan, "operator", 201, agent_scoped=True),
    Endpoint(
        "resume",
        "POST",
        "/api/fiction/plans/{plan_id}/backlog/{backlog_id}/resume",
        _resume,
        "operator",
        202,
        agent_scoped=True,
    ),
    Endpoint(
        "cancel",
        "POST",
        "/api/fiction/plans/{plan_id}/backlog/{backlog_id}/cancel",
        lambda rt, w, a: (f"/api/fiction/plans/{w.plan_id}/backlog/vision-plan/cancel", {"agent_id": a}),
        "operator",
        200,
        agent_scoped=True,
    ),
    Endpoint(
        "obligation resolve",
        "POST",
        "/api/fiction/plans/{plan_id}/persona-obligations/{obligation_id}/resolve",
        _resolve,
        "operator",
        200,
        agent_scoped=True,
    ),
    Endpoint(
        "voice drift",
        "POST",
        "/api/fiction/plans/{plan_id}/persona-obligations/{obligation_id}/voice-drift",
        _voice_drift,
        "operator",
        200,
        agent_scoped=True,
    ),
    Endpoint("silence create", "POST", "/api/silences", _silence, "operator", 201),
    Endpoint("silence expire", "DELETE", "/api/silences/{silence_id}", _expire_silence, "operator", 200),
    Endpoint(
        "alert acknowledge", "POST", "/api/alerts/{fingerprint}/acknowledge", _acknowledge, "operator", 200
    ),
    Endpoint(
        "alert unacknowledge",
        "DELETE",
        "/api/alerts/{fingerprint}/acknowledge",
        _unacknowledge,
        "operator",
        200,
    ),
    Endpoint(
        "drill",
        "POST",
        "/api/drills",
        lambda rt, w, a: ("/api/drills", None),
        "operator",
        409,  # past authorization: this runtime has no routing tree to drill
    ),
    Endpoint(
        "delivery replay",
        "POST",
        "/api/deliveries/{delivery_id}/replay",
        lambda rt, w, a: ("/api/deliveries/dlv_missing/replay", None),
        "operator",
        404,
    ),
    Endpoint(
        "persona create",
        "POST",
        "/api/personas",
        lambda rt, w, a: ("/api/personas", {"name": "N", "kind": "author"}),
        "admin",
        201,
    ),
    Endpoint(
        "agent create",
        "POST",
        "/api/agents",
        lambda rt, w, a: ("/api/agents", {"name": "N", "persona_id": w.author_persona}),
        "admin",
        201,
    ),
    Endpoint(
        "config reload",
        "POST",
        "/api/config/reload",
        lambda rt, w, a: ("/api/config/reload", None),
        "admin",
        200,
    ),
    Endpoint(
        "alert ingest",
        "POST",
        "/api/v2/alerts",
        lambda rt, w, a: ("/api/v2/alerts", [{"labels": {"alertname": "disk-full"}}]),
        "operator",
        200,
    ),
]

# (column, role, bound agents, acting agent, endpoint filter, expected status or None for the endpoint's `ok`)
Column = tuple[
    str,
    str | None,
    Callable[[World], list[str]],
    Callable[[World], str],
    Callable[[Endpoint], bool],
    int | None,
]
COLUMNS: list[Column] = [
    ("no token", None, lambda w: [], lambda w: w.author_agent, lambda e: True, 401),
    ("viewer", "viewer", lambda w: [], lambda w: w.author_agent, lambda e: True, 403),
    (
        "operator on admin-only",
        "operator",
        lambda w: [],
        lambda w: w.author_agent,
        lambda e: e.role == "admin",
        403,
    ),
    (
        "operator as another persona's agent",
        "operator",
        lambda w: [],
        lambda w: w.other_agent,
        lambda e: e.agent_scoped and e.name != "plans create",
        403,
    ),
    (
        "operator token bound to another agent",
        "operator",
        lambda w: [w.other_agent],
        lambda w: w.author_agent,
        lambda e: e.agent_scoped,
        403,
    ),
    (
        "operator as its own agent",
        "operator",
        lambda w: [w.author_agent],
        lambda w: w.author_agent,
        lambda e: e.role == "operator",
        None,
    ),
    ("admin across persona", "admin", lambda w: [], lambda w: w.other_agent, lambda e: e.agent_scoped, None),
    ("admin", "admin", lambda w: [], lambda w: w.author_agent, lambda e: True, None),
]

MATRIX = [(e, c) for c in COLUMNS for e in ENDPOINTS if c[4](e)]

# Mutating operations outside the matrix, each with the reason its authorization is proven elsewhere.
NOT_IN_MATRIX = {
    ("POST", "/api/alert-routes/test"): "a read (viewer) that evaluates labels; changes nothing",
    ("POST", "/api/demo/receiver"): "authenticated by its Standard Webhooks signature (test_demo_receiver)",
}


def _mutating_operations(app: FastAPI) -> set[tuple[str, str]]:
    """Every non-GET operation the app serves, from its OpenAPI paths (`app.routes` nests included routers)."""
    return {
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        for method in operations
        if method.lower() not in {"get", "head", "options"}
    }


def test_every_mutating_operation_is_in_the_matrix(rt: Runtime) -> None:
    served = _mutating_operations(create_app(rt))
    covered = {(e.method, e.route) for e in ENDPOINTS} | set(NOT_IN_MATRIX)
    assert served - covered == set(), "add these operations to ENDPOINTS (or NOT_IN_MATRIX, with why)"
    assert covered - served == set(), "these matrix operations are not served: renamed or removed?"


@pytest.mark.parametrize(("endpoint", "column"), MATRIX, ids=[f"{c[0]}-{e.name}" for e, c in MATRIX])
def test_authorization_matrix(endpoint: Endpoint, column: Column, rt: Runtime) -> None:
    app = create_app(rt)
    assert (endpoint.method, endpoint.route) in _mutating_operations(app), (
        "the matrix names a route not served"
    )
    name, role, bound, acting, _, expected = column
    world = seed_world(rt)
    headers = token(rt, role, bound(world)) if role else {}
    path, body = endpoint.build(rt, world, acting(world))
    response = TestClient(app).request(endpoint.method, path, json=body, headers=headers)
    want = endpoint.ok if expected is None else expected
    if endpoint.name == "config reload" and want == 200 and response.status_code in (409, 422):
        return  # no config file in this runtime: the admin got past authorization, the reload itself refused
    assert response.status_code == want, f"{name} / {endpoint.name}: {response.text}"
    if want >= 400:
        assert response.headers["content-type"].startswith(PROBLEM)
        assert response.json()["status"] == want
