"""`pipeline.provider_rate_limits` (starts per second) as the DBOS queue limiter counts them."""

from __future__ import annotations

import pytest

from storyloom.engine.engine import dbos_limiter


@pytest.mark.parametrize(
    ("rate", "limit", "period"),
    [(0.5, 1, 2.0), (1, 1, 1.0), (2.5, 2, 0.8), (20, 20, 1.0), (0.1, 1, 10.0)],
)
def test_a_rate_becomes_whole_starts_per_period_at_the_same_rate(
    rate: float, limit: int, period: float
) -> None:
    limiter = dbos_limiter(rate)
    assert limiter["limit"] == limit and limiter["period"] == pytest.approx(period)
    assert limiter["limit"] / limiter["period"] == pytest.approx(rate)
