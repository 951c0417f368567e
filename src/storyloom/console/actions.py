"""Console forms that act (work without scripts): acknowledge an alert, take it back, run a drill.

Each form posts the CSRF cookie's value in its hidden `csrf_token` field; the poster must be a signed-in
operator. Success redirects to the alert (post/redirect/get) or shows the drill's result; a refusal shows
the problem's message with its status.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from storyloom.api.routers.acknowledgements import AcknowledgeIn
from storyloom.api.routers.drills import DrillIn
from storyloom.console.render import csrf_ok, render, runtime_of, session_actor
from storyloom.runtime import Runtime
from storyloom.services import acknowledgements, drills
from storyloom.services.actors import Actor
from storyloom.services.errors import Forbidden, Invalid, ServiceError

router = APIRouter(include_in_schema=False)

CONSOLE_DRILL_TIMEOUT = timedelta(seconds=30)
Model = TypeVar("Model", bound=BaseModel)


def _valid(model: type[Model], **fields: Any) -> Model:
    """The form's fields under the API body's rules (text, lengths), refused as the API would."""
    try:
        return model.model_validate(fields)
    except ValidationError as exc:
        raise Invalid.from_validation(exc) from None


async def _act(
    request: Request,
    csrf_token: str,
    action: Callable[[Runtime, Actor], Any],
    done: Callable[[Any], Awaitable[Response]] | None = None,
    *,
    nav: str,
) -> Response:
    """Authorize the form's poster, run `action` in a worker thread, then `done(result)`; a refusal is shown."""
    page = request.url.path.rsplit("/", 1)[0]  # the page the form is on: /alerts/{fingerprint}, /routes
    actor = await session_actor(request)
    if actor is None:
        return RedirectResponse(f"/login?next={quote(page, safe='')}", status_code=303)
    try:
        if not csrf_ok(request, csrf_token):
            raise Forbidden("CSRF check failed: reload the page and try again")
        if not actor.at_least("operator"):
            raise Forbidden(f"this action needs the operator role; your token {actor.name!r} is {actor.role}")
        result = await run_in_threadpool(action, runtime_of(request), actor)
    except ServiceError as exc:
        refused = {"_status": exc.status, "_message": exc.detail}
        return await render(request, "error.html", lambda _r, _a: refused, title="Refused", nav=nav)
    if done is None:
        return RedirectResponse(page, status_code=303)
    return await done(result)


@router.post("/alerts/{fingerprint}/acknowledge", response_class=HTMLResponse)
async def acknowledge(
    request: Request,
    fingerprint: str,
    csrf_token: str = Form(""),
    owner: str = Form(""),
    note: str = Form(""),
) -> Response:
    """The alert page's Acknowledge form; back to the alert, which shows who is on it."""

    def action(rt: Runtime, actor: Actor) -> None:
        body = _valid(AcknowledgeIn, owner=owner.strip() or None, note=note)
        acknowledgements.acknowledge(
            rt.db, actor, fingerprint, rt.clock.now(), owner=body.owner, note=body.note
        )

    return await _act(request, csrf_token, action, nav="alerts")


@router.post("/alerts/{fingerprint}/unacknowledge", response_class=HTMLResponse)
async def unacknowledge(request: Request, fingerprint: str, csrf_token: str = Form("")) -> Response:
    """The alert page's "Take it back" button."""

    def action(rt: Runtime, actor: Actor) -> None:
        acknowledgements.unacknowledge(rt.db, actor, fingerprint, rt.clock.now())

    return await _act(request, csrf_token, action, nav="alerts")


@router.post("/routes/drill", response_class=HTMLResponse)
async def drill(
    request: Request,
    csrf_token: str = Form(""),
    receiver: str = Form(""),
    alert_id: str = Form(drills.DRILL_ALERT_ID),
) -> Response:
    """The Routes page's "Send a test alert": runs a drill and shows each receiver's answer."""

    def action(rt: Runtime, actor: Actor) -> dict[str, Any]:
        body = _valid(DrillIn, alert_id=alert_id.strip(), receiver=receiver.strip() or None)
        return drills.run_drill(
            rt, actor, alert_id=body.alert_id, receiver=body.receiver, timeout=CONSOLE_DRILL_TIMEOUT
        )

    async def shown(report: dict[str, Any]) -> Response:
        return await render(
            request, "drill.html", lambda _r, _a: {"drill": report}, title="Drill result", nav="routes"
        )

    return await _act(request, csrf_token, action, shown, nav="routes")
