from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from storyloom.alerting.delivery.retry import Decision, next_attempt
from storyloom.alerting.delivery.send import RateLimiter, SendOutcome, classify, parse_retry_after
from storyloom.alerting.receivers.base import DEFAULT_RETRY_SCHEDULE

T0 = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
SCHEDULE = DEFAULT_RETRY_SCHEDULE  # 0s, 5s, 30s, 2m, 10m, 30m, 1h
DAY = timedelta(hours=24)
RETRY = SendOutcome("retry", 500, "HTTP 500")


def decide(
    outcome: SendOutcome,
    attempt: int,
    now: datetime,
    seed: int = 1,
    *,
    schedule: tuple[timedelta, ...] = SCHEDULE,
    max_age: timedelta = DAY,
    previous_client_errors: int = 0,
) -> Decision:
    rng = random.Random(seed)
    return next_attempt(
        outcome, attempt, T0, now, schedule, max_age, rng, previous_client_errors=previous_client_errors
    )


def test_the_next_attempt_uses_the_next_delay_of_the_schedule_with_jitter() -> None:
    kind, at = decide(RETRY, 1, T0)
    assert kind == "retry"
    assert T0 + timedelta(seconds=4) <= at <= T0 + timedelta(seconds=6)  # schedule[1] = 5s ± 20%
    kind, at = decide(RETRY, 3, T0 + timedelta(minutes=1))
    assert timedelta(seconds=96) <= at - (T0 + timedelta(minutes=1)) <= timedelta(seconds=144)  # 2m ± 20%


def test_the_same_seed_gives_the_same_time_and_zero_delays_get_no_jitter() -> None:
    assert decide(RETRY, 2, T0, seed=42) == decide(RETRY, 2, T0, seed=42)
    assert decide(RETRY, 2, T0, seed=42) != decide(RETRY, 2, T0, seed=43)
    zero = (timedelta(0), timedelta(0), timedelta(seconds=10))
    assert decide(RETRY, 1, T0, schedule=zero) == ("retry", T0)


@given(st.integers(0, 2**32), st.integers(1, len(SCHEDULE) - 1))
def test_jitter_stays_within_twenty_percent(seed: int, attempt: int) -> None:
    kind, at = decide(RETRY, attempt, T0, seed=seed)
    assert kind == "retry"
    delay = SCHEDULE[attempt]
    assert isinstance(at, datetime) and delay * 0.8 <= at - T0 <= delay * 1.2


def test_dead_when_the_schedule_is_exhausted() -> None:
    kind, reason = decide(RETRY, len(SCHEDULE), T0 + timedelta(hours=2))
    assert kind == "dead"
    assert "retry schedule exhausted after 7 attempts" in reason and "HTTP 500" in reason


def test_a_whole_run_makes_one_attempt_per_schedule_entry() -> None:
    rng = random.Random(7)
    now, attempts, decision = T0, 1, next_attempt(RETRY, 1, T0, T0, SCHEDULE, DAY, rng)
    while decision[0] == "retry":
        assert isinstance(decision[1], datetime)
        now = decision[1]
        attempts += 1
        decision = next_attempt(RETRY, attempts, T0, now, SCHEDULE, DAY, rng)
    assert attempts == len(SCHEDULE)
    assert timedelta(minutes=80) < now - T0 < timedelta(minutes=125)  # ~1h42m of delays ± jitter


def test_max_age_caps_the_next_attempt_and_then_ends_the_delivery() -> None:
    max_age = timedelta(minutes=10)
    kind, at = decide(RETRY, 5, T0 + timedelta(minutes=8), max_age=max_age)  # 30m would overshoot
    assert (kind, at) == ("retry", T0 + max_age)
    kind, reason = decide(RETRY, 6, T0 + max_age, max_age=max_age)
    assert kind == "dead" and "max_age 10m" in reason


def test_retry_after_wins_when_longer_and_is_capped_by_max_age() -> None:
    limited = SendOutcome("retry", 429, "HTTP 429", retry_after=timedelta(minutes=3))
    assert decide(limited, 1, T0) == ("retry", T0 + timedelta(minutes=3))
    short = SendOutcome("retry", 429, "HTTP 429", retry_after=timedelta(seconds=1))
    _kind, at = decide(short, 1, T0)
    assert isinstance(at, datetime) and at >= T0 + timedelta(seconds=4)  # the schedule's 5s ± 20% is longer
    huge = SendOutcome("retry", 503, "HTTP 503", retry_after=timedelta(days=3))
    assert decide(huge, 1, T0) == ("retry", T0 + DAY)


