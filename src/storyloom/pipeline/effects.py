"""What each phase's validated output does to the plan: artifacts, cast, world bible, lore, obligations, new items."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, func, insert, select, update

from storyloom.backlog.cast import SYSTEM_AUDIT, insert_agent, insert_persona
from storyloom.backlog.items import add_items
from storyloom.backlog.obligations import emit_hook
from storyloom.config import Config
from storyloom.domain import backlog as bl
from storyloom.domain import phases as ph
from storyloom.ids import new_id
from storyloom.store.tables import (
    artifacts,
    backlog_items,
    characters,
    lore_requirements,
    plans,
    world_bible_entries,
)


@dataclass(frozen=True)
class PhaseOutput:
    """A validated phase output and where it lands: what every phase effect works with."""

    conn: Connection
    plan: dict[str, Any]
    item: dict[str, Any]
    task_id: str
    output: Any
    cfg: Config
    now: datetime


Effect = Callable[[PhaseOutput], list[str]]


def apply(
    conn: Connection,
    plan: dict[str, Any],
    item: dict[str, Any],
    task_id: str,
    output: Any,
    cfg: Config,
    now: datetime,
) -> list[str]:
    """Store the output as a versioned artifact, then run the phase's side effects."""
    key = (
        item["backlog_id"].removesuffix("-plan")
        if item["phase"] in ("vision", "iterative")
        else item["backlog_id"]
    )
    key = {"vision": "vision", "iteration": "iteration"}.get(key, key)
    version = (
        conn.execute(
            select(func.max(artifacts.c.version)).where(
                artifacts.c.plan_id == plan["id"], artifacts.c.key == key
            )
        ).scalar()
        or 0
    ) + 1
    conn.execute(
        insert(artifacts).values(
            plan_id=plan["id"],
            backlog_id=item["backlog_id"],
            kind=item["phase"],
            key=key,
            version=version,
            content=output,
            task_id=task_id,
            created_at=now,
        )
    )
    return _EFFECTS[item["phase"]](PhaseOutput(conn, plan, item, task_id, output, cfg, now))


def _vision(ctx: PhaseOutput) -> list[str]:
    vision = ph.VisionPlan.model_validate(ctx.output)
    for member in vision.cast():
        persona_id, character_id = _character(ctx.conn, ctx.plan, member, ctx.now)
        for hook in member.continuity_hooks:
            _obligation(ctx, hook, persona_id, character_id)
    plan_id = ctx.plan["id"]
    for need in vision.lore_needs:
        exists = ctx.conn.execute(
            select(lore_requirements.c.id).where(
                lore_requirements.c.plan_id == plan_id, lore_requirements.c.slug == need.requirement_slug
            )
        ).first()
        if exists is None:
            ctx.conn.execute(
                insert(lore_requirements).values(
                    plan_id=plan_id,
                    slug=need.requirement_slug,
                    title=need.title,
                    description=need.description,
                    status=need.status,
                    created_at=ctx.now,
                    updated_at=ctx.now,
                    fulfilled_at=ctx.now if need.status == "ready" else None,
                )
            )
    return []


def _obligation(ctx: PhaseOutput, hook: ph.ContinuityHook, persona_id: str, character_id: str | None) -> None:
    """A continuity hook the phase emitted becomes (or reopens) its persona's obligation."""
    emit_hook(
        ctx.conn,
        plan_id=ctx.plan["id"],
        persona_id=persona_id,
        character_id=character_id,
        slug=hook.slug,
        title=hook.title,
        description=hook.description,
        source_phase=ctx.item["phase"],
        source_backlog_id=ctx.item["backlog_id"],
        branch_slug=ctx.plan["branch_slug"],
        now=ctx.now,
    )


def _character(
    conn: Connection, plan: dict[str, Any], member: ph.CastMember, now: datetime
) -> tuple[str, str | None]:
    """A cast member's character row; tracked ones get a persona, an agent and a world-bible entry."""
    row = (
        conn.execute(
            select(characters).where(characters.c.plan_id == plan["id"], characters.c.name == member.name)
        )
        .mappings()
        .first()
    )
    if row is not None:
        return row["persona_id"] or plan["persona_id"], row["id"]
    persona_id, agent_id = plan["persona_id"], None
    if member.track:
        persona = insert_persona(
            conn,
            name=member.name,
            kind="character",
            summary=member.summary,
            plan_id=plan["id"],
            now=now,
            audit=SYSTEM_AUDIT,
        )
        agent = insert_agent(
            conn,
            name=f"{member.name} agent",
            persona=persona,
            provider=plan["provider"],
            model=plan["model"],
            now=now,
            audit=SYSTEM_AUDIT,
        )
        persona_id, agent_id = persona["id"], agent["id"]
        _bible_entry(
            conn,
            plan["id"],
            "characters",
            member.name,
            {
                "name": member.name,
                "summary": member.summary,
                "status": "active",
                "continuity_notes": [h.title for h in member.continuity_hooks],
            },
            now,
        )
    character_id = new_id("char")
    conn.execute(
        insert(characters).values(
            id=character_id,
            plan_id=plan["id"],
            persona_id=persona_id if member.track else None,
            agent_id=agent_id,
            name=member.name,
            role=member.role,
            track=member.track,
            importance=member.importance,
            summary=member.summary,
            created_at=now,
        )
    )
    return persona_id, character_id


