"""Any OpenAI-compatible server (OpenAI, Ollama, vLLM, llama.cpp) through the official SDK.

The SDK's own retries are off: this module retries 429, 5xx and connection errors itself, honouring
`Retry-After`, so that every wait goes through an injectable `sleep` and every failure maps to one of
our LLMError types. Timeouts are not retried: the phase's time budget belongs to the caller.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import openai
from openai import OpenAI

from storyloom.domain.phases import Phase, estimate_tokens, phase_spec
from storyloom.pipeline.llm.base import (
    LLMBadResponse,
    LLMError,
    LLMRateLimited,
    LLMRequest,
    LLMResponse,
    LLMTimeout,
    LLMUnavailable,
)

NO_KEY = "not-needed"  # local servers (Ollama, llama.cpp) accept any key


def retry_after_seconds(
    headers: Mapping[str, str] | httpx.Headers | None, now: datetime | None = None
) -> float | None:
    """Seconds the server asked us to wait: `retry-after-ms`, or `Retry-After` as seconds or HTTP date."""
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(float(millis) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


class OpenAIProvider:
    """Chat completions against `base_url`; JSON phases ask for `response_format=json_object`."""

    name = "openai"

    def __init__(
        self,
        *,
        base_url: str | None = None,
        model: str = "gpt-4o-mini",
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_retries: int = 3,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        client: OpenAI | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.base_url = base_url
        self.model = model
        self.timeout = timeout
        self.max_retries = max(0, max_retries)
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self.sleep = sleep
        env = os.environ if environ is None else environ
        self._client = client or OpenAI(
            base_url=base_url,
            api_key=env.get(api_key_env) or NO_KEY,
            timeout=timeout,
            max_retries=0,
        )

    def __repr__(self) -> str:  # never show the key
        return f"OpenAIProvider(base_url={self.base_url!r}, model={self.model!r})"

    def backoff(self, retry: int) -> float:
        """Wait before retry number `retry` (0-based) when the server gave no Retry-After."""
        return min(self.backoff_cap, self.backoff_base * (2**retry))

    def complete(self, request: LLMRequest) -> LLMResponse:
        started = time.monotonic()
        model = request.model or self.model
        kwargs = self._arguments(request, model)
        error: LLMError | None = None
        attempts = 0
        for retry in range(self.max_retries + 1):
            attempts += 1
            try:
                completion = self._client.chat.completions.create(**kwargs)
            except openai.APITimeoutError:
                raise LLMTimeout(
                    f"{self._where(model)} did not answer within {request.timeout:g}s (attempt {attempts})"
                ) from None
            except openai.APIStatusError as exc:
                error = self._status_error(exc, model)
                if not error.retryable:
                    raise error from None
            except openai.APIConnectionError as exc:
                error = LLMUnavailable(f"{self._where(model)} unreachable: {exc}")
            except openai.OpenAIError as exc:
                raise LLMBadResponse(f"{self._where(model)} gave an unusable answer: {exc}") from None
            else:
                return self._response(completion, request, model, started, attempts)
            if retry == self.max_retries:
                break
            hint = error.retry_after if isinstance(error, LLMRateLimited) else None
            self.sleep(min(hint if hint is not None else self.backoff(retry), self.backoff_cap))
        assert error is not None
        error.args = (f"{error.args[0]} (gave up after {attempts} attempts)",)
        raise error

    def _where(self, model: str) -> str:
        return f"LLM provider at {self.base_url or 'api.openai.com'} (model {model})"

    def _arguments(self, request: LLMRequest, model: str) -> dict[str, Any]:
        messages: list[dict[str, str]] = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages.append({"role": "user", "content": request.prompt})
        kwargs: dict[str, Any] = {"model": model, "messages": messages, "timeout": request.timeout}
        if request.max_tokens:
            kwargs["max_tokens"] = request.max_tokens
        if phase_spec(Phase(request.phase)).output_kind == "json":
            kwargs["response_format"] = {"type": "json_object"}
        return kwargs

    def _status_error(self, exc: openai.APIStatusError, model: str) -> LLMError:
        status = exc.status_code
        detail = f"{self._where(model)} answered HTTP {status}: {exc.message}"
        if status == 429:
            return LLMRateLimited(detail, retry_after=retry_after_seconds(exc.response.headers))
        if status >= 500 or status == 408:
            return LLMUnavailable(detail, status_code=status)
        return LLMBadResponse(detail, status_code=status)

    def _response(
        self, completion: Any, request: LLMRequest, model: str, started: float, attempts: int
    ) -> LLMResponse:
        choices = getattr(completion, "choices", None)
        if not choices:
            raise LLMBadResponse(f"{self._where(model)} returned no choices")
        choice = choices[0]
        text = getattr(choice.message, "content", None)
        if text is None:
            raise LLMBadResponse(f"{self._where(model)} returned a choice without content")
        usage = getattr(completion, "usage", None)
        prompt_tokens = getattr(usage, "prompt_tokens", None)
        completion_tokens = getattr(usage, "completion_tokens", None)
        return LLMResponse(
            text=text,
            prompt_tokens=(
                prompt_tokens
                if prompt_tokens is not None
                else estimate_tokens(f"{request.system} {request.prompt}")
            ),
            completion_tokens=completion_tokens if completion_tokens is not None else estimate_tokens(text),
            model=getattr(completion, "model", None) or model,
            provider=self.name,
            latency_ms=(time.monotonic() - started) * 1000,
            raw_finish_reason=getattr(choice, "finish_reason", None),
            attempts=attempts,
        )
