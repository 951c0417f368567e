"""The openai provider against a real OpenAI-compatible HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storyloom.domain.critique import CritiqueContext, critique
from storyloom.domain.phases import Phase, validate_output
from storyloom.pipeline.llm.base import (
    LLMBadResponse,
    LLMRateLimited,
    LLMRequest,
    LLMTimeout,
    LLMUnavailable,
    Provider,
)
from storyloom.pipeline.llm.openai_provider import OpenAIProvider, retry_after_seconds
from storyloom.pipeline.prompts import render_phase_prompt, system_prompt

try:
    from tests.support.fake_openai import FakeOpenAIServer, FakeReply
except ModuleNotFoundError:  # `pytest` started without the project root on sys.path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.support.fake_openai import FakeOpenAIServer, FakeReply

VALID_WORLD_BIBLE = json.dumps(
    {
        "characters": [{"name": "Mara Vell", "summary": "ferrywoman", "status": "active"}],
        "locations": [{"name": "Glass Harbor", "summary": "port"}],
        "systems": [],
    }
)


class FakeSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as running:
        yield running


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


def provider_for(server: FakeOpenAIServer, sleep: FakeSleep, **kwargs: object) -> OpenAIProvider:
    options: dict[str, object] = {
        "base_url": server.base_url,
        "model": "default-model",
        "api_key_env": "STORYLOOM_TEST_LLM_KEY",
        "timeout": 5.0,
        "max_retries": 3,
        "sleep": sleep,
        "environ": {},
    }
    options.update(kwargs)
    return OpenAIProvider(**options)  # type: ignore[arg-type]


def request(phase: str = "world_bible", **kwargs: object) -> LLMRequest:
    fields: dict[str, object] = {
        "phase": phase,
        "prompt": "Write the world bible.",
        "system": system_prompt(phase),
        "model": "story-model",
        "timeout": 5.0,
    }
    fields.update(kwargs)
    return LLMRequest(**fields)  # type: ignore[arg-type]


def test_normal_reply_with_usage(server: FakeOpenAIServer, sleep: FakeSleep) -> None:
    server.enqueue(FakeReply(content=VALID_WORLD_BIBLE, usage={"prompt_tokens": 42, "completion_tokens": 17}))
    provider = provider_for(server, sleep)
    assert isinstance(provider, Provider)
    response = provider.complete(request(max_tokens=256))
    assert response.text == VALID_WORLD_BIBLE
    assert (response.prompt_tokens, response.completion_tokens, response.total_tokens) == (42, 17, 59)
    assert (response.model, response.provider, response.raw_finish_reason) == (
        "story-model",
        "openai",
        "stop",
    )
    assert response.attempts == 1 and response.latency_ms > 0 and sleep.calls == []
    assert validate_output("world_bible", response.text).ok

    [sent] = server.completions()
    assert sent.body["model"] == "story-model"
    assert sent.body["response_format"] == {"type": "json_object"}
    assert sent.body["max_tokens"] == 256
    assert [m["role"] for m in sent.body["messages"]] == ["system", "user"]
    assert sent.headers["authorization"] == "Bearer not-needed"


def test_api_key_from_env_and_markdown_phase_without_json_mode(
    server: FakeOpenAIServer, sleep: FakeSleep
) -> None:
    provider = provider_for(
        server, sleep, environ={"STORYLOOM_TEST_LLM_KEY": "sk-test-123"}, model="fallback"
    )
    server.enqueue(FakeReply(content="## Scene\n\nProse.", usage=None))
    response = provider.complete(request("scene_weaver", prompt="Write the scene.", model=""))
    [sent] = server.completions()
    assert sent.headers["authorization"] == "Bearer sk-test-123"
    assert "response_format" not in sent.body and sent.body["model"] == "fallback"
    assert response.completion_tokens == 3  # estimated from words when usage is missing from the body
    assert "sk-test-123" not in repr(provider)


def test_429_with_retry_after_then_success(server: FakeOpenAIServer, sleep: FakeSleep) -> None:
    server.enqueue(
        FakeReply(status=429, headers={"Retry-After": "2"}),
        FakeReply(status=429, headers={"Retry-After": "120"}),
        FakeReply(content=VALID_WORLD_BIBLE),
    )
    response = provider_for(server, sleep, backoff_cap=30.0).complete(request())
    assert response.text == VALID_WORLD_BIBLE and response.attempts == 3
    assert sleep.calls == [2.0, 30.0]  # honoured, and capped
    assert len(server.completions()) == 3


def test_429_until_exhausted_raises_rate_limited(server: FakeOpenAIServer, sleep: FakeSleep) -> None:
    server.enqueue(*[FakeReply(status=429, headers={"Retry-After": "1"}) for _ in range(3)])
    with pytest.raises(LLMRateLimited, match="gave up after 3 attempts") as info:
        provider_for(server, sleep, max_retries=2).complete(request())
    assert info.value.retry_after == 1.0 and info.value.retryable
    assert sleep.calls == [1.0, 1.0]


def test_500s_until_exhausted(server: FakeOpenAIServer, sleep: FakeSleep) -> None:
    server.enqueue(*[FakeReply(status=500) for _ in range(4)])
    with pytest.raises(LLMUnavailable, match="HTTP 500") as info:
        provider_for(server, sleep, backoff_base=0.5, backoff_cap=1.5).complete(request())
    assert info.value.status_code == 500 and info.value.retryable
    assert sleep.calls == [0.5, 1.0, 1.5]
    assert len(server.completions()) == 4


def test_503_then_success(server: FakeOpenAIServer, sleep: FakeSleep) -> None:
    server.enqueue(FakeReply(status=503), FakeReply(content=VALID_WORLD_BIBLE))
    assert provider_for(server, sleep).complete(request()).attempts == 2


def test_4xx_is_not_retried(server: FakeOpenAIServer, sleep: FakeSleep) -> None:
    server.enqueue(FakeReply(status=400))
    with pytest.raises(LLMBadResponse, match="HTTP 400") as info:
        provider_for(server, sleep).complete(request())
    assert not info.value.retryable and info.value.status_code == 400
    assert len(server.completions()) == 1 and sleep.calls == []


def test_malformed_json_content_is_returned_for_validation(
    server: FakeOpenAIServer, sleep: FakeSleep
) -> None:
    server.enqueue(FakeReply(content="Sure! Here is the world bible: characters are Mara and Ilsen."))
    response = provider_for(server, sleep).complete(request())
    result = validate_output("world_bible", response.text)
    assert not result.ok and result.errors[0].startswith("$: invalid JSON")
    assert not critique("world_bible", response.text).ok


def test_unusable_body_is_a_bad_response(server: FakeOpenAIServer, sleep: FakeSleep) -> None:
    server.enqueue(FakeReply(body={"id": "x", "object": "chat.completion", "choices": []}))
    with pytest.raises(LLMBadResponse, match="no choices"):
        provider_for(server, sleep).complete(request())


def test_slow_reply_beyond_timeout_is_a_timeout(server: FakeOpenAIServer, sleep: FakeSleep) -> None:
    server.enqueue(FakeReply(content=VALID_WORLD_BIBLE, delay=30.0))
    with pytest.raises(LLMTimeout, match=r"did not answer within 0\.3s") as info:
        provider_for(server, sleep).complete(request(timeout=0.3))
    assert info.value.retryable
    assert len(server.completions()) == 1 and sleep.calls == []  # timeouts are not retried


def test_connection_refused_is_unavailable(sleep: FakeSleep) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = OpenAIProvider(
        base_url=f"http://127.0.0.1:{port}/v1", max_retries=1, sleep=sleep, environ={}, timeout=2.0
    )
    with pytest.raises(LLMUnavailable, match="unreachable"):
        provider.complete(request())
    assert sleep.calls == [0.5]


def test_retry_after_parsing() -> None:
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None
    from datetime import UTC, datetime

    now = datetime(2026, 11, 25, 20, 0, 0, tzinfo=UTC)
    assert retry_after_seconds({"retry-after": "Wed, 25 Nov 2026 20:00:10 GMT"}, now=now) == 10.0


def test_every_phase_through_the_default_responder(server: FakeOpenAIServer, sleep: FakeSleep) -> None:
    """Rendered templates → openai provider → fake server answering like the offline provider."""
    provider = provider_for(server, sleep)
    base = {
        "plan_name": "Paper Tides",
        "premise": "a city that rewrites itself",
        "project_title": "Paper Tides",
    }
    values: dict[Phase, object] = {}

    def call(phase: Phase, **context: Any) -> Any:
        prompt = render_phase_prompt(phase, {**base, **context})
        text = provider.complete(request(phase.value, prompt=prompt, system=system_prompt(phase))).text
        result = validate_output(phase, text)
        assert result.ok, (phase, result.errors)
        return result.value

    values[Phase.VISION] = call(Phase.VISION)
    values[Phase.WORLD_BIBLE] = call(Phase.WORLD_BIBLE, vision=values[Phase.VISION])
    values[Phase.ITERATIVE] = call(
        Phase.ITERATIVE, vision=values[Phase.VISION], world_bible=values[Phase.WORLD_BIBLE], chapters=2
    )
    blueprint = call(
        Phase.CHAPTER_ARCHITECT,
        chapter_number=1,
        chapters=2,
        vision=values[Phase.VISION],
        world_bible=values[Phase.WORLD_BIBLE],
        iteration=values[Phase.ITERATIVE],
        previous_chapters=[],
    )
    scroll = call(
        Phase.SCROLL_REFINER,
        chapter_number=1,
        scenes_per_chapter=3,
        open_obligations=[],
        blueprint=blueprint,
        world_bible=values[Phase.WORLD_BIBLE],
    )
    terms = ["Salt Lantern", "Wren Ashdown's oath"]
    prose = call(
        Phase.SCENE_WEAVER,
        chapter_number=1,
        scene_number=2,
        scroll_title="Scroll 1",
        section_title="Part One",
        salient_terms=terms,
        open_obligations=[{"slug": "mara-debt", "title": "the ferryman's toll"}],
        scene={"title": "x"},
        world_bible=values[Phase.WORLD_BIBLE],
    )
    assert len(scroll.sections[0].scenes) == 3
    assert critique(
        "scene_weaver",
        prose,
        CritiqueContext(salient_terms=terms),
    ).ok
    assert "the ferryman's toll" in prose
    json_phases = [r for r in server.completions() if "response_format" in r.body]
    assert len(json_phases) == 5
