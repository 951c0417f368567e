"""Texts entering storage: valid UTF-8 without NUL in every body model, Prometheus label names, per-field
limits (422 naming field and limit), and a partly bad v2 alert batch that keeps its valid alerts."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from storyloom.api.app import create_app
from storyloom.clock import FrozenClock
from storyloom.runtime import Runtime
from storyloom.store.db import Database
from storyloom.store.tables import alerts, silences
from tests.conftest import make_config
from tests.support.plan_seed import World, seed_world, token

PROBLEM = "application/problem+json"
LIMITS = {
    "max_alerts_per_request": 5,
    "max_labels_per_alert": 4,
    "max_label_name_length": 16,
    "max_label_value_length": 32,
    "max_annotation_value_length": 64,
    "max_matchers_per_silence": 2,
}
POISON = b'[{"labels":{"alertname":"poison","v":"\\ud800"}}]'


@pytest.fixture
def rt(db: Database, clock: FrozenClock) -> Runtime:
    return Runtime(config=make_config(limits=LIMITS, pipeline={"max_premise_chars": 100}), db=db, clock=clock)


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(create_app(rt), raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def world(rt: Runtime) -> World:
    return seed_world(rt, obligations=1)


@pytest.fixture
def admin(rt: Runtime) -> dict[str, str]:
    return token(rt, "admin")


def refused(response: Any) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body: dict[str, Any] = response.json()
    return body


def locs(body: dict[str, Any]) -> list[list[Any]]:
    return [e["loc"] for e in body["errors"]]


def stored_alert_names(rt: Runtime) -> set[str]:
    with rt.db.read() as conn:
        return {row.alert_id for row in conn.execute(select(alerts.c.alert_id))}


def reads_still_answer(client: TestClient, headers: dict[str, str]) -> None:
    for path in ("/api/alerts", "/api/silences", "/api/diagnostics/planner"):
        response = client.get(path, headers=headers)
        assert response.status_code == 200, (path, response.text)


# --- poison ---------------------------------------------------------------------------------------------


def test_the_poison_alert_is_refused_and_every_read_still_answers(
    client: TestClient, rt: Runtime, admin: dict[str, str]
) -> None:
    headers = {**admin, "Content-Type": "application/json"}
    body = refused(client.post("/api/v2/alerts", content=POISON, headers=headers))
    assert body["errors"] == [
        {"loc": ["body", 0, "labels", "v"], "msg": "must be valid UTF-8: a lone surrogate at character 0"}
    ]
    assert body["accepted"] == 0 and body["refused"] == [0]
    assert stored_alert_names(rt) == set()
    reads_still_answer(client, admin)


def test_a_silence_whose_matcher_holds_a_lone_surrogate_is_refused(
    client: TestClient, rt: Runtime, admin: dict[str, str]
) -> None:
    raw = b'{"matchers":["v=\\"\\ud800\\""],"ends_at":"2030-01-01T00:00:00Z","comment":"x"}'
    body = refused(
        client.post("/api/silences", content=raw, headers={**admin, "Content-Type": "application/json"})
    )
    assert locs(body) == [["body", "matchers", 0]]
    with rt.db.read() as conn:
        assert conn.execute(select(silences.c.id)).first() is None
    reads_still_answer(client, admin)


def test_a_lone_surrogate_in_a_label_name_is_refused_with_a_renderable_answer(
    client: TestClient, admin: dict[str, str]
) -> None:
    raw = b'[{"labels":{"alertname":"x","a\\ud800":"v"}}]'
    body = refused(
        client.post("/api/v2/alerts", content=raw, headers={**admin, "Content-Type": "application/json"})
    )
    [error] = body["errors"]
    assert error["loc"][:3] == ["body", 0, "labels"] and error["loc"][4] == "[key]"
    assert error["loc"][3].startswith("a") and "lone surrogate" in error["msg"]


# --- a batch with some bad alerts -------------------------------------------------------------------------


def test_a_batch_keeps_its_valid_alerts_and_names_each_refused_one_by_index(
    client: TestClient, rt: Runtime, admin: dict[str, str]
) -> None:
    batch = [
        {"labels": {"alertname": "good_one", "job": "api"}},
        {"labels": {"alertname": "nul_name", "a\u0000b": "x"}},
        {"labels": {"alertname": "good_two"}, "annotations": {"summary": "fine"}},
        {"labels": {"alertname": "nul_value", "v": "bad\u0000value"}},
        {"labels": {"alertname": "empty_name", "": "x"}},
    ]
    body = refused(client.post("/api/v2/alerts", json=batch, headers=admin))
    assert body["refused"] == [1, 3, 4]
    assert body["accepted"] == 2 and len(body["fired"]) == 2
    assert locs(body) == [
        ["body", 1, "labels", "a\\u0000b", "[key]"],
        ["body", 3, "labels", "v"],
        ["body", 4, "labels", "", "[key]"],
    ]
    assert "3 alert(s) refused, 2 accepted" in body["detail"]
    assert stored_alert_names(rt) == {"good_one", "good_two"}
    assert {a["alert_id"] for a in client.get("/api/alerts", headers=admin).json()} == {
        "good_one",
        "good_two",
    }


@pytest.mark.parametrize("name", ["1abc", "a-b", "a.b", "é", ""])
def test_ingest_label_names_follow_prometheus_rules(
    client: TestClient, admin: dict[str, str], name: str
) -> None:
    body = refused(
        client.post("/api/v2/alerts", json=[{"labels": {"alertname": "x", name: "v"}}], headers=admin)
    )
    assert locs(body) == [["body", 0, "labels", name, "[key]"]]
    assert "[a-zA-Z_][a-zA-Z0-9_]*" in body["errors"][0]["msg"]


def test_valid_label_names_are_accepted(client: TestClient, admin: dict[str, str]) -> None:
    ok = [{"labels": {"alertname": "x", "_hidden": "1", "Zone2": "eu"}}]
    assert client.post("/api/v2/alerts", json=ok, headers=admin).status_code == 200


# --- per-field limits, configurable ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("alert", "loc", "limit_key"),
    [
        (
            {"labels": {"alertname": "x", "a": "1", "b": "2", "c": "3", "d": "4"}},
            ["labels"],
            "max_labels_per_alert",
        ),
        ({"labels": {"alertname": "x", "n" * 17: "1"}}, ["labels", "n" * 17], "max_label_name_length"),
        ({"labels": {"alertname": "x", "v": "v" * 33}}, ["labels", "v"], "max_label_value_length"),
        (
            {"labels": {"alertname": "x"}, "annotations": {"summary": "s" * 65}},
            ["annotations", "summary"],
            "max_annotation_value_length",
        ),
    ],
)
def test_each_ingest_limit_is_a_422_naming_field_and_limit(
    client: TestClient,
    rt: Runtime,
    admin: dict[str, str],
    alert: dict[str, Any],
    loc: list[Any],
    limit_key: str,
) -> None:
    body = refused(client.post("/api/v2/alerts", json=[alert], headers=admin))
    assert locs(body) == [["body", 0, *loc]]
    assert f"limits.{limit_key}" in body["errors"][0]["msg"]
    assert str(LIMITS[limit_key]) in body["errors"][0]["msg"]
    assert stored_alert_names(rt) == set()


def test_too_many_alerts_in_one_request_refuses_the_request_whole(
    client: TestClient, rt: Runtime, admin: dict[str, str]
) -> None:
    batch = [{"labels": {"alertname": f"a{i}"}} for i in range(6)]
    body = refused(client.post("/api/v2/alerts", json=batch, headers=admin))
    assert locs(body) == [["body"]] and "limits.max_alerts_per_request" in body["detail"]
    assert stored_alert_names(rt) == set()


def test_alerts_without_a_name_or_with_an_unknown_severity_are_refused_at_the_door(
    client: TestClient, rt: Runtime, admin: dict[str, str]
) -> None:
    batch = [
        {"labels": {"job": "nameless"}},
        {"labels": {"alertname": "loud", "severity": "apocalyptic"}},
        {"labels": {"alertname": "fine"}},
    ]
    body = refused(client.post("/api/v2/alerts", json=batch, headers=admin))
    assert locs(body) == [["body", 0, "labels"], ["body", 1, "labels", "severity"]]
    assert body["accepted"] == 1 and stored_alert_names(rt) == {"fine"}


def test_matchers_per_silence_are_limited(client: TestClient, admin: dict[str, str]) -> None:
    silence = {"matchers": ['a="1"', 'b="2"', 'c="3"'], "ends_at": "2030-01-01T00:00:00Z", "comment": "x"}
    body = refused(client.post("/api/silences", json=silence, headers=admin))
    assert locs(body) == [["body", "matchers"]] and "limits.max_matchers_per_silence" in body["detail"]


def test_a_premise_past_its_limit_is_named(client: TestClient, world: World, admin: dict[str, str]) -> None:
    plan = {"name": "Long", "premise": "p" * 101, "persona_id": world.author_persona}
    body = refused(client.post("/api/fiction/plans", json=plan, headers=admin))
    assert locs(body) == [["body", "premise"]] and "100" in body["detail"]


# --- the text type on every body model ------------------------------------------------------------------


def body_cases(world: World) -> list[tuple[str, str, dict[str, Any], list[Any]]]:
    plan, obligation = world.plan_id, world.obligations[0]
    return [
        ("POST", "/api/personas", {"name": "N\x00", "kind": "author"}, ["body", "name"]),
        (
            "POST",
            "/api/agents",
            {"name": "a", "persona_id": world.author_persona, "model": "m\x00"},
            ["body", "model"],
        ),
        (
            "POST",
            "/api/fiction/plans",
            {"name": "n", "premise": "a premise\x00", "persona_id": world.author_persona},
            ["body", "premise"],
        ),
        (
            "POST",
            f"/api/fiction/plans/{plan}/persona-obligations/{obligation}/resolve",
            {"action": "resolve", "notes": "done\x00", "agent_id": world.character_agent},
            ["body", "notes"],
        ),
        (
            "POST",
            f"/api/fiction/plans/{plan}/persona-obligations/{obligation}/voice-drift",
            {"voice_drift": True, "agent_id": world.character_agent, "notes": "\x00"},
            ["body", "notes"],
        ),
        (
            "POST",
            f"/api/fiction/plans/{plan}/backlog/vision-plan/cancel",
            {"agent_id": world.author_agent, "notes": "stop\x00"},
            ["body", "notes"],
        ),
        (
            "POST",
            f"/api/fiction/plans/{plan}/backlog/vision-plan/resume",
            {"agent_id": world.author_agent, "provider": "offline", "model": "m", "notes": "go\x00"},
            ["body", "notes"],
        ),
        ("POST", "/api/alert-routes/test", {"labels": {"alert_id": "x\x00"}}, ["body", "labels", "alert_id"]),
        (
            "POST",
            "/api/silences",
            {"matchers": ['a="1"'], "ends_at": "2030-01-01T00:00:00Z", "comment": "c\x00"},
            ["body", "comment"],
        ),
    ]


def test_every_body_model_refuses_nul(client: TestClient, world: World, admin: dict[str, str]) -> None:
    for method, path, payload, loc in body_cases(world):
        body = refused(client.request(method, path, json=payload, headers=admin))
        assert loc in locs(body), (path, body)
        assert any("NUL" in e["msg"] for e in body["errors"]), (path, body)
