"""Backlog resume (CONTRACTS §4.2): 202 with the item and its new task, or problem+json with a `code`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from storyloom.api.auth import operator, runtime
from storyloom.runtime import Runtime
from storyloom.services import backlog
from storyloom.services.actors import Actor

router = APIRouter(prefix="/api/fiction/plans", tags=["backlog"])


class ResumeIn(BaseModel):
    """`agent_id`, `provider` and `model` are required by the contract; they are checked by the service
    (not here) so that leaving one out is recorded as a contract event (`missing-agent-or-provider`)."""

    model_config = ConfigDict(extra="forbid")
    agent_id: str | None = Field(default=None, max_length=64, description="the agent to act as (required)")
    provider: str | None = Field(default=None, max_length=40, description="required")
    model: str | None = Field(default=None, max_length=200, description="required")
    task_id: str | None = Field(
        default=None, max_length=64, description="the item's latest task id, to guard against races"
    )
    branch_slug: str | None = Field(default=None, max_length=100)
    notes: str | None = Field(default=None, max_length=4000)


@router.post("/{plan_id}/backlog/{backlog_id}/resume", status_code=202)
def resume(
    plan_id: str,
    backlog_id: str,
    body: ResumeIn,
    actor: Actor = Depends(operator),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    """Resume a failed, blocked, cancelled or stale item: it runs next, as a new task, with this agent."""
    result = backlog.resume_item(
        rt.db, plan_id, backlog_id, body.model_dump(), actor, rt.clock.now(), rt.config
    )
    rt.wake_scheduler()
    return result
