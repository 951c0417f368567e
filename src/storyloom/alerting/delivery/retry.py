"""The retry policy, pure: time and randomness are passed in, so it is tested without clocks or sleeps."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal, Protocol

from storyloom.alerting.delivery.send import SendOutcome
from storyloom.domain.durations import format_duration

Decision = tuple[Literal["retry"], datetime] | tuple[Literal["dead"], str]

JITTER = 0.2  # delays > 0 are spread uniformly over ±20%


class Random(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


def next_attempt(
    outcome: SendOutcome,
    attempt_number: int,
    first_attempt_at: datetime,
    now: datetime,
    schedule: Sequence[timedelta],
    max_age: timedelta,
    rng: Random,
    *,
    previous_client_errors: int = 0,
) -> Decision:
    """When to try again after attempt `attempt_number` (1-based) ended in `outcome`, or why not.

    `schedule[i]` is the delay before attempt i+1, so the next attempt waits `schedule[attempt_number]`
    (±20% jitter when > 0), or the receiver's Retry-After when that is longer. No attempt is placed after
    `first_attempt_at + max_age`. A client error (other 4xx) is retried once: pass how many earlier
    attempts of this delivery were client errors.
    """
    reason = outcome.error or outcome.kind
    if outcome.kind == "delivered":
        raise ValueError("a delivered request needs no next attempt")
    if outcome.kind == "disable":
        return ("dead", reason)
    if outcome.kind == "dead":
        return ("dead", reason)
    if outcome.kind == "client_error" and previous_client_errors >= 1:
        return ("dead", f"{reason}; retried once, giving up: fix the receiver or its config, then replay")
    if attempt_number >= len(schedule):
        return ("dead", f"{reason}; retry schedule exhausted after {attempt_number} attempts")
    deadline = first_attempt_at + max_age
    if now >= deadline:
        return ("dead", f"{reason}; gave up after max_age {format_duration(max_age)}")
    delay = schedule[attempt_number]
    if delay > timedelta(0):
        delay = delay * rng.uniform(1 - JITTER, 1 + JITTER)
    if outcome.retry_after is not None and outcome.retry_after > delay:
        delay = outcome.retry_after
    return ("retry", min(now + delay, deadline))
