"""Persona obligations (docs/reference/http-api.md, "Obligation resolve"): list (paged), resolve or
dismiss, flag voice drift."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from storyloom.api.auth import operator, runtime, viewer
from storyloom.api.openapi import answers
from storyloom.api.query import Page
from storyloom.api.schemas.obligations import Obligation, ObligationPage
from storyloom.domain.text import Text
from storyloom.runtime import Runtime
from storyloom.services import obligations
from storyloom.services.actors import Actor

router = APIRouter(prefix="/api/fiction/plans", tags=["obligations"])

NO_OBLIGATION = "No such plan, or no such obligation in it"
NOT_YOURS = (
    "The token's role may not do this, or the agent is neither of the obligation's persona nor of the "
    "plan's author persona"
)


class ResolveIn(BaseModel):
    """`action` and blank `notes` are checked by the service, in the contract's order."""

    model_config = ConfigDict(extra="forbid")
    action: Text = Field(description="resolve | dismiss")
    notes: Text = Field(max_length=4000, description="what was done (must not be blank)")
    agent_id: Text = Field(max_length=64, description="the agent to act as")
    voice_drift: StrictBool | None = None
    backlog_id: Text | None = Field(default=None, max_length=100)
    task_id: Text | None = Field(default=None, max_length=64)


class VoiceDriftIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    voice_drift: StrictBool
    agent_id: Text = Field(max_length=64, description="the agent to act as")
    notes: Text | None = Field(default=None, max_length=4000)


@router.get("/{plan_id}/persona-obligations", responses=answers(ObligationPage))
def list_obligations(
    plan_id: str,
    status: Literal["open", "resolved", "dismissed"] | None = None,
    page: Page = 1,
    page_size: int = Query(50, ge=1, le=obligations.MAX_PAGE_SIZE),
    _: Actor = Depends(viewer),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    """List a plan's persona obligations.

    Oldest first, one page at a time: `{items, page, page_size, total}`; filter by `status`.
    """
    with rt.db.read() as conn:
        return obligations.list_obligations(conn, plan_id, status, page, page_size)


@router.post(
    "/{plan_id}/persona-obligations/{obligation_id}/resolve",
    responses=answers(Obligation, 403, 404, s403=NOT_YOURS, s404=NO_OBLIGATION),
)
def resolve_obligation(
    plan_id: str,
    obligation_id: str,
    body: ResolveIn,
    actor: Actor = Depends(operator),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    """Resolve or dismiss an obligation.

    `action` is `resolve` or `dismiss`, with non-blank `notes`, as an agent of the obligation's persona (or the plan's author).
    """
    with rt.db.begin() as conn:
        return obligations.resolve_obligation(
            conn, plan_id, obligation_id, body.model_dump(), actor, rt.clock.now()
        )


@router.post(
    "/{plan_id}/persona-obligations/{obligation_id}/voice-drift",
    responses=answers(
        Obligation,
        403,
        404,
        409,
        s403=NOT_YOURS,
        s404=NO_OBLIGATION,
        s409="Only an open obligation can drift",
    ),
)
def set_voice_drift(
    plan_id: str,
    obligation_id: str,
    body: VoiceDriftIn,
    actor: Actor = Depends(operator),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    """Flag or clear voice drift on an obligation.

    Only an open obligation can drift (409 otherwise); same ownership rule as resolve.
    """
    with rt.db.begin() as conn:
        return obligations.set_voice_drift(
            conn, plan_id, obligation_id, body.model_dump(), actor, rt.clock.now()
        )
