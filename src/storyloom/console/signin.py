"""Sign-in and sign-out: a server-side session per sign-in, its id in an HttpOnly cookie, CSRF on the forms."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from storyloom.api.auth import CSRF_COOKIE, SESSION_COOKIE, Unauthorized, token_actor
from storyloom.console.render import csrf_ok, runtime_of, templates
from storyloom.services.sessions import open_session, revoke_session

router = APIRouter(include_in_schema=False)


def _secure(request: Request) -> bool:
    """Secure cookies when the console is served, or publicly reached, over https."""
    return request.url.scheme == "https" or runtime_of(request).config.public_url.startswith("https://")


def _signed_in(request: Request, token: str, next_: str | None) -> Response:
    """Check the token (a wrong one spends the client's failure allowance), open a session, set its cookies.

    A refusal is the login page: 401, or 429 with `Retry-After` once the client is limited (problem+json
    for a client that does not ask for HTML).
    """
    rt = runtime_of(request)
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
    if not csrf_ok(request, csrf_token):
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
        rt = runtime_of(request)
        with rt.db.begin() as conn:
            revoke_session(conn, session_id, now=rt.clock.now())


@router.post("/logout")
async def logout(request: Request, csrf_token: str = Form("")) -> Response:
    """Revoke the session server-side (a copied cookie stops working too) and clear the cookies."""
    if not csrf_ok(request, csrf_token):
        return HTMLResponse("CSRF check failed: reload the page and sign out again.", status_code=403)
    await run_in_threadpool(_sign_out, request)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(
        SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request)
    )
    response.delete_cookie(CSRF_COOKIE, path="/", samesite="strict", secure=_secure(request))
    return response
