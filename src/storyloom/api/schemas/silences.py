"""Silences."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from storyloom.api.schemas import Body, Timestamp, Unreadable


class Silence(Body):
    id: str
    silence_id: str = Field(description="the same as `id`")
    matchers: list[str] = Field(description='Alertmanager matchers, e.g. alert_id="tool:failed"')
    starts_at: Timestamp
    ends_at: Timestamp
    comment: str
    created_by: str = Field(description="the token's name")
    created_at: Timestamp
    updated_at: Timestamp
    status: Literal["pending", "active", "expired"]
    unreadable: Unreadable
