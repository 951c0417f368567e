"""The Ops console's pages (docs/reference/http-api.md): server-rendered Jinja2 over the API, updated live over SSE.

Sign-in opens a server-side session (services/sessions.py) whose random id, never the API token, is kept in
an HttpOnly, SameSite=Strict cookie; state-changing requests from the console carry the CSRF cookie's value
back in a header (fetches) or a hidden field (forms).
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Undefined
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from storyloom.api.auth import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE, Unauthorized, token_actor
from storyloom.console import charts
from storyloom.console.data import DELIVERY_STATUSES, Reader, Who
from storyloom.console.runbooks import render_runbook
from storyloom.domain.catalog import PLANNER_PHASE_FAILED
from storyloom.domain.readable import showable
from storyloom.domain.routing import receivers_for
from storyloom.health.report import health_status, planner_health
from storyloom.runtime import Runtime
from storyloom.services.actors import Actor
from storyloom.services.errors import NotFound, ServiceError
from storyloom.services.sessions import actor_for_session, open_session, revoke_session

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=str(HERE / "templates"))

router = APIRouter(include_in_schema=False)

SEVERITIES = ("critical", "error", "warning", "info")
PHASES = ("vision", "world_bible", "iterative", "chapter_architect", "scroll_refiner", "scene_weaver")
RESUMABLE = ("failed", "blocked", "cancelled", "in_progress")
OBLIGATION_STATUSES = ("open", "resolved", "dismissed")
READ_ONLY_REASON = "viewer role: read-only"


# --- template helpers ---------------------------------------------------------------------------------

STATUS_ICONS = {
    "healthy": "✓",
    "degraded": "▲",
    "critical": "✖",
    "unknown": "?",
    "firing": "◉",
    "resolved": "✓",
    "silenced": "⊖",
    "inhibited": "↓",
    "active": "●",
    "pending": "…",
    "expired": "○",
    "in_progress": "▶",
    "complete": "✓",
    "blocked": "⛔",
    "failed": "✖",
    "cancelled": "⊘",
    "open": "○",
    "dismissed": "⊘",
    "delivered": "✓",
    "dead": "✖",
    "draft": "✎",
    "archived": "▣",
    "critical_sev": "‼",
    "error": "✖",
    "warning": "▲",
    "info": "\u2139",  # information source
}


def icon(status: Any) -> str:
    return STATUS_ICONS.get(str(status), "•")


def ts(value: Any) -> str:
    """A compact UTC time (`2026-11-25 20:00:05Z`) from an RFC 3339 string or datetime."""
    if value is None or value == "":
        return "—"
    if isinstance(value, datetime):
        value = value.isoformat()
    text = str(value).replace("+00:00", "Z")
    if "T" in text:
        date, _, rest = text.partition("T")
        clock = rest[:8]
        return f"{date} {clock}Z"
    return text


def seconds(value: Any) -> str:
    if value is None:
        return "—"
    s = float(value)
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def ms(value: Any) -> str:
    if value is None:
        return "—"
    v = float(value)
    return f"{v:.0f} ms" if v < 2000 else f"{v / 1000:.1f} s"


def pct(value: Any) -> str:
    return "—" if value is None else f"{float(value) * 100:.1f}%"


def first_of(*values: Any) -> Any:
    """The first value that is set (the API's number, else the console's own series)."""
    for value in values:
        if value is not None and not isinstance(value, Undefined):
            return value
    return None


def _showable(value: Any) -> Any:
    """Every `{{ value }}` a page prints encodes: lone surrogates and NUL show as U+FFFD (Markup stays Markup)."""
    if isinstance(value, str):
        shown = showable(value)
        return value if shown is value else type(value)(shown)
    return value


templates.env.finalize = _showable
templates.env.filters.update(ts=ts, seconds=seconds, ms=ms, pct=pct, icon=icon)
templates.env.globals.update(
    icon=icon,
    first_of=first_of,
    SEVERITIES=SEVERITIES,
    READ_ONLY_REASON=READ_ONLY_REASON,
    quote=quote,
    sparkline=charts.sparkline,
)


# --- sessions -----------------------------------------------------------------------------------------


def _rt(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def _session_actor(request: Request, session_id: str) -> Actor | None:
    rt = _rt(request)
    with rt.db.begin() as conn:
        return actor_for_session(conn, session_id, source="console", now=rt.clock.now())


async def session_actor(request: Request) -> Actor | None:
    """The console session's actor; a bearer token works too (scripts and curl read pages like the API)."""
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        return await run_in_threadpool(_session_actor, request, session_id)
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    token = credentials.strip() if scheme.lower() == "bearer" else ""
    if not token:
        return None
    try:
        return await run_in_threadpool(token_actor, request, token, "console")
    except Unauthorized:
        return None


