"""Aggregation-group timers and the dedup/repeat decision, pure and clock-injected.

One `GroupState` lives per (group key, receiver): it is both Alertmanager's aggregation-group timer
(`dispatch/dispatch.go`) and its notification-log entry (`notify/dedup_stage.go`), since in Storyloom a
route has exactly one receiver. A flush goes:

    state = on_alert_added(state, now, ...)             # for every alert that joins or changes the group
    if is_due(state, now):
        reason = needs_update(state, firing, resolved, send_resolved=..., repeat_interval=..., now=now)
        if reason.delivers(send_resolved):
            enqueue one notification (without the resolved alerts unless send_resolved)
        drop = prune_resolved(members, resolved_at_flush)
        idle = not set(members) - drop
        state = after_flush(state, now, group_interval, firing, resolved, reason=reason, idle=idle)

`firing` / `resolved` are fingerprints of the group's alerts that are *not* inhibited or silenced at the
flush (Alertmanager's classic DedupStage, which runs after the mute stages).

Deliberate differences from Alertmanager:

* repeat: a notification repeats once `now - last_notified_at >= repeat_interval` (Alertmanager: strictly
  greater, measured from a timestamp taken after sending, which in practice delays it by one group_interval);
* an idle group (everything resolved and pruned) keeps its state instead of being garbage-collected: a new
  alert flushes at `max(now, last_flush_at + group_interval)` rather than waiting group_wait again, and the
  dedup decision still knows what the receiver was told;
* the newer "mute-aware" DedupStage (muted alerts recorded in the log) is not modelled.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum

from storyloom.domain.alerts import RESOLVED


class NotifyReason(StrEnum):
    """Why a flush notifies (Alertmanager's NotifyReason); NONE means the flush changes nothing."""

    FIRST_NOTIFICATION = "first_notification"
    NEW_ALERTS = "new_alerts_in_group"
    NEW_RESOLVED = "new_resolved_alerts"
    ALL_RESOLVED = "all_alerts_resolved"
    REPEAT_INTERVAL = "repeat_interval_elapsed"
    NONE = "do_not_notify"

    @property
    def records(self) -> bool:
        """Whether the flush must update the notification log (`after_flush(..., reason=...)` does it)."""
        return self is not NotifyReason.NONE

    def delivers(self, send_resolved: bool) -> bool:
        """Whether to send: ALL_RESOLVED is always recorded, but sent only with send_resolved."""
        if self is NotifyReason.NONE:
            return False
        if self is NotifyReason.ALL_RESOLVED:
            return send_resolved
        return True


@dataclass(frozen=True)
class GroupState:
    first_alert_at: datetime
    next_flush_at: datetime | None  # None: idle, nothing to flush until an alert joins
    last_flush_at: datetime | None = None
    last_notified_at: datetime | None = None  # None: the receiver has never been told about this group
    last_firing: frozenset[str] = frozenset()
    last_resolved: frozenset[str] = frozenset()


def on_alert_added(
    state: GroupState | None,
    now: datetime,
    group_wait: timedelta,
    group_interval: timedelta,
    *,
    starts_at: datetime | None = None,
) -> GroupState:
    """Schedule the flush an alert joining the group needs.

    A new group flushes after group_wait, or at once when the alert started more than group_wait ago
    (Alertmanager does the same, so alerts re-sent after a restart are not held back). A group with a
    flush scheduled keeps it: later alerts are batched into it. An idle group flushes at
    `max(now, last_flush_at + group_interval)`.
    """
    if state is None:
        due = now + group_wait
        if starts_at is not None:
            due = min(due, max(now, starts_at + group_wait))
        return GroupState(first_alert_at=now, next_flush_at=due)
    if state.next_flush_at is not None:
        if state.last_flush_at is None and starts_at is not None and starts_at + group_wait <= now:
            return replace(state, next_flush_at=min(state.next_flush_at, now))
        return state
    if state.last_flush_at is None:
        return replace(state, next_flush_at=now + group_wait)
    return replace(state, next_flush_at=max(now, state.last_flush_at + group_interval))


def is_due(state: GroupState, now: datetime) -> bool:
    return state.next_flush_at is not None and now >= state.next_flush_at


def needs_update(
    state: GroupState | None,
    firing: Set[str],
    resolved: Set[str],
    *,
    send_resolved: bool,
    repeat_interval: timedelta,
    now: datetime,
) -> NotifyReason:
    """Alertmanager's DedupStage `needsUpdate`, in the same order of checks."""
    if state is None or state.last_notified_at is None:
        return NotifyReason.FIRST_NOTIFICATION if firing else NotifyReason.NONE
    if not firing <= state.last_firing:
        # After a resolution the receiver starts a new story about this group.
        return NotifyReason.NEW_ALERTS if state.last_firing else NotifyReason.FIRST_NOTIFICATION
    if not firing:
        # Alerts that fired and resolved between two flushes were never shown, so there is nothing to say.
        return NotifyReason.ALL_RESOLVED if state.last_firing else NotifyReason.NONE
    if send_resolved and not resolved <= state.last_resolved:
        return NotifyReason.NEW_RESOLVED
    if now - state.last_notified_at >= repeat_interval:
        return NotifyReason.REPEAT_INTERVAL
    return NotifyReason.NONE


def should_notify(
    state: GroupState | None,
    firing: Set[str],
    resolved: Set[str],
    *,
    send_resolved: bool,
    repeat_interval: timedelta,
    now: datetime,
) -> bool:
    """Whether this flush sends a notification to the receiver."""
    reason = needs_update(
        state, firing, resolved, send_resolved=send_resolved, repeat_interval=repeat_interval, now=now
    )
    return reason.delivers(send_resolved)


def after_flush(
    state: GroupState,
    now: datetime,
    group_interval: timedelta,
    firing: Set[str],
    resolved: Set[str],
    *,
    reason: NotifyReason,
    idle: bool = False,
) -> GroupState:
    """Schedule the next flush at now + group_interval and, when `reason.records`, remember what was told.

    `idle=True` (the group holds no alerts any more) stops the ticking until `on_alert_added`.
    """
    updated = replace(state, last_flush_at=now, next_flush_at=None if idle else now + group_interval)
    if reason.records:
        updated = replace(
            updated, last_notified_at=now, last_firing=frozenset(firing), last_resolved=frozenset(resolved)
        )
    return updated


def prune_resolved(members: Mapping[str, str], resolved_at_flush: Set[str]) -> frozenset[str]:
    """Fingerprints to drop from the group after a flush.

    `members` maps each fingerprint in the group (muted or not) to its status now; `resolved_at_flush` are
    the ones that were resolved when the flush ran. Each resolved alert is flushed once and then dropped,
    unless it fired again since (Alertmanager's `DeleteIfNotModified`).
    """
    return frozenset(fp for fp in resolved_at_flush if members.get(fp) == RESOLVED)
