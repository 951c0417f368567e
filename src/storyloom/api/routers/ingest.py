"""Alertmanager-compatible ingest: `POST /api/v2/alerts` takes what Prometheus and amtool send."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from storyloom.api.auth import operator, runtime
from storyloom.runtime import Runtime
from storyloom.services import alerts
from storyloom.services.actors import Actor

router = APIRouter(prefix="/api/v2", tags=["ingest"])


class PostableAlert(BaseModel):
    model_config = ConfigDict(extra="forbid")
    labels: dict[str, str] = Field(
        description="must include alertname (or alert_id); severity defaults to warning"
    )
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: AwareDatetime | None = None
    endsAt: AwareDatetime | None = Field(
        default=None,
        description="at or before now resolves the alert; later, it resolves then unless sent again",
    )
    generatorURL: str | None = None


@router.post("/alerts")
def post_alerts(
    body: list[PostableAlert], _: Actor = Depends(operator), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    posted = [
        alerts.PostedAlert(
            labels=a.labels,
            annotations=a.annotations,
            starts_at=a.startsAt,
            ends_at=a.endsAt,
            generator_url=a.generatorURL,
        )
        for a in body
    ]
    with rt.db.begin() as conn:
        return alerts.ingest_alerts(conn, posted, rt.clock.now(), rt.config.alerting.resolve_timeout)
