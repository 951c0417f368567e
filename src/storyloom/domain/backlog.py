"""The backlog state machine (DOMAIN.md "Backlog"): statuses, reasons, readiness, seeded items."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

PENDING, IN_PROGRESS, COMPLETE, BLOCKED, FAILED, CANCELLED = (
    "pending",
    "in_progress",
    "complete",
    "blocked",
    "failed",
    "cancelled",
)
STATUSES = (PENDING, IN_PROGRESS, COMPLETE, BLOCKED, FAILED, CANCELLED)
PHASES = ("vision", "world_bible", "iterative", "chapter_architect", "scroll_refiner", "scene_weaver")
REASONS = (
    "plan-created",
    "vision-sync",
    "phase-start",
    "phase-complete",
    "phase-blocked",
    "phase-failed",
    "cancel-requested",
    "resume",
    "auto-resume",
    "retry",
)

_ALLOWED: dict[str, set[str]] = {
    PENDING: {IN_PROGRESS, BLOCKED, CANCELLED},
    IN_PROGRESS: {COMPLETE, BLOCKED, FAILED, PENDING, CANCELLED},
    BLOCKED: {PENDING, IN_PROGRESS, CANCELLED},
    FAILED: {PENDING, CANCELLED},
    CANCELLED: {PENDING},
    COMPLETE: set(),
}


class TransitionError(ValueError):
    """A status change the state machine does not allow."""


@dataclass(frozen=True)
class Transition:
    """The column changes of one status change plus the telemetry event it must write."""

    values: dict[str, Any]
    event: dict[str, Any]


def transition(item: Mapping[str, Any], to: str, reason: str, now: datetime, **extra: Any) -> Transition:
    """Apply the timestamp rules: in_progress sets in_progress_at, complete sets completed_at, pending clears both."""
    current = item["status"]
    if to not in _ALLOWED.get(current, set()) and not (current == to == PENDING and reason == "resume"):
        raise TransitionError(f"backlog item {item['backlog_id']} cannot go from {current} to {to}")
    if reason not in REASONS:
        raise TransitionError(f"unknown transition reason {reason!r}")
    values: dict[str, Any] = {"status": to, "updated_at": now, **extra}
    if to == IN_PROGRESS:
        values["in_progress_at"] = now
    elif to == COMPLETE:
        values["completed_at"] = now
    elif to == PENDING:
        values["in_progress_at"] = None
        values["completed_at"] = None
    event = {
        "plan_id": item["plan_id"],
        "backlog_id": item["backlog_id"],
        "phase": item["phase"],
        "status": to,
        "previous_status": current,
        "reason": reason,
        "branch": item.get("branch_slug", "main"),
        "task_id": values.get("task_id", item.get("task_id")),
    }
    return Transition(values, event)


def incomplete_inputs(inputs: Iterable[str], producer_status: Mapping[str, str]) -> list[str]:
    """The inputs produced by an item that is not `complete` (inputs no item produces count as satisfied)."""
    return [name for name in inputs if producer_status.get(name, COMPLETE) != COMPLETE]


def is_ready(inputs: Iterable[str], producer_status: Mapping[str, str]) -> bool:
    return not incomplete_inputs(inputs, producer_status)


def is_stale(status: str, updated_at: datetime, now: datetime, stale_after: timedelta) -> bool:
    return status == IN_PROGRESS and now - updated_at > stale_after


def is_flapping(returns_to_pending: Iterable[datetime], now: datetime, threshold: int) -> bool:
    """Returned to pending `threshold` or more times within the last 24 hours."""
    window_start = now - timedelta(hours=24)
    return sum(1 for at in returns_to_pending if at >= window_start) >= threshold


@dataclass(frozen=True)
class ItemSpec:
    """A backlog item to create: what a phase adds to its plan."""

    backlog_id: str
    phase: str
    description: str
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    chapter: int | None = None
    scene: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def seeded_items() -> list[ItemSpec]:
    """The three items every new plan starts with."""
    return [
        ItemSpec(
            "vision-plan", "vision", "Draft the book's vision: goals, cast, lore needs", (), ("vision",)
        ),
        ItemSpec(
            "world-bible",
            "world_bible",
            "Build the world bible from the vision",
            ("vision-plan",),
            ("world-bible",),
        ),
        ItemSpec(
            "iteration-plan",
            "iterative",
            "Plan iteration: adjustments, priorities, risks",
            ("world-bible",),
            ("iteration",),
        ),
    ]


def chapter_items(chapters: int) -> list[ItemSpec]:
    return [
        ItemSpec(
            f"chapter-{n}",
            "chapter_architect",
            f"Blueprint chapter {n}",
            ("iteration-plan",),
            (f"chapter-{n}",),
            chapter=n,
        )
        for n in range(1, chapters + 1)
    ]


def scroll_item(chapter: int) -> ItemSpec:
    return ItemSpec(
        f"scroll-{chapter}",
        "scroll_refiner",
        f"Refine chapter {chapter} into a scroll",
        (f"chapter-{chapter}",),
        (f"scroll-{chapter}",),
        chapter=chapter,
    )


def scene_items(chapter: int, scenes: int) -> list[ItemSpec]:
    return [
        ItemSpec(
            f"scene-{chapter}-{m}",
            "scene_weaver",
            f"Weave scene {m} of chapter {chapter}",
            (f"scroll-{chapter}",),
            (f"scene-{chapter}-{m}",),
            chapter=chapter,
            scene=m,
        )
        for m in range(1, scenes + 1)
    ]


def phase_key(phase: str, branch: str, chapter: int | None = None, scene: int | None = None) -> str:
    """Checkpoint key `phase|branch[|chapter:n][|scene:n-m]`."""
    key = f"{phase}|{branch}"
    if scene is not None and chapter is not None:
        return f"{key}|scene:{chapter}-{scene}"
    if chapter is not None:
        return f"{key}|chapter:{chapter}"
    return key
