"""SLO math: per-alert response thresholds (`alerting.slo_thresholds`) and multi-window burn rates.

Burn-rate alerting follows the Google SRE workbook ("Alerting on SLOs"): page when both a long and a
short window burn the error budget faster than a factor (14.4 over 1h and 5m spends 2% of a 30-day
budget in an hour; 6 over 6h and 30m spends 5% in six hours).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from storyloom.domain.matchers import Matcher, matches_all

FAST_BURN_FACTOR = 14.4
FAST_BURN_LONG_WINDOW = timedelta(hours=1)
FAST_BURN_SHORT_WINDOW = timedelta(minutes=5)
SLOW_BURN_FACTOR = 6.0
SLOW_BURN_LONG_WINDOW = timedelta(hours=6)
SLOW_BURN_SHORT_WINDOW = timedelta(minutes=30)


@dataclass(frozen=True)
class SloThreshold:
    matchers: tuple[Matcher, ...]
    threshold: timedelta


def slo_for(labels: Mapping[str, str], thresholds: Sequence[SloThreshold]) -> timedelta | None:
    """The threshold of the first entry whose matchers all match; None when none does."""
    for entry in thresholds:
        if matches_all(entry.matchers, labels):
            return entry.threshold
    return None


def slo_status(
    starts_at: datetime,
    now: datetime,
    threshold: timedelta | None,
    *,
    firing: bool = True,
) -> tuple[int | None, bool]:
    """(slo_minutes, slo_breached) for an alert.

    slo_minutes is the threshold in whole minutes, rounded up so that a sub-minute threshold never reads 0.
    Breached only while the alert is still firing and has fired for longer than the threshold.
    """
    if threshold is None:
        return None, False
    minutes = math.ceil(threshold.total_seconds() / 60)
    return minutes, firing and now - starts_at > threshold


def burn_rate(bad: float, total: float, objective: float) -> float:
    """Error-budget burn speed: 1.0 spends exactly the budget over the SLO period; 0 with no events."""
    if not 0 <= objective < 1:
        raise ValueError(f"objective must be at least 0 and below 1, got {objective}")
    if total <= 0:
        return 0.0
    return (bad / total) / (1 - objective)


def multiwindow_burning(long_rate: float, short_rate: float, factor: float) -> bool:
    """Both windows over the factor: the long one shows it matters, the short one that it still goes on."""
    return long_rate > factor and short_rate > factor
