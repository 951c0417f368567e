"""Config reload."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from storyloom.api.schemas import Body


class Reloaded(Body):
    status: Literal["reloaded"]
    receivers: list[str] = Field(description="the receivers now configured, by name")
