"""The tool dispatcher over a real database: provider and model from the agent's defaults, arguments
validated before any provider call, and a tool execution log with secrets redacted."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from storyloom.clock import FrozenClock
from storyloom.config import Config
from storyloom.pipeline.dispatcher import DispatchError, PlannerCall, ToolDispatcher
from storyloom.pipeline.llm.base import LLMRequest, LLMResponse, LLMUnavailable
from storyloom.services.catalog import create_agent, create_persona
from storyloom.store.db import Database
from storyloom.store.tables import alerts, tool_executions
from tests.conftest import make_config

LEAKED_KEY = "sk-live-9f8e7d6c5b4a39281706"


class RecordingProvider:
    """A provider that records what it was asked, and answers or raises `error`."""

    def __init__(self, error: Exception | None = None) -> None:
        self.name = "recording"
        self.error = error
        self.names: list[str] = []  # the provider names the dispatcher asked for
        self.requests: list[LLMRequest] = []

    def __call__(self, provider_name: str) -> RecordingProvider:
        self.names.append(provider_name)
        return self

    def complete(self, request: LLMRequest) -> LLMResponse:
        self.requests.append(request)
        if self.error is not None:
            raise self.error
        return LLMResponse(
            text='{"ok": true}',
            prompt_tokens=41,
            completion_tokens=7,
            model=request.model,
            provider=request.provider,
            latency_ms=1.0,
            raw_finish_reason="stop",
        )


@pytest.fixture
def config() -> Config:
    return make_config(llm={"provider": "openai", "model": "config-model"})


@pytest.fixture
def provider() -> RecordingProvider:
    return RecordingProvider()


@pytest.fixture
def dispatcher(
    db: Database, config: Config, clock: FrozenClock, provider: RecordingProvider
) -> Iterator[ToolDispatcher]:
    tools = ToolDispatcher(db, lambda: config, clock, provider)
    yield tools
    tools.close()


def _agent(db: Database, clock: FrozenClock, provider: str | None, model: str | None) -> str:
    with db.begin() as conn:
        persona = create_persona(conn, name="Ada Vale", kind="author", summary=None, now=clock.now())
        agent = create_agent(
            conn, name="Ada agent", persona_id=persona["id"], provider=provider, model=model, now=clock.now()
        )
    return str(agent["id"])


def _call(agent_id: str, **changes: Any) -> PlannerCall:
    call = PlannerCall(
        phase="vision",
        planner_name="planner.fiction.vision",
        prompt="Write the vision.",
        system="You plan fiction.",
        provider=None,
        model=None,
        agent_id=agent_id,
        persona_id="persona_1",
        plan_id="plan_1",
        backlog_id="vision-plan",
        task_id="task_1",
        attempt=1,
        timeout=30.0,
    )
    return dataclasses.replace(call, **changes)


def _log(db: Database) -> list[dict[str, Any]]:
    with db.read() as conn:
        return [
            dict(r) for r in conn.execute(select(tool_executions).order_by(tool_executions.c.id)).mappings()
        ]


def test_provider_and_model_come_from_the_agent_when_the_call_names_none(
    db: Database, clock: FrozenClock, dispatcher: ToolDispatcher, provider: RecordingProvider
) -> None:
    agent_id = _agent(db, clock, "offline", "agent-model")
    dispatcher.call_planner(_call(agent_id))
    [request] = provider.requests
    assert provider.names == ["offline"] and request.provider == "offline" and request.model == "agent-model"
    [entry] = _log(db)
    assert (entry["request"]["provider"], entry["request"]["model"]) == ("offline", "agent-model")


def test_the_calls_own_provider_and_model_win_over_the_agents(
    db: Database, clock: FrozenClock, dispatcher: ToolDispatcher, provider: RecordingProvider
) -> None:
    agent_id = _agent(db, clock, "offline", "agent-model")
    dispatcher.call_planner(_call(agent_id, provider="openai", model="resumed-model"))
    [request] = provider.requests
    assert (provider.names, request.model) == (["openai"], "resumed-model")


def test_an_agent_without_defaults_falls_back_to_the_llm_config(
    db: Database, clock: FrozenClock, dispatcher: ToolDispatcher, provider: RecordingProvider
) -> None:
    agent_id = _agent(db, clock, None, None)
    dispatcher.call_planner(_call(agent_id))
    [request] = provider.requests
    assert (provider.names, request.model) == (["openai"], "config-model")


def test_arguments_are_validated_and_coerced_before_the_provider_is_called(
    db: Database, clock: FrozenClock, dispatcher: ToolDispatcher, provider: RecordingProvider
) -> None:
    agent_id = _agent(db, clock, "offline", "m1")
    dispatcher.call_planner(_call(agent_id, timeout="45"))
    assert provider.requests[0].timeout == 45.0

    with pytest.raises(DispatchError) as refused:
        dispatcher.call_planner(_call(agent_id, prompt=None))
    assert refused.value.kind == "invalid-arguments" and "missing required argument prompt" in str(
        refused.value
    )
    assert len(provider.requests) == 1  # the invalid call never reached a provider


def test_a_success_is_logged_with_its_token_usage(
    db: Database, clock: FrozenClock, dispatcher: ToolDispatcher
) -> None:
    agent_id = _agent(db, clock, "offline", "m1")
    dispatcher.call_planner(_call(agent_id))
    [entry] = _log(db)
    assert entry["success"] is True and entry["error"] is None
    assert entry["tool"] == "planner.generate" and entry["agent_id"] == agent_id
    assert entry["started_at"] == clock.now() and entry["duration_ms"] >= 0
    # token counts are not credentials: redaction keeps them
    assert entry["response"] == {
        "chars": len('{"ok": true}'),
        "prompt_tokens": 41,
        "completion_tokens": 7,
        "finish_reason": "stop",
    }


def test_secrets_in_a_providers_error_never_reach_the_log_the_error_or_the_alert(
    db: Database, clock: FrozenClock, config: Config
) -> None:
    failing = RecordingProvider(
        LLMUnavailable(f"upstream refused Authorization: Bearer {LEAKED_KEY} (key {LEAKED_KEY})")
    )
    dispatcher = ToolDispatcher(db, lambda: config, clock, failing)
    agent_id = _agent(db, clock, "openai", "m1")
    try:
        with pytest.raises(DispatchError) as failed:
            dispatcher.call_planner(_call(agent_id))
    finally:
        dispatcher.close()
    assert failed.value.kind == "failed" and LEAKED_KEY not in str(failed.value)
    assert "upstream refused Authorization: <redacted> (key <redacted>)" in str(failed.value)
    [entry] = _log(db)
    assert entry["success"] is False and "<redacted>" in entry["error"] and LEAKED_KEY not in entry["error"]
    with db.read() as conn:
        description = conn.execute(
            select(alerts.c.description).where(alerts.c.alert_id == "tool:failed")
        ).scalar_one()
    assert "<redacted>" in description and LEAKED_KEY not in description
