"""`health.evaluate_every` as the DBOS cron schedule of the health evaluation."""

from __future__ import annotations

from datetime import timedelta

import pytest

from storyloom.config import ConfigError, parse_config
from storyloom.domain.durations import cron_every


@pytest.mark.parametrize(
    ("every", "cron"),
    [
        (timedelta(seconds=1), "*/1 * * * * *"),
        (timedelta(seconds=30), "*/30 * * * * *"),
        (timedelta(minutes=1), "0 */1 * * * *"),
        (timedelta(minutes=5), "0 */5 * * * *"),
        (timedelta(hours=1), "0 0 */1 * * *"),
        (timedelta(hours=6), "0 0 */6 * * *"),
        (timedelta(days=1), "0 0 0 * * *"),
    ],
)
def test_an_even_interval_becomes_a_cron(every: timedelta, cron: str) -> None:
    assert cron_every(every) == cron


@pytest.mark.parametrize("every", ["45s", "90s", "500ms", "7m", "5h", "2d"])
def test_config_check_refuses_an_interval_no_cron_fires_evenly(every: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config({"health": {"evaluate_every": every}})
    [problem] = refused.value.problems
    assert problem.startswith("health.evaluate_every: ") and "divides a minute, an hour or a day" in problem
