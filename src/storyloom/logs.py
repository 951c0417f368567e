"""Structured logs (structlog): JSON with STORYLOOM_LOG_FORMAT=json, readable otherwise; secrets redacted."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import MutableMapping
from typing import Any

import structlog

_SECRET_KEYS = re.compile(r"(api_key|token|password|secret|authorization)", re.IGNORECASE)
_SECRET_VALUES = re.compile(r"(whsec_[A-Za-z0-9+/=]+|sl_[A-Za-z0-9_-]{20,}|Bearer\s+\S+)")


def redact_secrets(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Drop secret-looking keys and mask secret-looking values wherever they appear in an event."""
    for key, value in list(event.items()):
        if _SECRET_KEYS.search(key) and key != "event":
            event[key] = "<redacted>"
        elif isinstance(value, str):
            event[key] = _SECRET_VALUES.sub("<redacted>", value)
    return event


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
