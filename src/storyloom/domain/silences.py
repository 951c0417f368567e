"""Silences: operator-made, time-boxed mutes defined by matchers (Alertmanager semantics).

Deliberate difference: a silence is expired from `ends_at` on (Alertmanager: just after `ends_at`), so that
expiring one by setting `ends_at = now` takes effect at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from storyloom.domain.matchers import Matcher, matches_all, parse_matcher


class SilenceState(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Silence:
    silence_id: str
    matchers: tuple[Matcher, ...]
    starts_at: datetime
    ends_at: datetime
    comment: str = ""
    created_by: str = ""

    def state(self, now: datetime) -> SilenceState:
        if now < self.starts_at:
            return SilenceState.PENDING
        if now >= self.ends_at:
            return SilenceState.EXPIRED
        return SilenceState.ACTIVE

    def mutes(self, labels: Mapping[str, str], now: datetime) -> bool:
        return self.state(now) is SilenceState.ACTIVE and matches_all(self.matchers, labels)


def validate_silence(
    matchers: Sequence[Matcher | str],
    starts_at: datetime,
    ends_at: datetime,
    now: datetime,
) -> list[tuple[str, str]]:
    """Problems as (field, message); empty when the silence may be created. Text matchers are parsed here."""
    problems: list[tuple[str, str]] = []
    parsed: list[Matcher] = []
    for i, item in enumerate(matchers):
        if isinstance(item, Matcher):
            parsed.append(item)
            continue
        try:
            parsed.append(parse_matcher(item))
        except ValueError as exc:
            problems.append((f"matchers.{i}", str(exc)))
    if not matchers:
        problems.append(("matchers", 'add at least one matcher, e.g. alert_id="planner:phase-failed"'))
    elif parsed and len(parsed) == len(matchers) and all(m.matches({}) for m in parsed):
        # Such a silence would mute every alert, including ones that do not exist yet.
        problems.append(("matchers", "at least one matcher must not match the empty string"))
    naive = [name for name, value in (("starts_at", starts_at), ("ends_at", ends_at)) if value.tzinfo is None]
    for name in naive:
        problems.append((name, "must include a timezone, e.g. 2026-11-25T20:00:00Z"))
    if naive:
        return problems
    if ends_at <= starts_at:
        problems.append(("ends_at", "must be after starts_at"))
    if ends_at <= now:
        problems.append(("ends_at", "must be in the future"))
    return problems


def silenced_by(labels: Mapping[str, str], silences: Iterable[Silence], now: datetime) -> list[str]:
    """Ids of the active silences that mute these labels, in the given order."""
    return [s.silence_id for s in silences if s.mutes(labels, now)]
