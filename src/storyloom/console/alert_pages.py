"""The alerting pages: alerts (list and detail), silences, routes, deliveries, the Ops inbox, runbooks."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from storyloom.console.alert_views import alert_view, alert_views, routed_to, silences_by_id
from storyloom.console.data import DELIVERY_STATUSES, Reader
from storyloom.console.render import SEVERITIES, render
from storyloom.console.runbooks import render_runbook
from storyloom.services.actors import Actor
from storyloom.services.errors import NotFound

router = APIRouter(include_in_schema=False)

ALERT_STATES = ("firing", "silenced", "inhibited", "resolved", "all")


@router.get("/alerts", response_class=HTMLResponse)
async def alerts_page(
    request: Request,
    state: str = "firing",
    severity: str = "",
    alert_id: str = "",
    plan_id: str = "",
    receiver: str = "",
) -> Response:
    state = state if state in ALERT_STATES else "firing"
    severity = severity if severity in SEVERITIES else ""

    def build(read: Reader, actor: Actor) -> dict[str, Any]:
        status = state if state in ("resolved", "all") else "firing"
        found = read.alerts(
            status=status, severity=severity, alert_id=alert_id, plan_id=plan_id, receiver=receiver or None
        )
        views = alert_views(read, found)
        if state in ("firing", "silenced", "inhibited"):
            views = [v for v in views if v["state"] == state]
        return {
            "alerts": views,
            "filters": {
                "state": state,
                "severity": severity,
                "alert_id": alert_id,
                "plan_id": plan_id,
                "receiver": receiver,
            },
            "states": ALERT_STATES,
            "receiver_names": sorted(read.rt.alerting.receivers),
        }

    return await render(request, "alerts.html", build, title="Alerts", nav="alerts", live="alert delivery")


@router.get("/alerts/{fingerprint}", response_class=HTMLResponse)
async def alert_page(request: Request, fingerprint: str) -> Response:
    def build(read: Reader, actor: Actor) -> dict[str, Any]:
        alert = read.alert(fingerprint)
        return {
            "alert": alert_view(
                alert,
                read.who(),
                [],
                routed_to(read.rt, alert.get("labels") or {}),
                silences_by_id(read, [alert]),
            ),
            "history": alert.get("history") or [],
            "notifications": alert.get("notifications") or [],
        }

    return await render(
        request, "alert.html", build, title=f"Alert {fingerprint}", nav="alerts", live="alert delivery"
    )


@router.get("/silences", response_class=HTMLResponse)
async def silences_page(request: Request) -> Response:
    def build(read: Reader, actor: Actor) -> dict[str, Any]:
        order = {"active": 0, "pending": 1, "expired": 2}
        rows = sorted(
            read.silences(), key=lambda s: (order.get(str(s.get("status")), 3), str(s.get("ends_at")))
        )
        return {"silences": rows}

    return await render(request, "silences.html", build, title="Silences", nav="silences", live="alert")


@router.get("/routes", response_class=HTMLResponse)
async def routes_page(request: Request) -> Response:
    def build(read: Reader, actor: Actor) -> dict[str, Any]:
        data = read.routes()
        extra = {k: v for k, v in data.items() if k not in ("route", "receivers")}
        return {"tree": data.get("route"), "receivers": data.get("receivers", []), "extra": extra}

    return await render(request, "routes.html", build, title="Routes", nav="routes")


@router.get("/deliveries", response_class=HTMLResponse)
async def deliveries_page(request: Request, receiver: str = "", status: str = "") -> Response:
    status = status if status in DELIVERY_STATUSES else ""

    def build(read: Reader, actor: Actor) -> dict[str, Any]:
        grouped: dict[str, list[dict[str, Any]]] = {}
        for row in read.deliveries(receiver, status):
            grouped.setdefault(str(row["receiver"]), []).append(row)
        return {
            "grouped": sorted(grouped.items()),
            "filters": {"receiver": receiver, "status": status},
            "statuses": DELIVERY_STATUSES,
            "receiver_names": sorted(set(read.rt.alerting.receivers) | set(grouped)),
            "set_aside": read.set_aside(),
        }

    return await render(
        request, "deliveries.html", build, title="Deliveries", nav="deliveries", live="delivery"
    )


@router.get("/inbox", response_class=HTMLResponse)
async def inbox_page(request: Request) -> Response:
    def build(read: Reader, actor: Actor) -> dict[str, Any]:
        enabled = bool(read.rt.demo or getattr(read.rt.config, "demo_receiver", False))
        return {"messages": read.inbox(), "inbox_enabled": enabled}

    return await render(request, "inbox.html", build, title="Ops inbox", nav="inbox", live="delivery")


@router.get("/runbooks/{alert_id}", response_class=HTMLResponse)
async def runbook_page(request: Request, alert_id: str) -> Response:
    def build(read: Reader, actor: Actor) -> dict[str, Any]:
        found = render_runbook(alert_id)
        if found is None:
            raise NotFound(f"there is no runbook for {alert_id!r}")
        title, html = found
        canonical = alert_id if ":" in alert_id else alert_id.replace("-", ":", 1)
        return {"runbook_title": title, "runbook_html": html, "alert_id": canonical}

    return await render(request, "runbook.html", build, title=f"Runbook {alert_id}", nav="alerts")
