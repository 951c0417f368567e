"""Liveness and readiness."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from storyloom.api.schemas import Body


class Liveness(Body):
    status: Literal["ok"]


class Readiness(Body):
    status: Literal["ready", "not ready"]
    checks: dict[str, str] = Field(
        description='`database` and `engine`: "ok", else what failed (e.g. "unreachable: OperationalError")'
    )
