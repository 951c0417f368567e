"""Bearer tokens (and the console's session cookie with CSRF) → an Actor with a role.

Failed bearer tokens and sign-ins spend their client's allowance (`security.failed_auth`); a client with
none left gets 429 with `Retry-After`, except with a valid token, which always works.
"""

from __future__ import annotations

import hmac
import threading
from collections.abc import Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from storyloom.api.auth_failures import FailedAuthLimiter, client_key
from storyloom.runtime import Runtime
from storyloom.services.actors import Actor
from storyloom.services.errors import ServiceError
from storyloom.services.sessions import actor_for_session
from storyloom.services.tokens import authenticate

SESSION_COOKIE = "storyloom_session"
CSRF_COOKIE = "storyloom_csrf"
CSRF_HEADER = "x-csrf-token"
CONSOLE_HEADER = "x-console-client"
CLI_HEADER = "x-storyloom-client"
_SAFE = {"GET", "HEAD", "OPTIONS"}
_limiter_lock = threading.Lock()

bearer = HTTPBearer(auto_error=False, description="An API token from `storyloom token create`")


class Unauthorized(ServiceError):
    status = 401
    title = "Unauthorized"


class RoleForbidden(ServiceError):
    status = 403
    title = "Forbidden"


def runtime(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


def request_source(request: Request) -> str:
    if request.headers.get(CONSOLE_HEADER) == "storyloom-console":
        return "console"
    if request.headers.get(CLI_HEADER) == "cli":
        return "cli"
    return "api"


def failed_auth_limiter(request: Request) -> FailedAuthLimiter:
    """The app's one limiter, made on first use."""
    state = request.app.state
    with _limiter_lock:
        limiter: FailedAuthLimiter | None = getattr(state, "failed_auth_limiter", None)
        if limiter is None:
            limiter = state.failed_auth_limiter = FailedAuthLimiter()
    return limiter


def token_actor(request: Request, token: str, source: str) -> Actor:
    """The token's actor; an invalid one spends the client's allowance: 401, or 429 once none is left."""
    rt = runtime(request)
    with rt.db.begin() as conn:
        actor = authenticate(conn, token, source=source, now=rt.clock.now())
    if actor is not None:
        return actor
    limiter = failed_auth_limiter(request)
    client = client_key(request.client.host if request.client else None)
    policy = rt.config.security.failed_auth
    now = rt.clock.now()
    wait = limiter.retry_after(client, now, policy)
    if wait is not None:
        raise HTTPException(
            429,
            f"too many failed authentications from {client}: retry in {wait} s with a valid token",
            headers={"Retry-After": str(wait)},
        )
    limiter.record_failure(client, now, policy)
    raise Unauthorized("invalid or revoked token")


def current_actor(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Actor:
    """Authenticate by bearer token; the console's cookie session also works, with CSRF on unsafe methods."""
    source = request_source(request)
    if credentials is not None:
        actor = token_actor(request, credentials.credentials, source)
    else:
        actor = _cookie_actor(request, source)
    request.state.actor = actor
    return actor


def _cookie_actor(request: Request, source: str) -> Actor:
    session_id = request.cookies.get(SESSION_COOKIE)
    if not session_id:
        raise Unauthorized(
            "missing bearer token: send `Authorization: Bearer <token>` (see `storyloom token create`)"
        )
    if request.method not in _SAFE:
        sent = request.headers.get(CSRF_HEADER, "")
        expected = request.cookies.get(CSRF_COOKIE, "")
        if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
            raise RoleForbidden("CSRF check failed: reload the console page and try again")
    rt = runtime(request)
    with rt.db.begin() as conn:
        actor = actor_for_session(conn, session_id, source=source, now=rt.clock.now())
    if actor is None:
        raise Unauthorized("the console session has expired or was signed out: sign in again")
    return actor


def require(role: str) -> Callable[..., Actor]:
    def dependency(actor: Actor = Depends(current_actor)) -> Actor:
        if not actor.at_least(role):
            raise RoleForbidden(
                f"this action needs the {role} role; your token {actor.name!r} is {actor.role}"
            )
        return actor

    return dependency


viewer = require("viewer")
operator = require("operator")
admin = require("admin")
