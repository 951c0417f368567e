"""The built-in demo receiver's inbox."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from storyloom.api.schemas import Body, Timestamp


class InboxEntry(Body):
    id: int
    webhook_id: str | None
    signature_valid: bool
    error: str | None = Field(description="why the signature did not verify")
    headers: dict[str, str] = Field(description="as received, without credentials; the signature redacted")
    body: Any = Field(description="the JSON body, or the text when it was not JSON")
    received_at: Timestamp
