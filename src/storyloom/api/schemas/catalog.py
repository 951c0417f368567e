"""Personas and agents."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from storyloom.api.schemas import Body, Timestamp


class Persona(Body):
    id: str
    persona_id: str = Field(description="the same as `id`")
    name: str
    kind: Literal["author", "character"]
    summary: str | None
    plan_id: str | None = Field(description="the plan a character belongs to; null for an author")
    created_at: Timestamp


class Agent(Body):
    id: str
    agent_id: str = Field(description="the same as `id`")
    name: str
    persona_id: str
    provider: str | None
    model: str | None
    created_at: Timestamp
