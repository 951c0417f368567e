"""What phases leave behind: a transcript per planner execution, tracked characters as persona + agent +
world-bible entry, versioned world-bible entries, and the roster that shows them."""

from __future__ import annotations

from itertools import groupby
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from storyloom.api.app import create_app
from storyloom.clock import FrozenClock
from storyloom.config import Config
from storyloom.domain.phases import slugify
from storyloom.pipeline import effects
from storyloom.runtime import Runtime
from storyloom.services.catalog import get_agent, get_persona
from storyloom.services.plans import get_item, get_plan, list_actions
from storyloom.store.db import Database
from storyloom.store.tables import characters, planner_executions, transcripts, world_bible_entries
from tests.conftest import make_config
from tests.support.engine import running, seed_plan
from tests.support.plan_seed import token
from tests.support.server import wait_for


def _rows(rt: Runtime, table: Any, *where: Any) -> list[dict[str, Any]]:
    with rt.db.read() as conn:
        return [dict(r) for r in conn.execute(select(table).where(*where).order_by(table.c.id)).mappings()]


def _plan(rt: Runtime, plan_id: str) -> dict[str, Any]:
    with rt.db.read() as conn:
        return get_plan(conn, plan_id)


def _complete_plan(db: Database, config: Config) -> tuple[Runtime, str]:
    """Run one small plan whose first vision attempt is malformed; returns the runtime and the plan id."""
    with running(db, config) as rt:
        plan_id = seed_plan(rt)

        wait_for(lambda: _plan(rt, plan_id)["status"] == "complete", timeout=90, message="the plan complete")
    return rt, plan_id


def test_a_run_stores_transcripts_cast_world_bible_versions_and_a_roster(db: Database) -> None:
    config = make_config(
        pipeline={"chapters": 1, "scenes_per_chapter": 1, "retry_backoff": "10ms"},
        llm={"faults": [{"phase": "vision", "mode": "malformed", "times": 1}]},
    )
    rt, plan_id = _complete_plan(db, config)

    # --- one transcript per execution: the prompt, then the answer (and any critique round-trips) ---
    executions = _rows(rt, planner_executions, planner_executions.c.plan_id == plan_id)
    turns = {
        key: [(t["role"], t["content"]) for t in group]
        for key, group in groupby(
            sorted(_rows(rt, transcripts), key=lambda t: (t["task_id"], t["attempt"], t["id"])),
            key=lambda t: (t["task_id"], t["attempt"]),
        )
    }
    assert set(turns) == {(e["task_id"], e["attempt"]) for e in executions}
    for conversation in turns.values():
        roles = [role for role, _ in conversation]
        assert roles == ["user", "assistant"] * (len(roles) // 2) and roles
    malformed, valid = [e for e in executions if e["backlog_id"] == "vision-plan"]
    assert (malformed["outcome"], valid["outcome"]) == ("failed", "success")
    bad_answer = turns[(malformed["task_id"], malformed["attempt"])][1][1]
    good_answer = turns[(valid["task_id"], valid["attempt"])][1][1]
    assert good_answer.startswith(bad_answer) and bad_answer != good_answer  # truncated, then whole
    assert "Smugglers map a sea that moves at night." in turns[(valid["task_id"], valid["attempt"])][0][1]

    # --- tracked characters: persona + agent + world-bible entry; the others only a character row ---
    plan = _plan(rt, plan_id)
    cast = _rows(rt, characters, characters.c.plan_id == plan_id)
    tracked = [c for c in cast if c["track"]]
    assert tracked and any(not c["track"] for c in cast)
    with rt.db.read() as conn:
        for character in tracked:
            persona = get_persona(conn, character["persona_id"])
            agent = get_agent(conn, character["agent_id"])
            assert (persona["name"], persona["kind"], persona["plan_id"]) == (
                character["name"],
                "character",
                plan_id,
            )
            assert (agent["persona_id"], agent["provider"], agent["model"]) == (
                persona["id"],
                plan["provider"],
                plan["model"],
            )
        created = {a["persona_id"] for a in list_actions(conn, plan_id) if a["action"] == "persona-create"}
    assert created == {c["persona_id"] for c in tracked}
    assert all(c["persona_id"] is None and c["agent_id"] is None for c in cast if not c["track"])

    # --- the world bible: vision wrote tracked characters (v1), the world_bible phase rewrote them (v2) ---
    bible = _rows(rt, world_bible_entries, world_bible_entries.c.plan_id == plan_id)
    for character in cast:
        versions = [
            (e["version"], e["active"])
            for e in bible
            if e["slug"] == f"characters:{slugify(character['name'])}"
        ]
        assert versions == ([(1, False), (2, True)] if character["track"] else [(1, True)])

    # --- the roster shows the cast with their personas and agents, and only the current bible ---
    client = TestClient(create_app(rt))
    response = client.get(f"/api/fiction/plans/{plan_id}/roster", headers=token(rt, "viewer"))
    assert response.status_code == 200
    roster = response.json()
    assert {(c["name"], c["track"], c["persona_id"], c["agent_id"]) for c in roster["characters"]} == {
        (c["name"], c["track"], c["persona_id"], c["agent_id"]) for c in cast
    }
    assert sorted(e["slug"] for e in roster["world_bible"]) == sorted(e["slug"] for e in bible if e["active"])
    assert all(e["active"] for e in roster["world_bible"])
    assert {r["status"] for r in roster["lore_requirements"]} == {"ready"} and roster["lore_requirements"]


def _world_bible(place_summary: str) -> dict[str, Any]:
    entry = {"status": "active", "continuity_notes": []}
    return {
        "characters": [{"name": "Mara Quell", "summary": "A cartographer.", **entry}],
        "locations": [{"name": "Saltmarsh", "summary": place_summary, **entry}],
        "systems": [],
    }


def test_a_second_world_bible_write_makes_version_2_and_retires_version_1(
    rt: Runtime, clock: FrozenClock
) -> None:
    plan_id = seed_plan(rt)
    for summary in ("A marsh.", "A marsh that floods at the spring tide."):
        with rt.db.begin() as conn:
            item = get_item(conn, plan_id, "world-bible")
            effects.apply(
                conn, get_plan(conn, plan_id), item, "task_wb", _world_bible(summary), rt.config, clock.now()
            )

    place = _rows(
        rt,
        world_bible_entries,
        world_bible_entries.c.plan_id == plan_id,
        world_bible_entries.c.slug == "locations:saltmarsh",
    )
    assert [(e["version"], e["active"], e["content"]["summary"]) for e in place] == [
        (1, False, "A marsh."),
        (2, True, "A marsh that floods at the spring tide."),
    ]
    client = TestClient(create_app(rt))
    roster = client.get(f"/api/fiction/plans/{plan_id}/roster", headers=token(rt, "viewer")).json()
    assert [(e["slug"], e["version"]) for e in roster["world_bible"]] == [
        ("characters:mara-quell", 2),
        ("locations:saltmarsh", 2),
    ]
