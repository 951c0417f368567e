"""Plans, their backlog items, action log and roster (docs/reference/payloads.md)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from storyloom.api.schemas import Body, OpenBody, Timestamp

ItemStatus = Literal["pending", "in_progress", "complete", "blocked", "failed", "cancelled"]


class Plan(Body):
    plan_id: str
    project_id: str
    name: str
    premise: str
    persona_id: str = Field(description="the author persona")
    agent_id: str
    branch_slug: str
    provider: str
    model: str
    status: str = Field(description="in_progress, complete, ...")
    created_at: Timestamp
    updated_at: Timestamp
    completed_at: Timestamp | None
    counts: dict[str, int] = Field(description="backlog items per status (statuses with none are absent)")


class Checkpoint(Body):
    phase_key: str
    phase: str
    status: str
    locked_by_agent: str | None
    task_id: str | None
    last_step: str | None
    updated_at: Timestamp


class PlanDetail(Plan):
    checkpoints: list[Checkpoint] = Field(description="one per phase run, in creation order")


class BacklogItem(Body):
    backlog_id: str
    plan_id: str
    description: str
    phase: str = Field(
        description="vision, world_bible, iterative, chapter_architect, scroll_refiner, scene_weaver"
    )
    status: ItemStatus
    inputs: list[str] = Field(description="what it needs: it runs when every item producing one is complete")
    outputs: list[str]
    agent_id: str
    persona_id: str
    provider: str
    model: str
    task_id: str | None = Field(description="its latest run")
    attempts: int
    last_error: str | None
    branch_slug: str
    created_at: Timestamp
    updated_at: Timestamp
    in_progress_at: Timestamp | None
    completed_at: Timestamp | None


class BacklogAction(OpenBody):
    """An action-log entry (`fiction.backlog.action`): the members its action recorded, and `time`."""

    action: str = Field(description="plan-create, resume, cancel, silence-create, replay, ...")
    time: Timestamp
    plan_id: str | None = None
    backlog_id: str | None = None
    description: str | None = None
    branch: str | None = None
    actor: str | None = Field(default=None, description="the token's name")
    actor_id: str | None = None
    source: str | None = Field(default=None, description="console, cli or api")
    agent_id: str | None = None
    persona_id: str | None = None
    provider: str | None = None
    model: str | None = None
    task_id: str | None = None
    status: str | None = None
    previous_status: str | None = None
    notes: str | None = None


class Character(Body):
    id: str
    plan_id: str
    persona_id: str | None
    agent_id: str | None
    name: str
    role: str
    track: bool
    importance: str
    summary: str
    created_at: Timestamp


class LoreRequirement(Body):
    plan_id: str
    slug: str
    title: str
    description: str
    status: str
    created_at: Timestamp
    updated_at: Timestamp
    fulfilled_at: Timestamp | None
    fulfilled_by: str | None


class WorldBibleEntry(Body):
    plan_id: str
    slug: str
    category: str
    name: str
    version: int
    active: bool
    content: dict[str, Any] = Field(description="the entry as the world-bible phase wrote it")
    created_at: Timestamp


class Roster(Body):
    characters: list[Character]
    lore_requirements: list[LoreRequirement]
    world_bible: list[WorldBibleEntry] = Field(description="the active version of each entry")


class Resumed(Body):
    backlog_item: BacklogItem
    task_id: str = Field(description="the new task that runs the item next")


class Cancelled(Body):
    backlog_item: BacklogItem
    cancelled_task_id: str | None = Field(
        description="the queued or running task that was stopped; null when none was live"
    )
