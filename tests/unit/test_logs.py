"""Structured logs: one JSON object per line with STORYLOOM_LOG_FORMAT=json, and secrets redacted at any
depth of the event (keys by name, secret-looking values wherever they are)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import structlog

from storyloom.logs import REDACTED, configure_logging, is_secret_key, redact

WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OPENAI_KEY = "sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e"


@pytest.fixture
def configure(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Configure logging for a format; the previous structlog configuration comes back afterwards."""
    saved = structlog.get_config()

    def apply(log_format: str) -> None:
        monkeypatch.setenv("STORYLOOM_LOG_FORMAT", log_format)
        configure_logging()

    yield apply
    structlog.configure(**saved)


def _json_lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_json_format_writes_one_parseable_object_per_event(
    configure: Callable[[str], None], capsys: pytest.CaptureFixture[str]
) -> None:
    configure("json")
    log = structlog.get_logger("storyloom.test")
    log.info("phase complete", plan_id="plan_1", added=["scroll-1"])
    log.warning("phase failed", backlog_id="scroll-1")

    first, second = _json_lines(capsys.readouterr().out)
    assert first["event"] == "phase complete" and first["level"] == "info"
    assert first["plan_id"] == "plan_1" and first["added"] == ["scroll-1"]
    assert first["timestamp"].endswith("Z")
    assert second["level"] == "warning" and second["backlog_id"] == "scroll-1"


def test_json_logs_redact_secrets_nested_in_dicts_and_lists(
    configure: Callable[[str], None], capsys: pytest.CaptureFixture[str]
) -> None:
    configure("json")
    structlog.get_logger("storyloom.test").info(
        "receiver configured",
        cfg={"api_key": "sk-123", "url": "http://127.0.0.1:9000/hook", "usage": {"prompt_tokens": 12}},
        receivers=[{"name": "ops", "headers": {"Authorization": "Basic b3BzOnB3"}}],
        x_api_key="k-1",
        accessToken="at-1",
        note=f"signed with {WEBHOOK_SECRET} for Bearer sl_live_0123456789abcdefghij",
    )
    out = capsys.readouterr().out
    [event] = _json_lines(out)
    assert event["cfg"] == {
        "api_key": REDACTED,
        "url": "http://127.0.0.1:9000/hook",
        "usage": {"prompt_tokens": 12},
    }
    assert event["receivers"] == [{"name": "ops", "headers": {"Authorization": REDACTED}}]
    assert event["x_api_key"] == REDACTED and event["accessToken"] == REDACTED
    assert event["note"] == f"signed with {REDACTED} for {REDACTED}"
    for secret in ("sk-123", "b3BzOnB3", "k-1", "at-1", WEBHOOK_SECRET, "sl_live_"):
        assert secret not in out


def test_an_exception_traceback_is_redacted_too(
    configure: Callable[[str], None], capsys: pytest.CaptureFixture[str]
) -> None:
    configure("json")
    try:
        raise RuntimeError(f"provider refused key {OPENAI_KEY}")
    except RuntimeError:
        structlog.get_logger("storyloom.test").exception("call failed")
    out = capsys.readouterr().out
    [event] = _json_lines(out)
    assert "RuntimeError: provider refused key <redacted>" in event["exception"]
    assert OPENAI_KEY not in out


def test_console_format_is_readable_text_and_also_redacted(
    configure: Callable[[str], None], capsys: pytest.CaptureFixture[str]
) -> None:
    configure("console")
    structlog.get_logger("storyloom.test").info("engine started", cfg={"password": "hunter2"})
    out = capsys.readouterr().out
    assert "engine started" in out and "hunter2" not in out
    with pytest.raises(json.JSONDecodeError):
        json.loads(out)


@pytest.mark.parametrize(
    "key",
    [
        *("api_key", "x_api_key", "OPENAI_API_KEY", "apiKey", "X-Api-Key", "apikey"),
        *("token", "access_token", "accessToken", "password", "db_password", "secret", "client_secret"),
        "Authorization",
    ],
)
def test_secret_keys_are_matched_by_word_in_any_case(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key", ["prompt_tokens", "completion_tokens", "max_tokens", "event", "keys", "api", "monkey", "passage"]
)
def test_counts_and_lookalikes_are_not_secret_keys(key: str) -> None:
    assert not is_secret_key(key)


def test_redact_leaves_the_input_alone_and_keeps_non_secret_values() -> None:
    original = {"llm": {"api_key": "sk-1", "timeout": 60, "models": ("m1", "m2")}}
    assert redact(original) == {"llm": {"api_key": REDACTED, "timeout": 60, "models": ["m1", "m2"]}}
    assert original["llm"]["api_key"] == "sk-1"
