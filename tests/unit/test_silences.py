from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from storyloom.domain.matchers import as_matchers
from storyloom.domain.silences import Silence, SilenceState, silenced_by, validate_silence

NOW = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)
FAILED = {"alert_id": "planner:phase-failed", "severity": "error", "plan_id": "p1"}


def silence(sid: str, *matchers: str, start: datetime = NOW, end: datetime = NOW + HOUR) -> Silence:
    return Silence(sid, as_matchers(matchers), start, end, comment="deploy", created_by="ops")


def test_states_pending_active_expired() -> None:
    s = silence("s1", 'plan_id="p1"', start=NOW + HOUR, end=NOW + 2 * HOUR)
    assert s.state(NOW) is SilenceState.PENDING
    assert s.state(NOW + HOUR) is SilenceState.ACTIVE
    assert s.state(NOW + HOUR + timedelta(minutes=59)) == "active"
    assert s.state(NOW + 2 * HOUR) is SilenceState.EXPIRED  # expiring sets ends_at = now: effective at once


def test_active_silence_mutes_matching_labels_only() -> None:
    s = silence("s1", 'alert_id="planner:phase-failed"', 'plan_id=~"p1|p2"')
    assert s.mutes(FAILED, NOW)
    assert not s.mutes({**FAILED, "plan_id": "p3"}, NOW)
    assert not s.mutes({"plan_id": "p1"}, NOW)


def test_pending_and_expired_silences_do_not_mute() -> None:
    s = silence("s1", 'plan_id="p1"', start=NOW + HOUR, end=NOW + 2 * HOUR)
    assert not s.mutes(FAILED, NOW)
    assert s.mutes(FAILED, NOW + HOUR)
    assert not s.mutes(FAILED, NOW + 3 * HOUR)


def test_silenced_by_lists_active_matching_silences_in_order() -> None:
    silences = [
        silence("a", 'plan_id="p1"'),
        silence("b", 'severity="warning"'),
        silence("c", 'alert_id=~"planner:.*"'),
        silence("d", 'plan_id="p1"', start=NOW - 2 * HOUR, end=NOW - HOUR),
    ]
    assert silenced_by(FAILED, silences, NOW) == ["a", "c"]
    assert silenced_by({"plan_id": "p9"}, silences, NOW) == []


def test_valid_silence_has_no_problems() -> None:
    assert validate_silence(as_matchers(['plan_id="p1"']), NOW, NOW + HOUR, NOW) == []
    assert validate_silence(['alert_id="planner:phase-failed"', 'plan_id!=""'], NOW, NOW + HOUR, NOW) == []


def test_no_matchers_is_refused() -> None:
    assert validate_silence([], NOW, NOW + HOUR, NOW) == [
        ("matchers", 'add at least one matcher, e.g. alert_id="planner:phase-failed"')
    ]


def test_ends_before_starts_is_refused() -> None:
    problems = validate_silence(['plan_id="p1"'], NOW + 2 * HOUR, NOW + HOUR, NOW)
    assert problems == [("ends_at", "must be after starts_at")]


def test_ends_in_the_past_is_refused() -> None:
    problems = validate_silence(['plan_id="p1"'], NOW - 2 * HOUR, NOW - HOUR, NOW)
    assert problems == [("ends_at", "must be in the future")]


@pytest.mark.parametrize("matchers", [['plan_id=~".*"'], ['plan_id=""'], ['plan_id!="x"', 'a=~"b|"']])
def test_matchers_that_all_match_the_empty_string_are_refused(matchers: list[str]) -> None:
    problems = validate_silence(matchers, NOW, NOW + HOUR, NOW)
    assert problems == [("matchers", "at least one matcher must not match the empty string")]


def test_one_specific_matcher_is_enough_next_to_catch_all_ones() -> None:
    assert validate_silence(['plan_id=~".*"', 'alert_id="x"'], NOW, NOW + HOUR, NOW) == []


def test_unparsable_matcher_is_reported_with_its_index() -> None:
    problems = validate_silence(['plan_id="p1"', 'sev=="x"'], NOW, NOW + HOUR, NOW)
    assert [field for field, _ in problems] == ["matchers.1"]
    assert problems[0][1].startswith("invalid matcher 'sev==\"x\"'")


def test_naive_datetimes_are_refused() -> None:
    problems = validate_silence(['plan_id="p1"'], NOW.replace(tzinfo=None), NOW + HOUR, NOW)
    assert problems == [("starts_at", "must include a timezone, e.g. 2026-11-25T20:00:00Z")]
