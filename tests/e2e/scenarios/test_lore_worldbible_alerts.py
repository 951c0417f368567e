"""Lore, world-bible, orphan and template alerts, end to end.

The module's server invents lore needs that stay `planned` (`llm.offline_lore_status`), and their SLA is an
hour, so every plan stops at the lore gate before its scroll: the cause of `planner:phase-blocked` and
`lore:blocked`, and a plan that stays running for `worldbible:stale`. A one-second `pipeline.lore_sla`
is the fix (the test edits the config file, the runbook's Fix reloads it): the scheduler fulfils the
lore, releases the items and the plan completes.

`backlog:orphaned`, `worldbible:missing` and the template alerts have causes no API can produce (a task
row, world-bible rows or template rows gone or deactivated), so those tests change rows of the server's
own database directly. The orphan's runbook fixes it with a resume; for the others the test puts the
rows back, standing in for the runbook's manual step (a restart, a database change by the pipeline
owner).
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete, insert, select, update

from storyloom.store.tables import planner_templates, tasks, world_bible_entries
from tests.support.scenario import ABSENT, MODEL, PRESENT, Scenario

pytestmark = pytest.mark.slow

SCENARIO_CONFIG = {"llm": {"offline_lore_status": "planned"}, "pipeline": {"lore_sla": "1h"}}
LORE_DUE = {"pipeline": {"lore_sla": "1s"}}  # the fix: lore past this SLA is fulfilled automatically


def plan_labels(scenario: Scenario, plan_id: str) -> dict[str, Any]:
    persona_id, agent_id = scenario.author
    return {"plan_id": plan_id, "agent_id": agent_id, "persona_id": persona_id, "backlog_id": ABSENT}


def blocked_plan(scenario: Scenario, name: str) -> tuple[str, dict[str, Any]]:
    plan_id = scenario.create_plan(name)
    return plan_id, scenario.wait_item(plan_id, "scroll-1", "blocked")


def test_phase_blocked_fires_at_the_lore_gate_and_resolves_when_the_lore_is_ready(scenario: Scenario) -> None:
    scenario.configure()
    plan_id, item = blocked_plan(scenario, "Phase blocked")
    persona_id, agent_id = scenario.author

    firing = scenario.wait_firing(
        "planner:phase-blocked",
        {
            "plan_id": plan_id,
            "backlog_id": "scroll-1",
            "task_id": item["task_id"],
            "phase": "scroll_refiner",
            "agent_id": agent_id,
            "persona_id": persona_id,
            "provider": "offline",
            "model": MODEL,
            "gate": "lore",
        },
    )
    assert "lore gate" in firing.alert["description"]

    scenario.follow_runbook(firing, manual_fix=lambda: scenario.configure(LORE_DUE))
    scenario.wait_plan(plan_id)


def test_lore_blocked_fires_for_a_plan_held_by_unready_lore_and_resolves_when_it_is_fulfilled(
    scenario: Scenario,
) -> None:
    scenario.configure()
    plan_id, _ = blocked_plan(scenario, "Lore blocked")

    firing = scenario.wait_firing("lore:blocked", plan_labels(scenario, plan_id))
    assert "lore" in firing.alert["description"]

    scenario.follow_runbook(firing, manual_fix=lambda: scenario.configure(LORE_DUE))
    scenario.wait_plan(plan_id)


def test_worldbible_stale_fires_for_a_running_plan_with_an_old_world_bible_and_resolves_when_it_completes(
    scenario: Scenario,
) -> None:
    stale_after = {"health": {"worldbible_stale": "2s"}}
    scenario.configure(stale_after)
    plan_id, _ = blocked_plan(scenario, "World bible stale")  # the plan stays in progress

    firing = scenario.wait_firing("worldbible:stale", plan_labels(scenario, plan_id))

    # what holds the plan is its lore (lore-blocked.md): fixed, the plan moves on and completes
    scenario.follow_runbook(firing, manual_fix=lambda: scenario.configure({**stale_after, **LORE_DUE}))
    scenario.wait_plan(plan_id)


def test_orphaned_fires_when_an_items_task_is_gone_and_resolves_when_it_is_resumed(
    scenario: Scenario,
) -> None:
    """Direct SQL: no API deletes a task row. The blocked scroll item keeps its task id; deleting that
    task orphans the item, and the runbook's resume gives it a new task."""
    scenario.configure()
    plan_id, item = blocked_plan(scenario, "Orphaned")
    task_id = item["task_id"]
    with scenario.database() as conn:
        conn.execute(delete(tasks).where(tasks.c.task_id == task_id))
    firing = scenario.wait_firing(
        "backlog:orphaned",
        {
            "plan_id": plan_id,
            "backlog_id": "scroll-1",
            "task_id": task_id,
            "phase": "scroll_refiner",
            "agent_id": scenario.author[1],
            "persona_id": scenario.author[0],
            "provider": "offline",
            "model": MODEL,
        },
    )
    assert task_id in firing.alert["description"]

    scenario.follow_runbook(firing)
    scenario.configure(LORE_DUE)  # the resumed item stopped at the lore gate again
    scenario.wait_plan(plan_id)


