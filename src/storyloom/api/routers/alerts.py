"""Alerts (docs/reference/http-api.md, payloads.md): list with filters, and one alert with its history
and notifications."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query

from storyloom.api.auth import runtime, viewer
from storyloom.api.openapi import answers
from storyloom.api.schemas.alerts import Alert, AlertDetail
from storyloom.runtime import Runtime
from storyloom.services import alerts
from storyloom.services.actors import Actor

router = APIRouter(prefix="/api/alerts", tags=["alerts"])


@router.get("", responses=answers(list[Alert]))
def list_alerts(
    status: Literal["firing", "resolved", "all"] = "all",
    severity: Literal["info", "warning", "error", "critical"] | None = None,
    plan_id: str | None = None,
    alert_id: str | None = None,
    receiver: str | None = None,
    limit: int = Query(default=500, ge=1, le=5000),
    _: Actor = Depends(viewer),
    rt: Runtime = Depends(runtime),
) -> list[dict[str, Any]]:
    """List alerts.

    Firing first, then resolved; filter by status, severity, plan, alert id or receiver. Each alert carries its mute state (`silenced_by`, `inhibited_by`), computed when read.
    """
    with rt.db.read() as conn:
        return alerts.list_alerts(
            conn,
            rt.alerting,
            rt.clock.now(),
            status=status,
            severity=severity,
            plan_id=plan_id,
            alert_id=alert_id,
            receiver=receiver,
            limit=limit,
        )


@router.get("/{fingerprint}", responses=answers(AlertDetail))
def get_alert(fingerprint: str, _: Actor = Depends(viewer), rt: Runtime = Depends(runtime)) -> dict[str, Any]:
    """Get an alert.

    One alert by fingerprint, with its history and its notifications per receiver.
    """
    with rt.db.read() as conn:
        return alerts.get_alert(conn, rt.alerting, fingerprint, rt.clock.now())
