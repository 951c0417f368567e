"""Duration strings of the config (`500ms`, `30s`, `5m`, `2h`, `1d`)."""

from __future__ import annotations

import math
import re
import reprlib
from datetime import timedelta

_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str | int | float) -> timedelta:
    """Parse `1h30m`-style strings; bare numbers are seconds. Raises ValueError saying what is accepted."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise ValueError("expected a duration like 500ms, 30s, 5m, 2h or 1d")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError("a duration cannot be negative")
        return _seconds(text, text)
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
    return _seconds(total, text)


def _seconds(seconds: float, text: str | int | float) -> timedelta:
    """A timedelta, or ValueError for what no timedelta holds (too long, not a number)."""
    if math.isnan(seconds):
        raise ValueError("a duration must be a number of seconds or a string like 30s, not nan")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ValueError(f"duration {reprlib.repr(text)} is too long") from None


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


EVERY_HINT = "use an interval that divides a minute, an hour or a day, such as 15s, 30s, 1m, 5m, 1h or 6h"


def cron_every(every: timedelta) -> str:
    """A six-field cron (seconds first) firing every `every`; ValueError when no cron fires that evenly."""
    seconds = every.total_seconds()
    if seconds == 86_400:
        return "0 0 0 * * *"
    if seconds >= 1 and seconds == int(seconds):
        for position, (unit, per) in enumerate(((1, 60), (60, 60), (3600, 24))):
            count, rest = divmod(int(seconds), unit)
            if rest == 0 and count < per and per % count == 0:
                return " ".join(["0"] * position + [f"*/{count}"] + ["*"] * (5 - position))
    raise ValueError(f"{format_duration(every)} cannot be scheduled: {EVERY_HINT}")
