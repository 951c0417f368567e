"""Alertmanager's endsAt rules for pushed alerts, with time passed in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from storyloom.domain.expiry import DEFAULT_RESOLVE_TIMEOUT, has_ended, ingested_alert_end, seconds_until

NOW = datetime(2026, 12, 2, 7, 0, tzinfo=UTC)
S = timedelta(seconds=1)


def test_a_future_ends_at_is_kept_as_the_end() -> None:
    end = ingested_alert_end(NOW + 4 * S, NOW, DEFAULT_RESOLVE_TIMEOUT)
    assert end == NOW + 4 * S
    assert not has_ended(end, NOW)
    assert not has_ended(end, NOW + 3 * S)
    assert has_ended(end, NOW + 4 * S)  # Alertmanager: resolved once endsAt is not after now


def test_no_ends_at_ends_after_the_resolve_timeout() -> None:
    assert timedelta(minutes=5) == DEFAULT_RESOLVE_TIMEOUT
    end = ingested_alert_end(None, NOW, timedelta(minutes=2))
    assert end == NOW + timedelta(minutes=2)
    assert not has_ended(end, NOW + timedelta(minutes=2) - S)


def test_an_ends_at_at_or_before_now_has_ended_at_once() -> None:
    assert has_ended(ingested_alert_end(NOW - S, NOW, DEFAULT_RESOLVE_TIMEOUT), NOW)
    assert has_ended(ingested_alert_end(NOW, NOW, DEFAULT_RESOLVE_TIMEOUT), NOW)


def test_an_alert_without_an_end_never_ends_by_time() -> None:
    assert not has_ended(None, NOW + timedelta(days=365))


def test_the_sweep_sleeps_until_the_next_end_within_bounds() -> None:
    assert seconds_until(NOW + 3 * S, NOW, 10.0) == 3.0
    assert seconds_until(NOW + timedelta(hours=1), NOW, 10.0) == 10.0
    assert seconds_until(NOW - S, NOW, 10.0) == 0.0
    assert seconds_until(None, NOW, 10.0) == 10.0
