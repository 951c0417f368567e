"""Fiction plans and their backlog (read side), plan creation."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from storyloom.api.auth import operator, runtime, viewer
from storyloom.api.openapi import answers
from storyloom.api.schemas.plans import BacklogAction, BacklogItem, Plan, PlanDetail, Roster
from storyloom.domain.text import Text
from storyloom.runtime import Runtime
from storyloom.services import plans
from storyloom.services.actors import Actor

router = APIRouter(prefix="/api/fiction/plans", tags=["plans"])


class PlanIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text = Field(min_length=1, max_length=200)
    premise: Text = Field(min_length=1, description="at most `pipeline.max_premise_chars` characters")
    project_title: Text | None = Field(default=None, max_length=300)
    persona_id: Text = Field(min_length=1, max_length=64)
    agent_id: Text | None = Field(default=None, max_length=64)
    branch_slug: Text | None = Field(default=None, max_length=100, pattern=r"^[a-z0-9][a-z0-9-]*$")
    provider: Text | None = Field(default=None, max_length=40)
    model: Text | None = Field(default=None, max_length=200)


@router.post(
    "",
    status_code=201,
    responses=answers(PlanDetail, status=201, description="The new plan; its backlog is queued"),
)
def create_plan(
    body: PlanIn, actor: Actor = Depends(operator), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    """Create a plan.

    A plan for an author persona (and optionally its agent) with its three seeded backlog items, queued
    to run. The premise is at most `pipeline.max_premise_chars` characters.
    """
    cfg = rt.config
    with rt.db.begin() as conn:
        plan = plans.create_plan(
            conn,
            plans.PlanRequest(**body.model_dump()),
            default_provider=cfg.llm.provider,
            default_model=cfg.llm.model,
            max_premise_chars=cfg.pipeline.max_premise_chars,
            now=rt.clock.now(),
            actor=actor,
        )
        plans.require_agent_binding(actor, plan["agent_id"])
        detail = plans.plan_detail(conn, plan["id"])
    return detail


@router.get("", responses=answers(list[Plan]))
def list_plans(_: Actor = Depends(viewer), rt: Runtime = Depends(runtime)) -> list[dict[str, Any]]:
    """List plans.

    Every plan with its status and backlog counts.
    """
    with rt.db.read() as conn:
        return plans.list_plans(conn)


@router.get("/{plan_id}", responses=answers(PlanDetail))
def get_plan(plan_id: str, _: Actor = Depends(viewer), rt: Runtime = Depends(runtime)) -> dict[str, Any]:
    """Get a plan.

    The plan with its status, agent, provider and model.
    """
    with rt.db.read() as conn:
        return plans.plan_detail(conn, plan_id)


@router.get("/{plan_id}/backlog", responses=answers(list[BacklogItem]))
def list_backlog(
    plan_id: str, _: Actor = Depends(viewer), rt: Runtime = Depends(runtime)
) -> list[dict[str, Any]]:
    """List a plan's backlog.

    Every item with its status, attempts, last error and task.
    """
    with rt.db.read() as conn:
        return plans.list_backlog(conn, plan_id)


@router.get("/{plan_id}/backlog/actions", responses=answers(list[BacklogAction]))
def list_actions(
    plan_id: str, _: Actor = Depends(viewer), rt: Runtime = Depends(runtime)
) -> list[dict[str, Any]]:
    """List a plan's backlog actions.

    The action log (resume, cancel, ...), newest first, with the actor of each.
    """
    with rt.db.read() as conn:
        return plans.list_actions(conn, plan_id)


@router.get("/{plan_id}/roster", responses=answers(Roster))
def roster(plan_id: str, _: Actor = Depends(viewer), rt: Runtime = Depends(runtime)) -> dict[str, Any]:
    """Get a plan's roster.

    The plan's personas and agents, author and characters.
    """
    with rt.db.read() as conn:
        return plans.roster(conn, plan_id)
