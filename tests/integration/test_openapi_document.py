"""The OpenAPI document explains and types every operation, and what the API answers matches it.

The walk fails on an operation without a summary or description, on an untyped 2xx JSON body (a bare
object, or one with only `additionalProperties`) and on a mutating operation without a 4xx problem
response. Then every typed operation is called on a populated database and its answer is validated
against the document: the response models forbid other members, so a member added, dropped or renamed
without the model is caught here.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from jsonschema import Draft202012Validator, FormatChecker
from sqlalchemy import insert

from storyloom.api.app import create_app
from storyloom.clock import FrozenClock
from storyloom.config import load_config
from storyloom.runtime import Runtime
from storyloom.store.db import Database
from storyloom.store.set_aside import set_aside
from storyloom.store.tables import characters, lore_requirements
from tests.support.deliveries import enqueue, make_alert
from tests.support.health_seed import add_execution, add_world_bible_entry, raise_alert, set_item
from tests.support.plan_seed import World, iso, seed_world, token

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"
MUTATING = {"post", "put", "patch", "delete"}
PROBLEM = "application/problem+json"
FORMATS = FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def utc_timestamp(value: object) -> bool:
    """What `Timestamp` promises: an RFC 3339 time in UTC."""
    return not isinstance(value, str) or datetime.fromisoformat(value).utcoffset() == timedelta(0)


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            yield method, path, operation


def resolved(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    return document["components"]["schemas"][ref.rsplit("/", 1)[-1]] if ref else schema


def untyped(document: dict[str, Any], schema: dict[str, Any]) -> bool:
    """A bare object (or no schema at all), an object with only `additionalProperties`, or an array of those."""
    schema = resolved(document, schema)
    if schema.get("type") == "array":
        return untyped(document, schema.get("items", {}))
    return "properties" not in schema and "anyOf" not in schema


@pytest.fixture
def document(client: TestClient) -> dict[str, Any]:
    body: dict[str, Any] = client.get("/openapi.json").json()
    return body


def test_every_operation_is_explained_typed_and_declares_its_problems(document: dict[str, Any]) -> None:
    for method, path, operation in operations(document):
        where = (method, path)
        assert operation.get("summary") and operation.get("description"), where
        responses = operation["responses"]
        for status, response in responses.items():
            json_body = response.get("content", {}).get("application/json")
            if status.startswith("2") and json_body is not None:
                assert not untyped(document, json_body.get("schema", {})), (*where, status)
        if method in MUTATING:
            problems = [
                s for s, r in responses.items() if s.startswith("4") and PROBLEM in r.get("content", {})
            ]
            assert problems, where


def test_the_walk_catches_untyped_bodies(document: dict[str, Any]) -> None:
    assert untyped(document, {"type": "object", "additionalProperties": True})
    assert untyped(document, {"type": "array", "items": {"type": "object"}})
    assert untyped(document, {})
    assert not untyped(document, {"$ref": "#/components/schemas/Silence"})


# --- real answers against the document ------------------------------------------------------------------


@pytest.fixture
def world_rt(db: Database, clock: FrozenClock, tmp_path: Path) -> Runtime:
    """The team example config (routes, inhibit rules, SLO thresholds, three receiver types), demo on."""
    shutil.copytree(EXAMPLES / "secrets", tmp_path / "secrets")
    path = tmp_path / "storyloom.yaml"
    shutil.copy(EXAMPLES / "team.yaml", path)
    return Runtime(config=load_config(path), db=db, clock=clock, config_path=path, demo=True)


class Checker:
    """Calls the API and validates each answer against the operation's declared response."""

    def __init__(self, rt: Runtime, client: TestClient, document: dict[str, Any]) -> None:
        self.client = client
        self.document = document
        self.roles = {role: token(rt, role) for role in ("viewer", "operator", "admin")}
        self.checked: set[tuple[str, str]] = set()

    def call(self, method: str, template: str, status: int, role: str = "admin", **values: Any) -> Any:
        body = values.pop("json", None)
        url = template.format(**values)
        response = self.client.request(method, url, json=body, headers=self.roles[role])
        assert response.status_code == status, (method, url, response.text)
        declared = self.document["paths"][template][method.lower()]["responses"][str(status)]
        media = response.headers["content-type"].split(";")[0]
        schema = {**declared["content"][media]["schema"], "components": self.document["components"]}
        validator = Draft202012Validator(schema, format_checker=FORMATS)
        answer = response.json()
        problems = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(answer)]
        assert not problems, (
            f"{method} {url} answers what its model in storyloom/api/schemas does not say: {problems}"
        )
        if status < 300:
            self.checked.add((method.lower(), template))
        return answer


def populate(rt: Runtime) -> World:
    """A plan with obligations, characters, lore, a world-bible entry, a failed execution, an orphaned item,
    a raised alert, a delivery and a set-aside row."""
    world = seed_world(rt)
    now = rt.clock.now()
    with rt.db.begin() as conn:
        conn.execute(
            insert(characters).values(
                id="char_mara",
                plan_id=world.plan_id,
                persona_id=world.character_persona,
                agent_id=world.character_agent,
                name="Mara",
                role="lamplighter",
                track=True,
                importance="major",
                summary="keeps the dark at bay",
                created_at=now,
            )
        )
        conn.execute(
            insert(lore_requirements).values(
                plan_id=world.plan_id,
                slug="guild",
                title="The guild",
                description="who lights the lamps",
                status="open",
                created_at=now,
                updated_at=now,
            )
        )
        set_aside(conn, "delivery", "dlv_poisoned", "ValueError: unreadable", now)
    add_world_bible_entry(rt, world.plan_id)
    add_execution(rt, world.plan_id, outcome="failed", error="the provider timed out")
    set_item(rt, world.plan_id, "world-bible", status="in_progress", task_id="task_gone", in_progress_at=now)
    raise_alert(rt, "planner:phase-failed", {"plan_id": world.plan_id, "backlog_id": "vision-plan"})
    enqueue(rt, "ops-webhook", make_alert(now, plan_id=world.plan_id))
    return world