def _bible_entry(
    conn: Connection, plan_id: str, category: str, name: str, content: dict[str, Any], now: datetime
) -> None:
    """Add a new version of `<category>:<name>`, deactivating the previous one."""
    slug = f"{category}:{ph.slugify(name)}"
    current = (
        conn.execute(
            select(func.max(world_bible_entries.c.version)).where(
                world_bible_entries.c.plan_id == plan_id, world_bible_entries.c.slug == slug
            )
        ).scalar()
        or 0
    )
    conn.execute(
        update(world_bible_entries)
        .where(world_bible_entries.c.plan_id == plan_id, world_bible_entries.c.slug == slug)
        .values(active=False)
    )
    conn.execute(
        insert(world_bible_entries).values(
            plan_id=plan_id,
            slug=slug,
            category=category,
            name=name,
            version=current + 1,
            active=True,
            content=content,
            created_at=now,
        )
    )


def _world_bible(ctx: PhaseOutput) -> list[str]:
    bible = ph.WorldBible.model_validate(ctx.output)
    for category, entry in bible.entries():
        _bible_entry(ctx.conn, ctx.plan["id"], category, entry.name, entry.model_dump(mode="json"), ctx.now)
    return []


def _iterative(ctx: PhaseOutput) -> list[str]:
    chapters = bl.chapter_items(ctx.cfg.pipeline.chapters)
    return add_items(ctx.conn, ctx.plan, chapters, ctx.now, reason="vision-sync")


def _chapter(ctx: PhaseOutput) -> list[str]:
    return add_items(ctx.conn, ctx.plan, [bl.scroll_item(ctx.item["chapter"])], ctx.now, reason="vision-sync")


def _scroll(ctx: PhaseOutput) -> list[str]:
    scroll = ph.ScrollPlan.model_validate(ctx.output)
    for hook in ph.hooks_in(scroll):
        _obligation(ctx, hook, _hook_persona(ctx.conn, ctx.plan, hook.character), None)
    scenes = max(1, min(ctx.cfg.pipeline.scenes_per_chapter, len(scroll.scenes()) or 1))
    return add_items(
        ctx.conn, ctx.plan, bl.scene_items(ctx.item["chapter"], scenes), ctx.now, reason="vision-sync"
    )


def _hook_persona(conn: Connection, plan: dict[str, Any], character: str | None) -> str:
    if character:
        persona = conn.execute(
            select(characters.c.persona_id).where(
                characters.c.plan_id == plan["id"], characters.c.name == character
            )
        ).scalar()
        if persona:
            return str(persona)
    return str(plan["persona_id"])


def _scene(ctx: PhaseOutput) -> list[str]:
    """Scene prose is kept as the versioned artifact `apply` stores; it adds no items."""
    return []


_EFFECTS: dict[str, Effect] = {
    "vision": _vision,
    "world_bible": _world_bible,
    "iterative": _iterative,
    "chapter_architect": _chapter,
    "scroll_refiner": _scroll,
    "scene_weaver": _scene,
}


def complete_plan_if_done(conn: Connection, plan: dict[str, Any], now: datetime) -> bool:
    """A plan is complete when it has scene items and every item is complete (the caller holds the plan's lock:
    see `PhaseRunner.complete`)."""
    counts: dict[str, int] = dict(
        conn.execute(
            select(backlog_items.c.status, func.count())
            .where(backlog_items.c.plan_id == plan["id"])
            .group_by(backlog_items.c.status)
        ).all()
    )
    has_scenes = conn.execute(
        select(backlog_items.c.id)
        .where(backlog_items.c.plan_id == plan["id"], backlog_items.c.phase == "scene_weaver")
        .limit(1)
    ).first()
    done = has_scenes is not None and set(counts) == {bl.COMPLETE}
    if done and plan["status"] != "complete":
        conn.execute(
            update(plans)
            .where(plans.c.id == plan["id"])
            .values(status="complete", completed_at=now, updated_at=now)
        )
    return done
