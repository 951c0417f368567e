"""Drills (docs/reference/http-api.md, docs/operations.md "Drills"): a test alert through the real path."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from storyloom.api.auth import operator, runtime
from storyloom.api.openapi import problem_responses
from storyloom.domain.durations import parse_duration
from storyloom.domain.text import Text
from storyloom.runtime import Runtime
from storyloom.services import drills
from storyloom.services.actors import Actor
from storyloom.services.errors import Invalid

router = APIRouter(prefix="/api/drills", tags=["drills"])


class DrillIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    alert_id: Text = Field(
        default=drills.DRILL_ALERT_ID,
        max_length=80,
        description="the alert id the drill alert carries, to test that id's routing",
    )
    receiver: Text | None = Field(
        default=None, max_length=100, description="send the drill to this one receiver instead of routing it"
    )
    timeout: Text = Field(
        default="60s", max_length=20, description="how long to wait for the receivers' answers (at most 10m)"
    )


class DrillReceiverOut(BaseModel):
    """One receiver's answer to the drill."""

    receiver: str
    type: str | None
    send_resolved: bool
    outcome: str = Field(description="delivered, dead, retrying or no-delivery")
    latency_ms: int | None = Field(description="from firing to the receiver's final answer")
    status_code: int | None
    attempts: int
    delivery_id: str | None
    error: str | None


class DrillOut(BaseModel):
    """A finished drill: the alert it fired and resolved, and each receiver's answer."""

    drill_id: str
    alert_id: str
    fingerprint: str
    labels: dict[str, str]
    started_at: str
    resolved_at: str
    receivers: list[DrillReceiverOut]


@router.post(
    "",
    response_model=DrillOut,
    responses=problem_responses(409, s409="No routing tree is configured"),
)
def run_drill(
    body: DrillIn | None = None, actor: Actor = Depends(operator), rt: Runtime = Depends(runtime)
) -> DrillOut:
    """Run a drill.

    Fires a drill alert (`drill="true"`) through routing, grouping, signing and delivery, waits for each
    receiver's answer (at most `timeout`), then resolves it; answers each receiver's outcome and latency.
    """
    given = body or DrillIn()
    try:
        timeout = parse_duration(given.timeout)
    except ValueError as err:
        raise Invalid.field(["body", "timeout"], str(err)) from None
    report = drills.run_drill(rt, actor, alert_id=given.alert_id, receiver=given.receiver, timeout=timeout)
    return DrillOut(**report)
