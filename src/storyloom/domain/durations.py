"""Duration strings of the config (`500ms`, `30s`, `5m`, `2h`, `1d`)."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str | int | float) -> timedelta:
    """Parse `1h30m`-style strings; bare numbers are seconds. Raises ValueError saying what is accepted."""
    if isinstance(text, bool):
        raise ValueError("expected a duration like 500ms, 30s, 5m, 2h or 1d")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        return timedelta(seconds=float(text))
    value = text.strip()
    if value == "0":
        return timedelta(0)
    pos, total = 0, 0.0
    for match in _PART.finditer(value):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(value) or not value:
        raise ValueError(f"invalid duration {text!r}: expected a duration like 500ms, 30s, 5m, 2h or 1d")
    return timedelta(seconds=total)


def format_duration(delta: timedelta) -> str:
    """Render the shortest exact duration string (`90s` → `1m30s`)."""
    ms = round(delta.total_seconds() * 1000)
    if ms == 0:
        return "0s"
    out = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000), ("ms", 1)):
        if ms >= size:
            out.append(f"{ms // size}{unit}")
            ms %= size
    return "".join(out)
