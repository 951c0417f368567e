"""Persona obligations (docs/reference/payloads.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from storyloom.api.schemas import Body, Timestamp


class ResolutionNote(Body):
    note: str
    actor: str = Field(description="the token's name")
    agent_id: str = Field(description="the agent it acted as")
    at: Timestamp


class Obligation(Body):
    obligation_id: str
    plan_id: str
    persona_id: str
    character_id: str | None
    slug: str
    title: str
    description: str
    status: Literal["open", "resolved", "dismissed"]
    source_phase: str
    source_backlog_id: str
    branch_slug: str
    voice_drift: bool
    resolution_notes: list[ResolutionNote] = Field(description="oldest first, one per resolve or dismiss")
    resolved_at: Timestamp | None
    resolved_by: str | None
    created_at: Timestamp
    updated_at: Timestamp


class ObligationPage(Body):
    items: list[Obligation] = Field(description="oldest first")
    page: int
    page_size: int
    total: int = Field(description="obligations matching the filter, on every page")
