"""What one planner attempt reads before it calls the LLM: the template, the prompt's context, the critique
spent so far, the lore gate, and what an attempt re-run after a crash already recorded."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, func, select

from storyloom.config import Config
from storyloom.domain import critique as cq
from storyloom.domain import phases as ph
from storyloom.pipeline.attempt import CANCELLED, OK, RETRY, AttemptOutcome, phase_output
from storyloom.pipeline.prompts import placeholders
from storyloom.store.tables import (
    artifacts,
    lore_requirements,
    persona_obligations,
    planner_executions,
    planner_templates,
    transcripts,
    world_bible_entries,
)

GATED_PHASES = ("scroll_refiner", "scene_weaver")


def lore_gate(conn: Connection, item: dict[str, Any]) -> str | None:
    if item["phase"] not in GATED_PHASES:
        return None
    unready = (
        conn.execute(
            select(lore_requirements.c.slug)
            .where(lore_requirements.c.plan_id == item["plan_id"], lore_requirements.c.status != "ready")
            .order_by(lore_requirements.c.slug)
        )
        .scalars()
        .all()
    )
    if not unready:
        return None
    return f"lore gate: requirements not ready: {', '.join(unready)}"


def recorded_attempt(conn: Connection, task_id: str, attempt: int, phase: str) -> AttemptOutcome | None:
    """What an attempt already recorded, when its step runs again after a crash; None if it never ran.

    Running it again could give another outcome (a fault that applied to the first run, a provider
    that answers differently) while its execution row keeps the first: the item would complete on an
    output no execution records. A recorded success is rebuilt from the answer in its transcript that
    gave the output (`diagnostics.output_answer`); failing that, the attempt runs again (its record is
    then a no-op).
    """
    row = conn.execute(
        select(
            planner_executions.c.outcome, planner_executions.c.error, planner_executions.c.diagnostics
        ).where(planner_executions.c.task_id == task_id, planner_executions.c.attempt == attempt)
    ).first()
    if row is None:
        return None
    if row.outcome == "cancelled":
        return AttemptOutcome(CANCELLED, error=row.error)
    if row.outcome == "failed":
        return AttemptOutcome((row.diagnostics or {}).get("kind", RETRY), error=row.error)
    answers = (
        conn.execute(
            select(transcripts.c.content)
            .where(
                transcripts.c.task_id == task_id,
                transcripts.c.attempt == attempt,
                transcripts.c.role == "assistant",
            )
            .order_by(transcripts.c.id)
        )
        .scalars()
        .all()
    )
    answer = int((row.diagnostics or {}).get("output_answer") or 0)
    if not 0 < answer <= len(answers):
        return None
    result = ph.validate_output(phase, answers[answer - 1])
    return AttemptOutcome(OK, output=phase_output(result)) if result.ok else None


def active_template(conn: Connection, template_id: str) -> str | None:
    return conn.execute(
        select(planner_templates.c.body)
        .where(planner_templates.c.template_id == template_id, planner_templates.c.active.is_(True))
        .order_by(planner_templates.c.version.desc())
        .limit(1)
    ).scalar()


def critique_usage(conn: Connection, plan_id: str, backlog_id: str) -> cq.CritiqueUsage:
    """Critique spent on this backlog item so far (all its tasks and attempts): budgets are per item."""
    total, tokens = conn.execute(
        select(
            func.coalesce(func.sum(planner_executions.c.critique_count), 0),
            func.coalesce(func.sum(planner_executions.c.critique_tokens), 0),
        ).where(planner_executions.c.plan_id == plan_id, planner_executions.c.backlog_id == backlog_id)
    ).one()
    return cq.CritiqueUsage(total=int(total), step=0, tokens=int(tokens))


def prompt_context(
    conn: Connection, plan: dict[str, Any], item: dict[str, Any], cfg: Config, template: str | None
) -> dict[str, Any]:
    """The template's placeholders (and what the offline provider reads), each loaded only when needed."""
    chapter, scene = item["chapter"] or 1, item["scene"] or 1
    plan_id = plan["id"]
    loaders: dict[str, Callable[[], Any]] = {
        "vision": lambda: latest_artifact(conn, plan_id, "vision") or {},
        "iteration": lambda: latest_artifact(conn, plan_id, "iteration") or {},
        "world_bible": lambda: [
            r.content
            for r in conn.execute(
                select(world_bible_entries.c.content).where(
                    world_bible_entries.c.plan_id == plan_id, world_bible_entries.c.active.is_(True)
                )
            )
        ],
        "previous_chapters": lambda: [
            latest_artifact(conn, plan_id, f"chapter-{n}") for n in range(1, chapter)
        ],
        "blueprint": lambda: latest_artifact(conn, plan_id, f"chapter-{chapter}") or {},
        "open_obligations": lambda: [
            {"slug": r.slug, "title": r.title}
            for r in conn.execute(
                select(persona_obligations.c.slug, persona_obligations.c.title)
                .where(persona_obligations.c.plan_id == plan_id, persona_obligations.c.status == "open")
                .order_by(persona_obligations.c.slug)
                .limit(20)
            )
        ],
    }
    ctx: dict[str, Any] = {
        "premise": plan["premise"],
        "plan_name": plan["name"],
        "project_title": plan["name"],
        "chapters": cfg.pipeline.chapters,
        "scenes_per_chapter": cfg.pipeline.scenes_per_chapter,
        "chapter_number": chapter,
        "scene_number": scene,
        "scene": {},
        "scroll_title": "",
        "section_title": "",
        "salient_terms": [],
    }
    wanted = (
        set(placeholders(template or "")) | {"open_obligations"}
        if item["phase"] in GATED_PHASES
        else set(placeholders(template or ""))
    )
    ctx.update({key: load() for key, load in loaders.items() if key in wanted})
    if item["phase"] == "scene_weaver":
        ctx.update(_scene_context(conn, plan_id, chapter, scene))
    return ctx


def _scene_context(conn: Connection, plan_id: str, chapter: int, scene: int) -> dict[str, Any]:
    scroll_data = latest_artifact(conn, plan_id, f"scroll-{chapter}")
    blueprint = latest_artifact(conn, plan_id, f"chapter-{chapter}") or {}
    if not scroll_data:
        return {}
    scroll = ph.ScrollPlan.model_validate(scroll_data)
    pairs = scroll.scenes()
    section, plan_scene = pairs[min(scene, len(pairs)) - 1]
    tracked = [
        r.name
        for r in conn.execute(
            select(world_bible_entries.c.name).where(
                world_bible_entries.c.plan_id == plan_id,
                world_bible_entries.c.category == "characters",
                world_bible_entries.c.active.is_(True),
            )
        )
    ]
    terms = ph.salient_terms_for_scene(
        scene_title=plan_scene.title,
        section_title=section.title,
        scroll_title=scroll.title,
        blueprint_title=blueprint.get("title"),
        tracked_characters=tracked,
        scene=plan_scene,
    )
    return {
        "scene": plan_scene.model_dump(mode="json"),
        "scroll_title": scroll.title,
        "section_title": section.title,
        "salient_terms": terms,
    }


def latest_artifact(conn: Connection, plan_id: str, key: str) -> Any:
    return conn.execute(
        select(artifacts.c.content)
        .where(artifacts.c.plan_id == plan_id, artifacts.c.key == key)
        .order_by(artifacts.c.version.desc())
        .limit(1)
    ).scalar()
