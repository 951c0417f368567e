from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from storyloom.domain.alerts import FIRING, RESOLVED
from storyloom.domain.grouping import (
    GroupState,
    NotifyReason,
    after_flush,
    is_due,
    needs_update,
    on_alert_added,
    prune_resolved,
    should_notify,
)

T0 = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
S = timedelta(seconds=1)
M = timedelta(minutes=1)
H = timedelta(hours=1)


@dataclass
class Group:
    """One aggregation group driven through the documented flush loop with an injected clock."""

    group_wait: timedelta = 30 * S
    group_interval: timedelta = 5 * M
    repeat_interval: timedelta = 4 * H
    send_resolved: bool = True
    now: datetime = T0
    state: GroupState | None = None
    members: dict[str, str] = field(default_factory=dict)
    sent: list[tuple[datetime, NotifyReason, frozenset[str], frozenset[str]]] = field(default_factory=list)

    def advance(self, delta: timedelta) -> None:
        self.now += delta

    def fire(self, fp: str, starts_at: datetime | None = None) -> None:
        self.members[fp] = FIRING
        self.state = on_alert_added(
            self.state, self.now, self.group_wait, self.group_interval, starts_at=starts_at
        )

    def resolve(self, fp: str) -> None:
        self.members[fp] = RESOLVED
        self.state = on_alert_added(self.state, self.now, self.group_wait, self.group_interval)

    def tick(self) -> NotifyReason | None:
        """Run the flush if it is due; return its reason (None when not due)."""
        assert self.state is not None
        if not is_due(self.state, self.now):
            return None
        firing = frozenset(fp for fp, st in self.members.items() if st == FIRING)
        resolved = frozenset(fp for fp, st in self.members.items() if st == RESOLVED)
        reason = needs_update(
            self.state,
            firing,
            resolved,
            send_resolved=self.send_resolved,
            repeat_interval=self.repeat_interval,
            now=self.now,
        )
        if reason.delivers(self.send_resolved):
            self.sent.append((self.now, reason, firing, resolved if self.send_resolved else frozenset()))
        for fp in prune_resolved(self.members, resolved):
            del self.members[fp]
        self.state = after_flush(
            self.state, self.now, self.group_interval, firing, resolved, reason=reason, idle=not self.members
        )
        return reason

    def run_until(self, end: datetime, step: timedelta = S) -> None:
        while self.now < end:
            self.advance(step)
            self.tick()


def test_group_wait_zero_flushes_at_once() -> None:
    g = Group(group_wait=timedelta(0))
    g.fire("a")
    assert g.tick() is NotifyReason.FIRST_NOTIFICATION
    assert g.sent == [(T0, NotifyReason.FIRST_NOTIFICATION, frozenset({"a"}), frozenset())]


def test_group_wait_30s_holds_the_first_flush_and_batches_alerts_arriving_meanwhile() -> None:
    g = Group(group_wait=30 * S)
    g.fire("a")
    g.advance(10 * S)
    g.fire("b")
    g.advance(19 * S)
    assert g.tick() is None  # 29s: still waiting
    g.advance(S)
    assert g.tick() is NotifyReason.FIRST_NOTIFICATION
    assert g.sent == [(T0 + 30 * S, NotifyReason.FIRST_NOTIFICATION, frozenset({"a", "b"}), frozenset())]


def test_alert_that_started_longer_ago_than_group_wait_is_not_held_back() -> None:
    g = Group(group_wait=30 * S)
    g.fire("a", starts_at=T0 - 10 * M)
    assert g.tick() is NotifyReason.FIRST_NOTIFICATION
    fresh = on_alert_added(None, T0, 30 * S, 5 * M, starts_at=T0 - 10 * S)
    assert fresh.next_flush_at == T0 + 20 * S


def test_later_alerts_are_batched_by_group_interval() -> None:
    g = Group(group_wait=timedelta(0), group_interval=M)
    g.fire("a")
    g.tick()
    g.advance(20 * S)
    g.fire("b")
    assert g.tick() is None
    g.advance(20 * S)
    g.fire("c")
    assert g.tick() is None
    g.advance(20 * S)  # T0 + 60s = last flush + group_interval
    assert g.tick() is NotifyReason.NEW_ALERTS
    assert [(at, firing) for at, _, firing, _ in g.sent] == [
        (T0, frozenset({"a"})),
        (T0 + M, frozenset({"a", "b", "c"})),
    ]


def test_no_duplicate_notification_when_nothing_changed() -> None:
    g = Group(group_wait=timedelta(0), group_interval=M, repeat_interval=4 * H)
    g.fire("a")
    g.tick()
    g.run_until(T0 + 3 * H)
    assert len(g.sent) == 1
    g.fire("a")  # the same alert again (e.g. re-evaluated): still nothing new
    g.run_until(T0 + 3 * H + 10 * M)
    assert len(g.sent) == 1


def test_repeat_interval_re_notifies_unchanged_firing_group() -> None:
    g = Group(group_wait=timedelta(0), group_interval=M, repeat_interval=H)
    g.fire("a")
    g.tick()
    g.run_until(T0 + 3 * H)
    assert [(at, reason) for at, reason, _, _ in g.sent] == [
        (T0, NotifyReason.FIRST_NOTIFICATION),
        (T0 + H, NotifyReason.REPEAT_INTERVAL),
        (T0 + 2 * H, NotifyReason.REPEAT_INTERVAL),
        (T0 + 3 * H, NotifyReason.REPEAT_INTERVAL),
    ]


