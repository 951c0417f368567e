"""The console's page plumbing: the Jinja2 environment and its filters, the session check, and `render`.

Sign-in opens a server-side session (services/sessions.py) whose random id, never the API token, is kept in
an HttpOnly, SameSite=Strict cookie; state-changing requests from the console carry the CSRF cookie's value
back in a header (fetches) or a hidden field (forms).
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from jinja2 import Undefined
from starlette.concurrency import run_in_threadpool

from storyloom.api.auth import CSRF_COOKIE, CSRF_HEADER, SESSION_COOKIE, Unauthorized, token_actor
from storyloom.api.routers.events import health_status
from storyloom.console import charts
from storyloom.console.data import Reader, Who
from storyloom.domain.readable import showable
from storyloom.runtime import Runtime
from storyloom.services.actors import Actor
from storyloom.services.errors import NotFound, ServiceError
from storyloom.services.sessions import actor_for_session

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=str(HERE / "templates"))

SEVERITIES = ("critical", "error", "warning", "info")
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


def _moment(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def age(value: Any, now: datetime) -> str:
    """A short age (`45 s`, `12 min`, `3.5 h`, `2 d`) of a moment before `now`."""
    moment = _moment(value)
    if moment is None:
        return "—"
    elapsed = abs((now - moment).total_seconds())
    return seconds(elapsed) if elapsed < 172_800 else f"{elapsed / 86_400:.0f} d"


def ago(value: Any, now: datetime) -> str:
    """`12 min ago`, or `in 5 min` for a moment still to come (a retry, a silence's end)."""
    moment = _moment(value)
    if moment is None:
        return "—"
    return f"{age(moment, now)} ago" if moment <= now else f"in {age(moment, now)}"


def readable_json(value: Any) -> str:
    """JSON for people: indented, characters as they are (the page escapes them once, as HTML)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


templates.env.finalize = _showable
templates.env.filters.update(
    ts=ts, seconds=seconds, ms=ms, pct=pct, icon=icon, ago=ago, age=age, readable_json=readable_json
)
templates.env.globals.update(
    icon=icon,
    first_of=first_of,
    SEVERITIES=SEVERITIES,
    READ_ONLY_REASON=READ_ONLY_REASON,
    quote=quote,
    chart=charts.chart,
    last_value=charts.last_value,
)


# --- sessions and pages -------------------------------------------------------------------------------


def runtime_of(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def _session_actor(request: Request, session_id: str) -> Actor | None:
    rt = runtime_of(request)
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


def to_login(request: Request) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    suffix = "" if target == "/" else f"?next={quote(target, safe='')}"
    return RedirectResponse(f"/login{suffix}", status_code=303)


def csrf_ok(request: Request, sent: str | None) -> bool:
    expected = request.cookies.get(CSRF_COOKIE, "")
    sent = sent or request.headers.get(CSRF_HEADER, "")
    return bool(expected) and hmac.compare_digest(sent.encode(), expected.encode())


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
    """Sign-in check, the page's reads, then the template with the layout's shared context.

    A page's build may name the page itself (`_title`, e.g. the plan's name) or answer an error (`_status`).
    """
    actor = await session_actor(request)
    if actor is None:
        return to_login(request)
    rt = runtime_of(request)
    context, people, health = await run_in_threadpool(_read, rt, actor, build)
    status = int(context.pop("_status", 200))
    shared = {
        "title": context.pop("_title", title),
        "now": rt.clock.now(),
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