def test_every_typed_answer_matches_the_document(world_rt: Runtime) -> None:
    rt = world_rt
    world = populate(rt)
    client = TestClient(create_app(rt))
    check = Checker(rt, client, client.get("/openapi.json").json())
    plan = world.plan_id
    now = rt.clock.now()

    check.call("GET", "/healthz", 200)
    check.call("GET", "/readyz", 200)
    persona = check.call(
        "POST", "/api/personas", 201, json={"name": "Ines", "kind": "author", "summary": "writes sagas"}
    )
    check.call("POST", "/api/agents", 201, json={"name": "Ines agent", "persona_id": persona["id"]})
    check.call("GET", "/api/personas", 200)
    check.call("GET", "/api/agents", 200)

    created = check.call(
        "POST",
        "/api/fiction/plans",
        201,
        role="operator",
        json={"name": "Salt Roads", "premise": "Salt is money.", "persona_id": world.author_persona},
    )
    check.call("GET", "/api/fiction/plans", 200)
    check.call("GET", "/api/fiction/plans/{plan_id}", 200, plan_id=created["plan_id"])
    item = "/api/fiction/plans/{plan_id}/backlog/{backlog_id}"
    check.call(
        "POST", item + "/cancel", 200, role="operator", plan_id=plan, backlog_id="vision-plan",
        json={"agent_id": world.author_agent, "notes": "wrong premise"},
    )  # fmt: skip
    check.call(
        "POST", item + "/resume", 202, role="operator", plan_id=plan, backlog_id="vision-plan",
        json={"agent_id": world.author_agent, "provider": "offline", "model": "m1"},
    )  # fmt: skip
    check.call("GET", "/api/fiction/plans/{plan_id}/backlog", 200, plan_id=plan)
    check.call("GET", "/api/fiction/plans/{plan_id}/roster", 200, plan_id=plan)

    obligation = "/api/fiction/plans/{plan_id}/persona-obligations/{obligation_id}"
    first, second = world.obligations
    check.call(
        "POST", obligation + "/resolve", 200, role="operator", plan_id=plan, obligation_id=first,
        json={"action": "resolve", "notes": "the lantern was delivered", "agent_id": world.character_agent},
    )  # fmt: skip
    check.call(
        "POST", obligation + "/voice-drift", 200, role="operator", plan_id=plan, obligation_id=second,
        json={"voice_drift": True, "agent_id": world.character_agent},
    )  # fmt: skip
    check.call("GET", "/api/fiction/plans/{plan_id}/persona-obligations", 200, plan_id=plan)

    ingested = check.call(
        "POST",
        "/api/v2/alerts",
        200,
        role="operator",
        json=[
            {"labels": {"alertname": "DiskFull", "severity": "warning"}, "annotations": {"summary": "disk"}}
        ],
    )
    check.call(
        "POST", "/api/v2/alerts", 422, role="operator", json=[{"labels": {"alertname": "x"}}, {"labels": {}}]
    )
    check.call("GET", "/api/alerts", 200)
    check.call("GET", "/api/alerts/{fingerprint}", 200, fingerprint=ingested["fired"][0])

    silence = check.call(
        "POST",
        "/api/silences",
        201,
        role="operator",
        json={
            "matchers": [f'plan_id="{plan}"'],
            "ends_at": iso(now + timedelta(hours=1)),
            "comment": "known",
        },
    )
    check.call("GET", "/api/silences", 200)
    check.call("GET", "/api/silences/{silence_id}", 200, silence_id=silence["id"])
    check.call("DELETE", "/api/silences/{silence_id}", 200, role="operator", silence_id=silence["id"])

    check.call("GET", "/api/alert-routes", 200)
    check.call("POST", "/api/alert-routes/test", 200, json={"labels": {"alert_id": "obligation:aging"}})
    deliveries = check.call("GET", "/api/deliveries", 200)
    check.call("GET", "/api/deliveries/{delivery_id}", 200, delivery_id=deliveries[0]["id"])
    check.call(
        "POST", "/api/deliveries/{delivery_id}/replay", 202, role="operator", delivery_id=deliveries[0]["id"]
    )

    client.post("/api/demo/receiver", json={"type": "storyloom.alerts"})  # unsigned: kept, answered 401
    check.call("GET", "/api/demo/inbox", 200)
    check.call("GET", "/api/set-aside", 200)
    report = check.call("GET", "/api/diagnostics/planner", 200)
    assert report["telemetry"]["recent_failures"] and report["backlog"]["orphaned_items"]
    check.call("POST", "/api/config/reload", 200)
    actions = check.call("GET", "/api/fiction/plans/{plan_id}/backlog/actions", 200, plan_id=plan)
    assert {"cancel", "resume", "silence-create", "silence-expire", "replay"} <= {
        a["action"] for a in actions
    }

    typed = {
        (method, path)
        for method, path, operation in operations(check.document)
        if any(
            status.startswith("2") and "application/json" in response.get("content", {})
            for status, response in operation["responses"].items()
        )
    }
    assert typed - check.checked == set()
