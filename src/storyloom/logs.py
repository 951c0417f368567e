"""Structured logs (structlog): JSON with STORYLOOM_LOG_FORMAT=json, readable otherwise; secrets redacted.

A key is secret when one of its words (split on `_`, `-`, `.`, spaces and camelCase) is `token`,
`password`, `secret` or `authorization`, or its words include `api` followed by `key` (or `apikey`):
`x_api_key`, `accessToken`, `client_secret` and `Authorization` are redacted, while `prompt_tokens` or
`max_tokens` (counts, not credentials) are kept. Its value is replaced whole, at any depth of nested
dicts and lists. Secret-looking strings (`whsec_...` webhook secrets, `sl_...` Storyloom tokens, `sk-...`
OpenAI-style keys, `Bearer ...`) are masked wherever they appear, whatever their key: a provider's error
message may quote one.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

REDACTED = "<redacted>"
_SECRET_WORDS = frozenset({"token", "password", "secret", "authorization", "apikey"})
_KEY_WORDS = re.compile(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])")
_SECRET_VALUES = re.compile(
    r"(whsec_[A-Za-z0-9+/=]+|sl_[A-Za-z0-9_-]{20,}|\bsk-[A-Za-z0-9_-]{20,}|Bearer\s+\S+)"
)


def is_secret_key(key: object) -> bool:
    words = [w.lower() for w in _KEY_WORDS.findall(str(key))]
    if _SECRET_WORDS.intersection(words):
        return True
    return ("api", "key") in itertools.pairwise(words)


def redact_text(text: str) -> str:
    """`text` with secret-looking substrings masked (for free text such as a provider's error message)."""
    return _SECRET_VALUES.sub(REDACTED, text)


def redact(value: Any) -> Any:
    """`value` with secret keys' values replaced and secret-looking strings masked, at any depth."""
    if isinstance(value, Mapping):
        return {k: REDACTED if is_secret_key(k) else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """The structlog processor: `redact` over every field of the event."""
    redacted: dict[str, Any] = redact(event)
    return redacted


def configure_logging(level: int = logging.INFO) -> None:
    json_logs = os.environ.get("STORYLOOM_LOG_FORMAT", "console") == "json"
    renderer: Any = (
        structlog.processors.JSONRenderer() if json_logs else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
