"""`POST /api/v2/alerts`: Alertmanager's request shape; the answer adds what happened to each alert."""

from __future__ import annotations

from pydantic import Field

from storyloom.api.schemas import Body


class Ingested(Body):
    accepted: int = Field(description="how many alerts were stored")
    fired: list[str] = Field(description="fingerprints of the alerts fired (or kept firing)")
    resolved: list[str] = Field(description="fingerprints of the alerts resolved")
