"""Response bodies as the API renders them today, one module per area: the OpenAPI document's types.

The routers keep returning what the services build (so no member is dropped, renamed or reformatted);
each operation names its model with `openapi.answers(...)`, and tests check real answers against them.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"}, description="RFC 3339, UTC")]


class Body(BaseModel):
    """A fixed shape: these members, always present unless they have a default, and no others."""

    model_config = ConfigDict(extra="forbid")


class OpenBody(BaseModel):
    """A shape with these members and possibly others (an event payload carries what its action recorded)."""

    model_config = ConfigDict(extra="allow")


Unreadable = Annotated[
    list[str],
    Field(
        default_factory=list,
        description="only on a row an older version stored: `<field>: <problem>` for each repaired value",
    ),
]
