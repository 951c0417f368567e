"""The effective routing tree and receivers (secrets redacted), and a dry run of routing for labels."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from storyloom.api.auth import runtime, viewer
from storyloom.api.openapi import answers
from storyloom.api.schemas.routes import RouteMatch, RoutingTree
from storyloom.domain.text import LabelName, Text
from storyloom.runtime import Runtime
from storyloom.services import alerts
from storyloom.services.actors import Actor

router = APIRouter(prefix="/api/alert-routes", tags=["alert routes"])


class RouteTestIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    labels: dict[LabelName, Text] = Field(description='the alert\'s labels, e.g. {"alert_id": "tool:failed"}')


@router.get("", responses=answers(RoutingTree))
def get_routes(_: Actor = Depends(viewer), rt: Runtime = Depends(runtime)) -> dict[str, Any]:
    """Get the routing tree.

    The effective route tree, inhibit rules and receivers, with every secret, key, header value and URL path redacted.
    """
    return alerts.routes_view(rt.alerting)


@router.post("/test", responses=answers(RouteMatch))
def test_routes(
    body: RouteTestIn, _: Actor = Depends(viewer), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    """Test routing for labels.

    Which receivers an alert with these labels would reach, and through which routes; nothing is sent.
    """
    return alerts.match_routes(rt.alerting, body.labels)
