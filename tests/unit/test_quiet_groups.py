"""When a flushed group wakes again: its ticks, its repeat and the next silence boundary (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from storyloom.alerting.quiet import next_tick, quiet, silence_boundary
from storyloom.domain.grouping import GroupState
from storyloom.domain.routing import Route

T0 = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
M = timedelta(minutes=1)
H = timedelta(hours=1)
ROUTE = Route(
    route_id="0",
    receiver="ops",
    matchers=(),
    continue_=False,
    group_by=(),
    group_by_all=False,
    group_wait=timedelta(0),
    group_interval=M,
    repeat_interval=4 * H,
)


def flushed(*, told: frozenset[str] = frozenset({"a@error"})) -> GroupState:
    return GroupState(T0, T0 + M, last_flush_at=T0, last_notified_at=T0, last_firing=told)


def test_next_tick_is_the_first_group_interval_tick_at_or_after_the_moment() -> None:
    assert next_tick(T0, M, T0) == T0 + M  # never sooner than one interval after the last flush
    assert next_tick(T0, M, T0 + M) == T0 + M
    assert next_tick(T0, M, T0 + 90 * timedelta(seconds=1)) == T0 + 2 * M
    assert next_tick(T0, M, T0 + 4 * H) == T0 + 4 * H


def test_a_group_that_told_its_receiver_sleeps_until_the_repeat() -> None:
    assert quiet(flushed(), ROUTE, None).next_flush_at == T0 + 4 * H


def test_a_silence_boundary_before_the_repeat_wakes_it_on_the_tick_after() -> None:
    boundary = T0 + 10 * M + timedelta(seconds=30)
    assert quiet(flushed(), ROUTE, boundary).next_flush_at == T0 + 11 * M


def test_nothing_told_and_no_silence_sleeps_until_re_armed() -> None:
    assert quiet(flushed(told=frozenset()), ROUTE, None).next_flush_at is None


def test_an_idle_group_stays_idle() -> None:
    idle = GroupState(T0, None, last_flush_at=T0)
    assert quiet(idle, ROUTE, T0 + H) == idle


def test_the_silence_boundary_is_the_next_start_or_end() -> None:
    current = frozenset({("s1", T0 - H, T0 + 2 * H), ("s2", T0 + H, T0 + 3 * H)})
    assert silence_boundary(current, T0) == T0 + H
    assert silence_boundary(frozenset(), T0) is None
