"""PlannerHealth (docs/reference/payloads.md): `GET /api/diagnostics/planner`, read-only."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from storyloom.api.auth import runtime, viewer
from storyloom.api.openapi import answers
from storyloom.api.responses import ReadableJSONResponse
from storyloom.api.schemas.health import PlannerHealth
from storyloom.health.report import planner_health
from storyloom.runtime import Runtime
from storyloom.services.actors import Actor

router = APIRouter(tags=["health"])


@router.get(
    "/api/diagnostics/planner",
    response_class=ReadableJSONResponse,
    responses=answers(PlannerHealth, description="The PlannerHealth report (docs/reference/payloads.md)"),
)
def planner_diagnostics(_: Actor = Depends(viewer), rt: Runtime = Depends(runtime)) -> ReadableJSONResponse:
    """Get the PlannerHealth report.

    The PlannerHealth report: status, planners and templates, backlog, telemetry, SLOs, firing alerts
    and their receivers, warnings. Reading it never fires, resolves or sends anything.
    """
    # already JSON-ready: rendered directly instead of through response-model validation
    return ReadableJSONResponse(planner_health(rt))
