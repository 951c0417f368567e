"""Use-case errors that the API turns into problem+json and the CLI into one clear line."""

from __future__ import annotations

from pydantic import ValidationError


class ServiceError(Exception):
    status = 400
    title = "Bad request"

    def __init__(
        self, detail: str, *, errors: list[dict[str, object]] | None = None, code: str | None = None
    ):
        super().__init__(detail)
        self.detail = detail
        self.errors = errors or []
        self.code = code


class NotFound(ServiceError):
    status = 404
    title = "Not found"


class Invalid(ServiceError):
    status = 422
    title = "Unprocessable entity"

    @classmethod
    def field(cls, loc: list[str | int], msg: str, code: str | None = None) -> Invalid:
        return cls(f"{'.'.join(str(p) for p in loc)}: {msg}", errors=[{"loc": loc, "msg": msg}], code=code)

    @classmethod
    def from_validation(cls, exc: ValidationError, code: str | None = None) -> Invalid:
        """A request body's pydantic errors, each located under `body` as FastAPI would."""
        problems = [(["body", *e["loc"]], e["msg"]) for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(map(str, loc))}: {msg}" for loc, msg in problems[:5])
        return cls(detail, errors=[{"loc": loc, "msg": msg} for loc, msg in problems], code=code)


class Forbidden(ServiceError):
    status = 403
    title = "Forbidden"


class Conflict(ServiceError):
    status = 409
    title = "Conflict"
