from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storyloom.domain.matchers import as_matchers
from storyloom.domain.slo import (
    FAST_BURN_FACTOR,
    FAST_BURN_LONG_WINDOW,
    FAST_BURN_SHORT_WINDOW,
    SLOW_BURN_FACTOR,
    SLOW_BURN_LONG_WINDOW,
    SLOW_BURN_SHORT_WINDOW,
    SloThreshold,
    burn_rate,
    multiwindow_burning,
    slo_for,
    slo_status,
)

T0 = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
THRESHOLDS = [
    SloThreshold(as_matchers(['alert_id="planner:recent-failures"']), timedelta(minutes=15)),
    SloThreshold(as_matchers(['severity="warning"']), timedelta(hours=1)),
]


def test_first_matching_threshold_wins() -> None:
    labels = {"alert_id": "planner:recent-failures", "severity": "warning"}
    assert slo_for(labels, THRESHOLDS) == timedelta(minutes=15)
    assert slo_for({"alert_id": "tool:failed", "severity": "warning"}, THRESHOLDS) == timedelta(hours=1)


def test_no_matching_threshold_gives_none() -> None:
    assert slo_for({"alert_id": "tool:failed", "severity": "info"}, THRESHOLDS) is None
    assert slo_status(T0, T0 + timedelta(days=1), None) == (None, False)


def test_breached_only_after_the_threshold_while_firing() -> None:
    threshold = timedelta(minutes=15)
    assert slo_status(T0, T0 + timedelta(minutes=15), threshold) == (15, False)
    assert slo_status(T0, T0 + timedelta(minutes=15, seconds=1), threshold) == (15, True)
    assert slo_status(T0, T0 + timedelta(hours=2), threshold, firing=False) == (15, False)


def test_slo_minutes_round_sub_minute_thresholds_up() -> None:
    assert slo_status(T0, T0, timedelta(seconds=30))[0] == 1
    assert slo_status(T0, T0, timedelta(hours=1))[0] == 60


def test_burn_rate() -> None:
    assert burn_rate(5, 100, 0.95) == pytest.approx(1.0)  # exactly the budget
    assert burn_rate(72, 500, 0.99) == pytest.approx(14.4)
    assert burn_rate(0, 100, 0.99) == 0.0
    assert burn_rate(3, 0, 0.99) == 0.0  # no events, no burn


def test_burn_rate_refuses_objectives_without_a_budget() -> None:
    with pytest.raises(ValueError, match="objective"):
        burn_rate(1, 10, 1.0)


def test_multiwindow_needs_both_windows_over_the_factor() -> None:
    assert multiwindow_burning(15.0, 20.0, FAST_BURN_FACTOR)
    assert not multiwindow_burning(15.0, 2.0, FAST_BURN_FACTOR)  # already recovered
    assert not multiwindow_burning(3.0, 20.0, FAST_BURN_FACTOR)  # a short blip
    assert not multiwindow_burning(FAST_BURN_FACTOR, FAST_BURN_FACTOR, FAST_BURN_FACTOR)


def test_workbook_constants() -> None:
    assert FAST_BURN_FACTOR == 14.4
    assert timedelta(hours=1) == FAST_BURN_LONG_WINDOW
    assert timedelta(minutes=5) == FAST_BURN_SHORT_WINDOW
    assert SLOW_BURN_FACTOR == 6.0
    assert timedelta(hours=6) == SLOW_BURN_LONG_WINDOW
    assert timedelta(minutes=30) == SLOW_BURN_SHORT_WINDOW


@given(st.integers(0, 10_000), st.integers(1, 10_000), st.floats(0.5, 0.999))
def test_burn_rate_is_error_ratio_over_budget(bad: int, extra: int, objective: float) -> None:
    total = bad + extra
    rate = burn_rate(bad, total, objective)
    assert rate >= 0
    assert rate * (1 - objective) == pytest.approx(bad / total)
