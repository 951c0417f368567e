"""Bearer tokens (and the console's session cookie with CSRF) → an Actor with a role."""

from __future__ import annotations

import hmac
from collections.abc import Callable

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from storyloom.runtime import Runtime
from storyloom.services.actors import Actor
from storyloom.services.errors import ServiceError
from storyloom.services.tokens import authenticate

SESSION_COOKIE = "storyloom_session"
CSRF_COOKIE = "storyloom_csrf"
CSRF_HEADER = "x-csrf-token"
CONSOLE_HEADER = "x-console-client"
CLI_HEADER = "x-storyloom-client"
_SAFE = {"GET", "HEAD", "OPTIONS"}

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


def current_actor(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Actor:
    """Authenticate by bearer token; the console's cookie session also works, with CSRF on unsafe methods."""
    rt = runtime(request)
    token = credentials.credentials if credentials else None
    via_cookie = False
    if token is None:
        token = request.cookies.get(SESSION_COOKIE)
        via_cookie = token is not None
    if not token:
        raise Unauthorized(
            "missing bearer token: send `Authorization: Bearer <token>` (see `storyloom token create`)"
        )
    if via_cookie and request.method not in _SAFE:
        sent = request.headers.get(CSRF_HEADER, "")
        expected = request.cookies.get(CSRF_COOKIE, "")
        if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
            raise RoleForbidden("CSRF check failed: reload the console page and try again")
    with rt.db.begin() as conn:
        actor = authenticate(conn, token, source=request_source(request), now=rt.clock.now())
    if actor is None:
        raise Unauthorized("invalid or revoked token")
    request.state.actor = actor
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