def _secure(request: Request) -> bool:
    """Secure cookies when the console is served, or publicly reached, over https."""
    return request.url.scheme == "https" or _rt(request).config.public_url.startswith("https://")


def _signed_in(request: Request, token: str, next_: str | None) -> Response:
    """Check the token (a wrong one spends the client's failure allowance), open a session, set its cookies.

    A refusal is the login page: 401, or 429 with `Retry-After` once the client is limited (problem+json
    for a client that does not ask for HTML).
    """
    rt = _rt(request)
    try:
        actor = token_actor(request, token, "console")
    except Unauthorized:
        return _login_page(request, error="That token is invalid or revoked.", status=401, next_=next_)
    except HTTPException as exc:
        if "text/html" not in request.headers.get("accept", ""):
            raise
        headers = dict(exc.headers or {})
        return _login_page(
            request,
            error=f"Too many failed sign-ins from your address: try again in {headers.get('Retry-After')} s.",
            status=exc.status_code,
            next_=next_,
            headers=headers,
        )
    ttl = rt.config.security.session_ttl
    with rt.db.begin() as conn:
        session_id = open_session(conn, token, actor, ttl=ttl, now=rt.clock.now())
    response = RedirectResponse(_safe_next(next_), status_code=303)
    secure = _secure(request)
    max_age = int(ttl.total_seconds())
    response.set_cookie(
        SESSION_COOKIE, session_id, max_age=max_age, httponly=True, samesite="strict", secure=secure, path="/"
    )
    response.set_cookie(
        CSRF_COOKIE,
        secrets.token_urlsafe(24),
        max_age=max_age,
        httponly=False,  # the console's scripts read it to send it back as X-CSRF-Token
        samesite="strict",
        secure=secure,
        path="/",
    )
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