def test_worldbible_missing_fires_without_active_entries_and_resolves_when_they_are_back(
    scenario: Scenario,
) -> None:
    """Direct SQL: no API deactivates world-bible entries. The plan is past its world-bible phase; its
    entries are deactivated, then reactivated."""
    scenario.configure(LORE_DUE)
    plan_id = scenario.create_plan("World bible missing")
    scenario.wait_plan(plan_id)
    with scenario.database() as conn:
        active = world_bible_entries.c.plan_id == plan_id, world_bible_entries.c.active.is_(True)
        ids = list(conn.execute(select(world_bible_entries.c.id).where(*active)).scalars())
        assert ids, "the plan has no world-bible entry to deactivate"
        conn.execute(
            update(world_bible_entries).where(world_bible_entries.c.id.in_(ids)).values(active=False)
        )
    firing = scenario.wait_firing("worldbible:missing", plan_labels(scenario, plan_id))

    def restore_the_entries() -> None:  # the pipeline owner's repair (the runbook escalates)
        with scenario.database() as conn:
            conn.execute(
                update(world_bible_entries).where(world_bible_entries.c.id.in_(ids)).values(active=True)
            )

    scenario.follow_runbook(firing, manual_fix=restore_the_entries)


def test_template_missing_fires_critical_when_a_planner_template_is_gone_and_resolves_when_restored(
    scenario: Scenario,
) -> None:
    """Direct SQL: no API deletes a planner template. Every version of the Scene Weaver's template is
    deleted, then inserted back as it was."""
    scenario.configure()
    template_id = "planner.fiction.sceneWeaver"
    with scenario.database() as conn:
        where = planner_templates.c.template_id == template_id
        saved = [dict(r) for r in conn.execute(select(planner_templates).where(where)).mappings()]
        assert saved, f"{template_id} is not seeded"
        conn.execute(delete(planner_templates).where(where))
    firing = scenario.wait_firing(
        "planner:template-missing",
        {"template_id": template_id, "step_id": "scene-draft", "plan_id": ABSENT},
        severity="critical",
    )
    assert template_id in firing.alert["description"]

    def restore_the_template() -> None:  # what the runbook's reinstall and restart do: seed it again
        with scenario.database() as conn:
            conn.execute(insert(planner_templates), saved)

    scenario.follow_runbook(firing, manual_fix=restore_the_template)


def test_template_inactive_fires_when_a_planner_template_is_deactivated_and_resolves_when_reactivated(
    scenario: Scenario,
) -> None:
    """Direct SQL: no API deactivates a planner template. The Chapter Architect's active versions are
    deactivated, then activated again."""
    scenario.configure()
    template_id = "planner.fiction.chapterArchitect"
    with scenario.database() as conn:
        active = planner_templates.c.template_id == template_id, planner_templates.c.active.is_(True)
        ids = list(conn.execute(select(planner_templates.c.id).where(*active)).scalars())
        assert ids, f"{template_id} has no active version"
        conn.execute(update(planner_templates).where(planner_templates.c.id.in_(ids)).values(active=False))
    firing = scenario.wait_firing(
        "planner:template-inactive",
        {"template_id": template_id, "step_id": PRESENT, "plan_id": ABSENT},
    )
    assert firing.labels["step_id"] == "chapter-blueprint"

    def activate_the_template() -> None:  # the runbook's database change by the pipeline owner
        with scenario.database() as conn:
            conn.execute(update(planner_templates).where(planner_templates.c.id.in_(ids)).values(active=True))

    scenario.follow_runbook(firing, manual_fix=activate_the_template)
