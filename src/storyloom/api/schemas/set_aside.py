"""Rows the background passes set aside."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from storyloom.api.schemas import Body, Timestamp


class SetAsideRow(Body):
    pass_name: Literal["notifier", "notifier.flush", "delivery", "scheduler"] = Field(alias="pass")
    item: str = Field(description="the row: a fingerprint, group key, delivery id or backlog row id")
    error: str
    at: Timestamp