def _safe_next(target: str | None) -> str:
    """Only same-site paths: `/plans/x`, never `//evil.example` or `https://...`."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


def _to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    suffix = "" if target == "/" else f"?next={quote(target, safe='')}"
    return RedirectResponse(f"/login{suffix}", status_code=303)


def _csrf_ok(request: Request, sent: str | None) -> bool:
    expected = request.cookies.get(CSRF_COOKIE, "")
    sent = sent or request.headers.get(CSRF_HEADER, "")
    return bool(expected) and hmac.compare_digest(sent.encode(), expected.encode())


def _login_page(
    request: Request,
    *,
    error: str | None = None,
    status: int = 200,
    next_: str | None = "/",
    headers: dict[str, str] | None = None,
) -> Response:
    csrf = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = templates.TemplateResponse(
        request,
        "login.html",
        {"error": error, "csrf": csrf, "next": _safe_next(next_), "title": "Sign in", "nav": "login"},
        status_code=status,
        headers=headers,
    )
    if not request.cookies.get(CSRF_COOKIE):
        response.set_cookie(
            CSRF_COOKIE, csrf, httponly=False, samesite="strict", secure=_secure(request), path="/"
        )
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request, token: str | None = None, next: str | None = None) -> Response:
    """The sign-in form; `?token=` (the URL `storyloom run --demo` prints) signs in and goes to `/`."""
    if token:
        return await run_in_threadpool(_signed_in, request, token, next)
    return _login_page(request, next_=next or "/")


@router.post("/login", response_class=HTMLResponse)
async def login_submit(
    request: Request,
    token: str = Form(""),
    csrf_token: str = Form(""),
    next: str = Form("/"),
) -> Response:
    if not _csrf_ok(request, csrf_token):
        return _login_page(
            request, error="The form expired (CSRF check failed): try again.", status=403, next_=next
        )
    token = token.strip()
    if not token:
        return _login_page(
            request, error="Paste an API token (storyloom token create).", status=422, next_=next
        )
    return await run_in_threadpool(_signed_in, request, token, next)


def _sign_out(request: Request) -> None:
    session_id = request.cookies.get(SESSION_COOKIE)
    if session_id:
        rt = _rt(request)
        with rt.db.begin() as conn:
            revoke_session(conn, session_id, now=rt.clock.now())


@router.post("/logout")
async def logout(request: Request, csrf_token: str = Form("")) -> Response:
    """Revoke the session server-side (a copied cookie stops working too) and clear the cookies."""
    if not _csrf_ok(request, csrf_token):
        return HTMLResponse("CSRF check failed: reload the page and sign out again.", status_code=403)
    await run_in_threadpool(_sign_out, request)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request)
    )
    response.delete_cookie(CSRF_COOKIE, path="/", samesite="strict", secure=_secure(request))
    return response


# --- page plumbing ------------------------------------------------------------------------------------

Builder = Callable[[Reader, Actor], dict[str, Any]]


def _read(rt: Runtime, actor: Actor, build: Builder) -> tuple[dict[str, Any], Who, dict[str, Any]]:
    """Run a page's reads on one connection (in a worker thread: the services are synchronous)."""
    with rt.db.read() as conn:
        reader = Reader(conn, rt, rt.clock.now())
        try:
            context = build(reader, actor)
        except NotFound as exc:
            context = {"_status": 404, "_message": exc.detail}
        except ServiceError as exc:
            context = {"_status": exc.status, "_message": exc.detail}
        return context, reader.who(), health_status(conn)


async def render(
    request: Request,
    template: str,
    build: Builder,
    *,
    title: str,
    nav: str,
    live: str = "",
    live_plan: str = "",
) -> Response:
    """Sign-in check, the page's reads, then the template with the layout's shared context."""
    actor = await session_actor(request)
    if actor is None:
        return _to_login(request)
    rt = _rt(request)
    context, people, health = await run_in_threadpool(_read, rt, actor, build)
    status = int(context.pop("_status", 200))
    shared = {
        "title": title,
        "nav": nav,
        "actor": actor,
        "can_operate": actor.at_least("operator"),
        "csrf": request.cookies.get(CSRF_COOKIE, ""),
        "health": context.get("health") or health,
        "who": people,
        "agents": list(people.agents.values()),
        "providers": ("offline", "openai"),
        "live_kinds": live,
        "live_plan": live_plan,
    }
    if status != 200:
        shared["title"] = "Not found" if status == 404 else "Cannot show this page"
        shared["message"] = context.get("_message", "")
        response = templates.TemplateResponse(request, "error.html", shared, status_code=status)
    else:
        response = templates.TemplateResponse(request, template, {**context, **shared})
    response.headers["Cache-Control"] = "no-store"
    return response


def _routed_to(rt: Runtime, labels: dict[str, str]) -> list[str]:
    route = rt.alerting.route
    return list(dict.fromkeys(receivers_for(route, labels))) if route else []


