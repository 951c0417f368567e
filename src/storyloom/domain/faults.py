"""Injected faults (`llm.faults[]` of the config): which offline planner calls fail, and how."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from storyloom.domain.durations import parse_duration
from storyloom.domain.phases import Phase

FaultMode = Literal["fail", "timeout", "malformed", "slow", "critique_reject", "raise"]


class FaultSpec(BaseModel):
    """`llm.faults[]` of the config: make matching calls fail, hang, garble, slow down, be rejected or raise."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    phase: str = "*"
    mode: FaultMode
    times: int | None = Field(default=None, ge=0)  # the first N attempts of each matching item; None = all
    delay: timedelta = timedelta(0)  # for slow / timeout

    @field_validator("phase")
    @classmethod
    def _known_phase(cls, value: str) -> str:
        if value != "*" and value not in {p.value for p in Phase}:
            known = ", ".join(p.value for p in Phase)
            raise ValueError(f"unknown phase {value!r}: expected '*' or one of {known}")
        return value

    @field_validator("delay", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return parse_duration(value)
        return value

    def applies_to(self, phase: str, attempt: int) -> bool:
        """Whether this fault hits the call of `phase` at the item's `attempt` (1-based)."""
        if self.phase != "*" and self.phase != phase:
            return False
        return self.times is None or attempt <= self.times
