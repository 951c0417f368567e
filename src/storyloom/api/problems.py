"""RFC 9457 problem+json for every error the API returns, the unexpected ones too."""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storyloom.domain.text import escaped
from storyloom.services.errors import ServiceError

log = structlog.get_logger(__name__)

PROBLEM = "application/problem+json"
REQUEST_ID_HEADER = "X-Request-ID"
_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    422: "Unprocessable entity",
    429: "Too many requests",
    500: "Internal server error",
}


class ProblemError(BaseModel):
    loc: list[str | int] = Field(description='where the problem is, e.g. ["body", 3, "labels", "v"]')
    msg: str


class Problem(BaseModel):
    """The body of every error response (RFC 9457)."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[ProblemError] = Field(default_factory=list)
    code: str | None = Field(default=None, description="a machine-readable reason, where one applies")
    request_id: str | None = Field(default=None, description="500 only: the id the server log carries")


def problem(
    status: int,
    detail: str,
    *,
    title: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    """A problem+json response; `extra` adds members (RFC 9457 extensions) such as `accepted`."""
    body: dict[str, Any] = {
        "type": f"https://storyloom.dev/problems/{status}"
        if code is None
        else f"https://storyloom.dev/problems/{code}",
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "errors": errors or [],
    }
    if code:
        body["code"] = code
    body.update(extra or {})
    return JSONResponse(escaped(body), status_code=status, media_type=PROBLEM, headers=headers)


def validation_errors(errors: Any, *, prefix: tuple[str | int, ...] = ()) -> list[dict[str, Any]]:
    """Pydantic errors as `{loc, msg}` (no echo of the input: it may be huge or secret)."""
    return [{"loc": [*prefix, *e["loc"]], "msg": e["msg"]} for e in errors]


def summary(errors: list[dict[str, Any]]) -> str:
    """The first few errors as one `loc: msg; ...` line for `detail`."""
    return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors[:5])


def install(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service(_: Request, exc: ServiceError) -> JSONResponse:
        return problem(exc.status, exc.detail, title=exc.title, errors=exc.errors, code=exc.code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(exc.errors())
        return problem(422, summary(errors) or "invalid request", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers) if exc.headers else None
        return problem(exc.status_code, str(exc.detail), headers=headers)


class CatchAll:
    """Any exception no handler took becomes a 500 problem with a request id; the traceback goes to the log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception:
            request_id = uuid.uuid4().hex
            log.exception(
                "request failed", request_id=request_id, method=scope.get("method"), path=scope.get("path")
            )
            if started:  # the status line is already out: all that is left is to end the response
                raise
            response = problem(
                500,
                f"an unexpected error occurred; the server log has the details under request id {request_id}",
                headers={REQUEST_ID_HEADER: request_id},
                extra={"request_id": request_id},
            )
            await response(scope, receive, send)