def alert_view(alert: dict[str, Any], people: Who, sent_to: list[str], routed: list[str]) -> dict[str, Any]:
    """An API alert plus what the console shows: state (silenced/inhibited), owners, receivers, action."""
    labels = alert.get("labels") or {}
    silenced = alert.get("silenced_by") or []
    inhibited = alert.get("inhibited_by") or []
    state = alert.get("status", "firing")
    if state == "firing" and silenced:
        state = "silenced"
    elif state == "firing" and inhibited:
        state = "inhibited"
    alert_id = alert.get("alert_id") or labels.get("alert_id", "")
    agent_id = labels.get("agent_id") or people.agent_for_persona(labels.get("persona_id"))
    persona_id = labels.get("persona_id") or people.persona_of_agent(agent_id)
    action = "silence"
    if alert.get("status") == "firing":
        if alert_id == PLANNER_PHASE_FAILED and labels.get("backlog_id"):
            action = "resume"
        elif alert_id.startswith("obligation:") and labels.get("obligation_id"):
            action = "resolve"
    sent = list(dict.fromkeys(alert.get("receivers") or sent_to))
    return {
        **alert,
        "alert_id": alert_id,
        "labels": labels,
        "state": state,
        "silenced_by": silenced,
        "inhibited_by": inhibited,
        "agent_id": agent_id,
        "persona_id": persona_id,
        "receivers": sent or routed,
        "receivers_label": "sent to" if sent else "routes to",
        "action": action,
        "runbook": f"/runbooks/{alert_id}",
        "matchers": silence_matchers(labels),
    }


def silence_matchers(labels: dict[str, str]) -> list[str]:
    """A silence pre-filled from an alert: its id and the labels that pin it to one thing."""
    keys = ("alert_id", "plan_id", "backlog_id", "obligation_id", "receiver", "tool", "provider")
    return [f'{k}="{labels[k]}"' for k in keys if labels.get(k)]


def alert_views(read: Reader, alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    people = read.who()
    return [
        alert_view(a, people, read.sent_to(a["fingerprint"]), _routed_to(read.rt, a.get("labels") or {}))
        for a in alerts
    ]


def by_severity(alerts: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    groups = [(s, [a for a in alerts if a.get("severity") == s]) for s in SEVERITIES]
    return [(s, rows) for s, rows in groups if rows]


# --- pages --------------------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
async def overview(request: Request) -> Response:
    rt = _rt(request)
    report = await run_in_threadpool(planner_health, rt)

    def build(read: Reader, actor: Actor) -> dict[str, Any]:
        views = alert_views(read, read.alerts(status="firing"))
        telemetry = report.get("telemetry") or {}
        return {
            "report": report,
            "health": {"status": report.get("status", "unknown")},
            "groups": by_severity(views),
            "firing_count": len(views),
            "plans": {p["plan_id"]: p for p in read.plans()},
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


@router.get("/plans/{plan_id}", response_class=HTMLResponse)
async def plan_page(request: Request, plan_id: str, obligations: str = "open", page: int = 1) -> Response:
    ob_status = obligations if obligations in (*OBLIGATION_STATUSES, "all") else "open"
    page = max(page, 1)
    page_size = 25

    def build(read: Reader, actor: Actor) -> dict[str, Any]:
        plan = read.plan(plan_id)
        backlog = read.backlog(plan_id)
        obl = read.obligations(plan_id, None if ob_status == "all" else ob_status, page, page_size)
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
        total = int(obl.get("total", 0))
        return {
            "plan": plan,
            "backlog": backlog,
            "actions": read.actions(plan_id),
            "roster": read.roster(plan_id),
            "obligations": obl.get("items", []),
            "ob_status": ob_status,
            "ob_page": page,
            "ob_pages": max(1, -(-total // page_size)),
            "ob_total": total,
            "timeline": timeline,
            "alerts": alert_views(read, read.alerts(status="firing", plan_id=plan_id)),
            "resumable": RESUMABLE,
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
            "alert": alert_view(alert, read.who(), [], _routed_to(read.rt, alert.get("labels") or {})),
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