def test_resolved_alert_notifies_only_with_send_resolved() -> None:
    for send_resolved, expected in ((True, [NotifyReason.NEW_RESOLVED]), (False, [])):
        g = Group(group_wait=timedelta(0), group_interval=M, send_resolved=send_resolved)
        g.fire("a")
        g.fire("b")
        g.tick()
        g.advance(M)
        g.resolve("b")
        g.tick()
        assert [reason for _, reason, _, _ in g.sent[1:]] == expected
        assert "b" not in g.members  # flushed once, then dropped
        g.run_until(T0 + 30 * M)
        assert [reason for _, reason, _, _ in g.sent[1:]] == expected  # told once, not again


def test_all_resolved_is_sent_with_send_resolved_and_recorded_without_it() -> None:
    for send_resolved in (True, False):
        g = Group(group_wait=timedelta(0), group_interval=M, send_resolved=send_resolved)
        g.fire("a")
        g.tick()
        g.advance(M)
        g.resolve("a")
        assert g.tick() is NotifyReason.ALL_RESOLVED
        assert len(g.sent) == (2 if send_resolved else 1)
        assert g.state is not None and g.state.last_firing == frozenset()
        # Because the resolution was recorded, the same alert firing again is news.
        g.advance(M)
        g.fire("a")
        assert g.tick() is NotifyReason.FIRST_NOTIFICATION


def test_alert_that_fires_and_resolves_before_the_first_flush_is_never_sent() -> None:
    g = Group(group_wait=30 * S)
    g.fire("a")
    g.advance(10 * S)
    g.resolve("a")
    g.run_until(T0 + 10 * M)
    assert g.sent == []
    assert g.members == {}


def test_idle_group_wakes_at_last_flush_plus_group_interval_or_now() -> None:
    g = Group(group_wait=timedelta(0), group_interval=5 * M)
    g.fire("a")
    g.tick()
    g.advance(5 * M)
    g.resolve("a")
    g.tick()
    assert g.state is not None and g.state.next_flush_at is None  # idle: nothing left to flush
    assert not is_due(g.state, g.now + 10 * H)
    g.advance(2 * M)
    g.fire("b")
    assert g.state.next_flush_at == T0 + 10 * M  # last flush (T0+5m) + group_interval
    g.advance(3 * M)
    assert g.tick() is NotifyReason.FIRST_NOTIFICATION
    g.advance(5 * M)
    g.resolve("b")
    g.tick()
    g.advance(H)
    g.fire("c")
    assert g.state.next_flush_at == g.now  # long idle: flush now


def test_needs_update_follows_alertmanager_order() -> None:
    def decide(
        state: GroupState | None, firing: set[str], resolved: set[str], at: timedelta = M
    ) -> NotifyReason:
        return needs_update(state, firing, resolved, send_resolved=True, repeat_interval=H, now=T0 + at)

    never = GroupState(first_alert_at=T0, next_flush_at=T0)
    told = GroupState(T0, T0, T0, T0, frozenset({"a", "b"}), frozenset({"c"}))
    assert decide(None, set(), {"c"}) is NotifyReason.NONE
    assert decide(never, {"a"}, set()) is NotifyReason.FIRST_NOTIFICATION
    assert decide(told, {"a", "x"}, set()) is NotifyReason.NEW_ALERTS
    assert decide(told, {"a"}, {"c"}) is NotifyReason.NONE  # fewer firing, no new resolved: nothing to say
    assert decide(told, {"a"}, {"b", "c"}) is NotifyReason.NEW_RESOLVED
    assert decide(told, set(), {"a"}) is NotifyReason.ALL_RESOLVED
    assert decide(told, {"a"}, set(), at=H) is NotifyReason.REPEAT_INTERVAL
    assert decide(told, {"a"}, set(), at=H - S) is NotifyReason.NONE
    quiet = GroupState(T0, T0, T0, T0, frozenset(), frozenset({"a"}))
    assert decide(quiet, set(), {"z"}) is NotifyReason.NONE
    assert decide(quiet, {"a"}, set()) is NotifyReason.FIRST_NOTIFICATION


def test_should_notify_hides_all_resolved_without_send_resolved() -> None:
    told = GroupState(T0, T0, T0, T0, frozenset({"a"}), frozenset())

    def notify(firing: set[str], resolved: set[str], send_resolved: bool) -> bool:
        return should_notify(
            told, firing, resolved, send_resolved=send_resolved, repeat_interval=H, now=T0 + M
        )

    assert notify(set(), {"a"}, send_resolved=True)
    assert not notify(set(), {"a"}, send_resolved=False)
    assert not notify({"a"}, {"b"}, send_resolved=False)
    assert notify({"a", "c"}, set(), send_resolved=False)


def test_after_flush_without_a_record_keeps_what_the_receiver_was_told() -> None:
    told = GroupState(T0, T0, T0, T0, frozenset({"a"}), frozenset())
    later = after_flush(told, T0 + M, M, {"a"}, {"b"}, reason=NotifyReason.NONE)
    assert later.next_flush_at == T0 + 2 * M and later.last_flush_at == T0 + M
    assert (later.last_notified_at, later.last_firing, later.last_resolved) == (
        T0,
        frozenset({"a"}),
        frozenset(),
    )


def test_prune_resolved_keeps_alerts_that_fired_again_since_the_flush() -> None:
    members = {"a": RESOLVED, "b": FIRING, "c": RESOLVED}
    assert prune_resolved(members, {"a", "b"}) == frozenset({"a"})
