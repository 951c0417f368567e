"""The failed-authentication limiter: a token bucket per client, bounded in memory, on an injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from storyloom.api.auth_failures import FailedAuthLimiter, client_key
from storyloom.config import ConfigError, FailedAuthConfig, parse_config

T0 = datetime(2026, 12, 2, 8, 0, tzinfo=UTC)
POLICY = FailedAuthConfig(burst=2, refill_every=timedelta(seconds=10), max_clients=3)


def test_a_client_is_limited_after_its_burst_and_refills_one_failure_per_interval() -> None:
    limiter = FailedAuthLimiter()
    for _ in range(2):
        assert limiter.retry_after("a", T0, POLICY) is None
        limiter.record_failure("a", T0, POLICY)
    assert limiter.retry_after("a", T0, POLICY) == 10
    assert limiter.retry_after("a", T0 + timedelta(seconds=9.5), POLICY) == 1
    assert limiter.retry_after("a", T0 + timedelta(seconds=10), POLICY) is None
    assert limiter.retry_after("b", T0, POLICY) is None


def test_a_long_quiet_spell_restores_the_burst_and_no_more() -> None:
    limiter = FailedAuthLimiter()
    limiter.record_failure("a", T0, POLICY)
    later = T0 + timedelta(hours=5)
    for _ in range(2):
        assert limiter.retry_after("a", later, POLICY) is None
        limiter.record_failure("a", later, POLICY)
    assert limiter.retry_after("a", later, POLICY) == 10


def test_memory_stays_bounded_by_dropping_the_least_recent_client() -> None:
    limiter = FailedAuthLimiter()
    for i in range(1000):
        limiter.record_failure(f"10.0.{i // 256}.{i % 256}", T0, POLICY)
        limiter.record_failure(f"10.0.{i // 256}.{i % 256}", T0, POLICY)
    assert len(limiter) == 3
    assert limiter.retry_after("10.0.3.231", T0, POLICY) == 10  # the most recent is still remembered
    assert limiter.retry_after("10.0.0.0", T0, POLICY) is None  # the oldest was dropped


def test_clients_are_addresses_and_ipv6_hosts_share_their_64() -> None:
    assert client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("2001:db8:1:2::5") == client_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::5") != client_key("2001:db8:1:2::5")
    assert client_key(None) == "unknown"


def test_the_config_refuses_nonsense_limits_and_lifetimes_with_their_path() -> None:
    problems = []
    for security in ({"session_ttl": "0s"}, {"failed_auth": {"refill_every": "0s", "burst": 0}}):
        with pytest.raises(ConfigError) as refused:
            parse_config({"security": security})
        problems += refused.value.problems
    assert problems == [
        "security.session_ttl: must be between 1m and 30d",
        "security.failed_auth.burst: Input should be greater than or equal to 1",
        "security.failed_auth.refill_every: must be longer than 0s",
    ]