def test_a_client_error_is_retried_once_then_dead() -> None:
    bad = SendOutcome("client_error", 400, "HTTP 400: invalid_blocks")
    kind, _ = decide(bad, 1, T0)
    assert kind == "retry"
    kind, reason = decide(bad, 2, T0 + timedelta(seconds=5), previous_client_errors=1)
    assert kind == "dead" and "retried once" in reason and "invalid_blocks" in reason


def test_gone_and_refused_are_dead_at_once_and_delivered_needs_no_decision() -> None:
    assert decide(SendOutcome("disable", 410, "HTTP 410"), 1, T0)[0] == "dead"
    assert decide(SendOutcome("dead", None, "host x is refused"), 1, T0) == ("dead", "host x is refused")
    with pytest.raises(ValueError):
        decide(SendOutcome("delivered", 200), 1, T0)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (200, "delivered"),
        (202, "delivered"),
        (204, "delivered"),
        (301, "client_error"),
        (302, "client_error"),
        (400, "client_error"),
        (401, "client_error"),
        (404, "client_error"),
        (408, "retry"),
        (410, "disable"),
        (429, "retry"),
        (500, "retry"),
        (502, "retry"),
        (503, "retry"),
    ],
)
def test_status_codes_are_classified(status: int, kind: str) -> None:
    assert classify(status, b"", httpx.Headers(), T0).kind == kind


def test_retry_after_is_read_as_seconds_or_an_http_date() -> None:
    assert parse_retry_after("2", T0) == timedelta(seconds=2)
    assert parse_retry_after(" 120 ", T0) == timedelta(minutes=2)
    assert parse_retry_after("Wed, 25 Nov 2026 20:01:30 GMT", T0) == timedelta(seconds=90)
    assert parse_retry_after("Wed, 25 Nov 2026 19:00:00 GMT", T0) == timedelta(0)
    assert parse_retry_after("soon", T0) is None
    assert parse_retry_after(None, T0) is None
    outcome = classify(429, b"slow down", httpx.Headers({"Retry-After": "7"}), T0)
    assert outcome.retry_after == timedelta(seconds=7) and outcome.error == "HTTP 429: slow down"


# --- rate limiter ----------------------------------------------------------------------------------


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


async def test_unlimited_never_waits() -> None:
    fake = FakeTime()
    limiter = RateLimiter(0, clock=fake.clock, sleep=fake.sleep)
    for _ in range(1000):
        await limiter.acquire()
    assert fake.slept == [] and limiter.unlimited


async def test_the_bucket_spaces_sends_at_the_configured_rate() -> None:
    fake = FakeTime()
    limiter = RateLimiter(2, clock=fake.clock, sleep=fake.sleep)  # burst 2
    for _ in range(6):
        await limiter.acquire()
    assert fake.slept == pytest.approx([0.5, 0.5, 0.5, 0.5])
    fake.now += 10  # idle time refills the bucket, up to the burst
    await limiter.acquire()
    await limiter.acquire()
    assert len(fake.slept) == 4


def test_reservations_queue_first_come_first_served() -> None:
    fake = FakeTime()
    limiter = RateLimiter(0.5, clock=fake.clock, sleep=fake.sleep)  # one every 2s, burst 1
    assert [limiter.reserve() for _ in range(4)] == pytest.approx([0, 2, 4, 6])


async def test_a_cancelled_wait_gives_its_token_back() -> None:
    fake = FakeTime()
    waiting, gate = asyncio.Event(), asyncio.Event()

    async def blocked_sleep(seconds: float) -> None:
        waiting.set()
        await gate.wait()

    limiter = RateLimiter(1, clock=fake.clock, sleep=blocked_sleep)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await waiting.wait()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.reserve() == pytest.approx(1.0)  # not 2.0: the cancelled token was returned


def test_a_negative_rate_is_refused() -> None:
    with pytest.raises(ValueError, match="0 means unlimited"):
        RateLimiter(-1)
