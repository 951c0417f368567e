"""The Overview (incidents first, then service levels), the plan list, a plan's page, and its Cancel action."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from storyloom.api.problems import problem
from storyloom.console import charts
from storyloom.console.alert_views import alert_views, triage
from storyloom.console.data import Reader
from storyloom.console.render import (
    csrf_ok,
    render,
    runtime_of,
    session_actor,
)
from storyloom.health.report import planner_health
from storyloom.runtime import Runtime
from storyloom.services import cancel as cancel_service
from storyloom.services.actors import Actor

router = APIRouter(include_in_schema=False)

PHASES = ("vision", "world_bible", "iterative", "chapter_architect", "scroll_refiner", "scene_weaver")
RESUMABLE = ("failed", "blocked", "cancelled", "in_progress")
CANCELLABLE = ("pending", "in_progress", "failed", "blocked")
OBLIGATION_STATUSES = ("open", "resolved", "dismissed")
OBLIGATION_PAGE_SIZE = 25


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request) -> Response:
    rt = runtime_of(request)
    report = await run_in_threadpool(planner_health, rt)

    def build(read: Reader, actor: Actor) -> dict[str, Any]:
        lists = triage(alert_views(read, read.alerts(status="firing")), read.who())
        telemetry = report.get("telemetry") or {}
        return {
            "report": report,
            "health": {"status": report.get("status", "unknown")},
            "incidents": lists["firing"],
            "silenced": lists["silenced"],
            "inhibited": lists["inhibited"],
            "firing_count": sum(i.count for i in lists["firing"]),
            "series": charts.slo_series(read.conn, read.now),
            "failures": telemetry.get("recent_failures") or [],
            "planners": report.get("planners") or [],
        }

    return await render(
        request,
        "overview.html",
        build,
        title="Overview",
        nav="overview",
        live="alert backlog obligation delivery health",
    )


@router.get("/plans", response_class=HTMLResponse)
async def plans_page(request: Request) -> Response:
    def build(read: Reader, actor: Actor) -> dict[str, Any]:
        return {"plans": read.plans()}

    return await render(request, "plans.html", build, title="Plans", nav="plans", live="backlog")


def _phase_state(statuses: list[str], has_checkpoints: bool) -> str:
    if not statuses and not has_checkpoints:
        return "pending"
    if statuses and all(s == "complete" for s in statuses):
        return "complete"
    for state in ("failed", "blocked", "in_progress"):
        if state in statuses:
            return state
    return "pending"


def _timeline(plan: dict[str, Any], backlog: list[dict[str, Any]]) -> list[dict[str, Any]]:
    timeline = []
    for phase in PHASES:
        points = [c for c in plan.get("checkpoints", []) if c.get("phase") == phase]
        statuses = [i["status"] for i in backlog if i.get("phase") == phase]
        timeline.append(
            {
                "phase": phase,
                "state": _phase_state(statuses, bool(points)),
                "checkpoints": points,
                "count": len(statuses),
            }
        )
    return timeline


@router.get("/plans/{plan_id}", response_class=HTMLResponse)
async def plan_page(request: Request, plan_id: str, obligations: str = "open", page: int = 1) -> Response:
    ob_status = obligations if obligations in (*OBLIGATION_STATUSES, "all") else "open"
    page = max(page, 1)

    def build(read: Reader, actor: Actor) -> dict[str, Any]:
        plan = read.plan(plan_id)
        backlog = read.backlog(plan_id)
        obl = read.obligations(plan_id, None if ob_status == "all" else ob_status, page, OBLIGATION_PAGE_SIZE)
        total = int(obl.get("total", 0))
        return {
            "_title": f"Plan {plan.get('name') or plan_id}",
            "plan": plan,
            "backlog": backlog,
            "actions": read.actions(plan_id),
            "roster": read.roster(plan_id),
            "obligations": obl.get("items", []),
            "ob_status": ob_status,
            "ob_page": page,
            "ob_pages": max(1, -(-total // OBLIGATION_PAGE_SIZE)),
            "ob_total": total,
            "timeline": _timeline(plan, backlog),
            "alerts": alert_views(read, read.alerts(status="firing", plan_id=plan_id)),
            "resumable": RESUMABLE,
            "cancellable": CANCELLABLE,
        }

    return await render(
        request,
        "plan.html",
        build,
        title=f"Plan {plan_id}",
        nav="plans",
        live="backlog obligation alert",
        live_plan=plan_id,
    )


def _cancel(rt: Runtime, plan_id: str, backlog_id: str, body: Any, actor: Actor) -> dict[str, Any]:
    with rt.db.begin() as conn:
        return cancel_service.cancel(conn, plan_id, backlog_id, body, actor, rt.clock.now())


@router.post("/plans/{plan_id}/backlog/{backlog_id}/cancel")
async def cancel_item(request: Request, plan_id: str, backlog_id: str) -> Response:
    """The Cancel dialog's handler: the console session (operator and up) with its CSRF header, then the
    cancel service, which logs the action like a resume (action log and server log, with the actor)."""
    actor = await session_actor(request)
    if actor is None:
        return problem(401, "Sign in to the console again, then retry the cancel.")
    if not csrf_ok(request, None):
        return problem(403, "CSRF check failed: reload the console page and try again.")
    if not actor.at_least("operator"):
        return problem(403, "Cancelling needs the operator role; this token is a viewer.")
    try:
        body = await request.json()
    except ValueError:
        return problem(
            422,
            'Send a JSON body: {"agent_id": "...", "notes": "..."}.',
            errors=[{"loc": ["body"], "msg": "not JSON"}],
        )
    if not isinstance(body, dict):
        return problem(422, 'The body must be a JSON object: {"agent_id": "...", "notes": "..."}.')
    result = await run_in_threadpool(_cancel, runtime_of(request), plan_id, backlog_id, body, actor)
    return JSONResponse(jsonable_encoder(result))
