"""Rows the background passes set aside."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from storyloom.api.schemas import Body, Timestamp

Pass = Literal["notifier", "notifier.flush", "delivery", "scheduler", "health"]


class SetAsideRow(Body):
    pass_name: Pass = Field(alias="pass")
    item: str = Field(
        description="the row: a fingerprint, group key, delivery id, backlog row id, or a health rule or reconciler"
    )
    error: str
    at: Timestamp
