"""Personas and the agents that act for them."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from storyloom.api.auth import admin, runtime, viewer
from storyloom.api.openapi import answers
from storyloom.api.schemas.catalog import Agent, Persona
from storyloom.domain.text import Text
from storyloom.runtime import Runtime
from storyloom.services import catalog
from storyloom.services.actors import Actor

router = APIRouter(prefix="/api", tags=["personas and agents"])


class PersonaIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text = Field(min_length=1, max_length=200)
    kind: Literal["author", "character"]
    summary: Text | None = Field(default=None, max_length=5000)


class AgentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text = Field(min_length=1, max_length=200)
    persona_id: Text = Field(min_length=1, max_length=64)
    provider: Text | None = Field(default=None, max_length=40)
    model: Text | None = Field(default=None, max_length=200)


def _persona_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "persona_id": row["id"],
        "name": row["name"],
        "kind": row["kind"],
        "summary": row["summary"],
        "plan_id": row.get("plan_id"),
        "created_at": row["created_at"],
    }


def _agent_view(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": row["id"],
        "agent_id": row["id"],
        "name": row["name"],
        "persona_id": row["persona_id"],
        "provider": row["provider"],
        "model": row["model"],
        "created_at": row["created_at"],
    }


@router.get("/personas", responses=answers(list[Persona]))
def list_personas(_: Actor = Depends(viewer), rt: Runtime = Depends(runtime)) -> list[dict[str, Any]]:
    """List personas.

    Author and character personas, each with the plan a character belongs to.
    """
    with rt.db.read() as conn:
        return [_persona_view(r) for r in catalog.list_personas(conn)]


@router.post(
    "/personas", status_code=201, responses=answers(Persona, status=201, description="The new persona")
)
def create_persona(
    body: PersonaIn, actor: Actor = Depends(admin), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    """Create a persona.

    An `author` persona owns plans; a `character` persona owns obligations. Admin only.
    """
    with rt.db.begin() as conn:
        return _persona_view(
            catalog.create_persona(
                conn, name=body.name, kind=body.kind, summary=body.summary, now=rt.clock.now(), actor=actor
            )
        )


@router.get("/agents", responses=answers(list[Agent]))
def list_agents(_: Actor = Depends(viewer), rt: Runtime = Depends(runtime)) -> list[dict[str, Any]]:
    """List agents.

    Each agent acts for one persona, with its provider and model.
    """
    with rt.db.read() as conn:
        return [_agent_view(r) for r in catalog.list_agents(conn)]


@router.post("/agents", status_code=201, responses=answers(Agent, status=201, description="The new agent"))
def create_agent(
    body: AgentIn, actor: Actor = Depends(admin), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    """Create an agent.

    The agent acts for `persona_id` (an unknown one is a 422 naming it). Admin only.
    """
    with rt.db.begin() as conn:
        return _agent_view(
            catalog.create_agent(
                conn,
                name=body.name,
                persona_id=body.persona_id,
                provider=body.provider,
                model=body.model,
                now=rt.clock.now(),
                actor=actor,
            )
        )
