"""What every LLM provider takes, returns and raises.

Providers are synchronous: planner steps call them inside DBOS steps running in worker threads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True)
class LLMRequest:
    """One planner call. `attempt` is the backlog item's attempt count across resumes (1-based)."""

    phase: str
    prompt: str
    system: str = ""
    model: str = ""
    provider: str = ""
    plan_id: str = ""
    backlog_id: str = ""
    attempt: int = 1
    max_tokens: int | None = None
    timeout: float = 60.0  # seconds
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LLMResponse:
    text: str
    prompt_tokens: int
    completion_tokens: int
    model: str
    provider: str
    latency_ms: float
    raw_finish_reason: str | None = None
    attempts: int = 1  # HTTP attempts the provider made (its own retries included)
    critique_reject: bool = False  # the offline `critique_reject` fault: the critic must reject this output

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class LLMError(Exception):
    """A provider call failed. `retryable`: trying the same call later may succeed."""

    retryable: bool = True

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class LLMTimeout(LLMError):
    """The provider did not answer within the request's timeout."""


class LLMUnavailable(LLMError):
    """The provider is down: connection refused or reset, 5xx, or retries ran out on them."""


class LLMRateLimited(LLMError):
    """429 after the provider's own retries; `retry_after` (seconds) is the server's hint, if any."""

    def __init__(
        self, message: str, *, retry_after: float | None = None, status_code: int | None = 429
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.retry_after = retry_after


class LLMBadResponse(LLMError):
    """The provider refused the request (4xx other than 429) or answered with something unusable."""

    retryable = False


@runtime_checkable
class Provider(Protocol):
    name: str

    def complete(self, request: LLMRequest) -> LLMResponse: ...
