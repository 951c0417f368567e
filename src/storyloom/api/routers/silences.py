"""Silences (docs/reference/http-api.md): list, create, expire (DELETE answers with the expired silence)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from storyloom.api.auth import operator, runtime, viewer
from storyloom.api.openapi import answers
from storyloom.api.schemas.silences import Silence
from storyloom.domain.text import Text
from storyloom.runtime import Runtime
from storyloom.services import silences
from storyloom.services.actors import Actor
from storyloom.services.errors import Invalid

router = APIRouter(prefix="/api/silences", tags=["silences"])

MAX_MATCHER_CHARS = 1024


class SilenceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    matchers: list[Annotated[Text, Field(min_length=1, max_length=MAX_MATCHER_CHARS)]] = Field(
        description='Alertmanager matchers, e.g. alert_id="tool:failed" (at most '
        "`limits.max_matchers_per_silence`)"
    )
    starts_at: AwareDatetime | None = Field(default=None, description="defaults to now")
    ends_at: AwareDatetime
    comment: Text = Field(max_length=2000)


@router.get("", responses=answers(list[Silence]))
def list_silences(
    state: Literal["pending", "active", "expired"] | None = None,
    _: Actor = Depends(viewer),
    rt: Runtime = Depends(runtime),
) -> list[dict[str, Any]]:
    """List silences.

    Filter by `state` (pending, active, expired).
    """
    with rt.db.read() as conn:
        return silences.list_silences(conn, rt.clock.now(), state=state)


@router.post("", status_code=201, responses=answers(Silence, status=201, description="The new silence"))
def create_silence(
    body: SilenceIn, actor: Actor = Depends(operator), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    """Create a silence.

    Matchers in Alertmanager syntax; it mutes matching alerts from `starts_at` (default now) to `ends_at`.
    """
    limit = rt.config.limits.max_matchers_per_silence
    if len(body.matchers) > limit:
        raise Invalid.field(
            ["body", "matchers"],
            f"has {len(body.matchers)} matchers; the limit is {limit} (limits.max_matchers_per_silence)",
        )
    with rt.db.begin() as conn:
        return silences.create_silence(
            conn,
            actor,
            matchers=body.matchers,
            starts_at=body.starts_at,
            ends_at=body.ends_at,
            comment=body.comment,
            now=rt.clock.now(),
        )


@router.get("/{silence_id}", responses=answers(Silence))
def get_silence(
    silence_id: str, _: Actor = Depends(viewer), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    """Get a silence."""
    with rt.db.read() as conn:
        return silences.get_silence(conn, silence_id, rt.clock.now())


@router.delete("/{silence_id}", responses=answers(Silence, description="The expired silence"))
def expire_silence(
    silence_id: str, actor: Actor = Depends(operator), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    """Expire a silence.

    It ends now; the answer is the expired silence.
    """
    with rt.db.begin() as conn:
        return silences.expire_silence(conn, actor, silence_id, rt.clock.now())
