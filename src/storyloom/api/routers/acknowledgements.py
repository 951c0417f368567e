"""Acknowledge a firing alert (docs/reference/http-api.md): someone is on it; later notifications say so."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from storyloom.api.auth import operator, runtime
from storyloom.api.openapi import problem_responses
from storyloom.domain.text import Text
from storyloom.runtime import Runtime
from storyloom.services import acknowledgements
from storyloom.services.actors import Actor

router = APIRouter(prefix="/api/alerts", tags=["alerts"])


class AcknowledgeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    owner: Text | None = Field(
        default=None,
        max_length=acknowledgements.MAX_OWNER_CHARS,
        description="who is on it; defaults to the token's name",
    )
    note: Text = Field(
        default="", max_length=acknowledgements.MAX_NOTE_CHARS, description="what is being done"
    )


class AcknowledgementOut(BaseModel):
    """An alert's acknowledgement: who is on it, their note, and since when (RFC 3339)."""

    fingerprint: str
    by: str
    note: str
    at: str


@router.post(
    "/{fingerprint}/acknowledge",
    response_model=AcknowledgementOut,
    responses=problem_responses(409, s409="The alert is resolved: only a firing alert can be acknowledged"),
)
def acknowledge(
    fingerprint: str,
    body: AcknowledgeIn | None = None,
    actor: Actor = Depends(operator),
    rt: Runtime = Depends(runtime),
) -> AcknowledgementOut:
    """Acknowledge an alert.

    Marks a firing alert as taken by `owner` (default: you) with a `note`; acknowledging again replaces
    both. Nothing is sent now: later notifications of the alert carry the acknowledgement. It is cleared
    when the alert fires again after resolving.
    """
    given = body or AcknowledgeIn()
    answer = acknowledgements.acknowledge(
        rt.db, actor, fingerprint, rt.clock.now(), owner=given.owner, note=given.note
    )
    return AcknowledgementOut(**answer)


@router.delete(
    "/{fingerprint}/acknowledge",
    response_model=AcknowledgementOut,
    responses=problem_responses(409, s409="The alert is resolved or not acknowledged"),
)
def unacknowledge(
    fingerprint: str, actor: Actor = Depends(operator), rt: Runtime = Depends(runtime)
) -> AcknowledgementOut:
    """Take back an acknowledgement.

    The firing alert is nobody's again; the answer is the acknowledgement that was removed.
    """
    answer = acknowledgements.unacknowledge(rt.db, actor, fingerprint, rt.clock.now())
    return AcknowledgementOut(**answer)
