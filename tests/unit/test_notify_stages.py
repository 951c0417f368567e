"""Each notify stage alone, with plain values: no database, no clock but a datetime."""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from storyloom.alerting.aggregation.groups import GroupRecord
from storyloom.alerting.aggregation.stages import INGEST, GroupStage, IngestContext, RouteStage
from storyloom.alerting.mute import MuteIndex
from storyloom.alerting.notification import notification_from_json, notification_json
from storyloom.alerting.notify import (
    FLUSH,
    DedupStage,
    DeliveryStage,
    FlushContext,
    LinkStage,
    MuteStage,
    SloStage,
    enrich,
    firing_key,
    run_stages,
)
from storyloom.alerting.receivers.base import ReceiverSpec
from storyloom.alerting.rows import alert_from_row
from storyloom.alerting.setup import AlertingRuntime
from storyloom.domain.alerts import FIRING, RESOLVED, Alert
from storyloom.domain.grouping import GroupState, NotifyReason
from storyloom.domain.inhibition import InhibitRule
from storyloom.domain.matchers import parse_matcher
from storyloom.domain.routing import Route, RouteSpec, build_route_tree, group_key
from storyloom.domain.silences import Silence
from storyloom.domain.slo import SloThreshold

T0 = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
S = timedelta(seconds=1)
M = timedelta(minutes=1)
H = timedelta(hours=1)


def alert(
    fp: str, status: str = FIRING, alert_id: str = "tool:failed", starts_at: datetime = T0, **labels: str
) -> Alert:
    all_labels = {"alert_id": alert_id, "severity": "warning", "source": "tool_dispatcher", **labels}
    return Alert(
        alert_id=alert_id,
        fingerprint=fp,
        status=status,
        severity=all_labels["severity"],
        title="t",
        description="d",
        labels=all_labels,
        starts_at=starts_at,
        ends_at=None if status == FIRING else T0 + M,
        generated_at=T0,
    )


def tree() -> Route:
    return build_route_tree(
        RouteSpec(
            receiver="ops",
            group_by=("alert_id",),
            group_wait=30 * S,
            group_interval=5 * M,
            routes=(RouteSpec(receiver="pager", matchers=(parse_matcher('severity="error"'),)),),
        ),
        repeat_interval=4 * H,
    )


def ingest_ctx(now: datetime = T0, stored: Mapping[str, GroupRecord] | None = None) -> IngestContext:
    stored = dict(stored or {})

    def load(keys: Collection[str]) -> dict[str, GroupRecord]:
        return {k: stored[k] for k in keys if k in stored}

    return IngestContext(now=now, route=tree(), load_groups=load)


SPEC = ReceiverSpec(name="ops", type="webhook", url="http://127.0.0.1:9000/", routing_key="fiction-ops")
ALERTING = AlertingRuntime(
    receivers={"ops": SPEC},
    slo_thresholds=(SloThreshold((parse_matcher('alert_id="tool:failed"'),), 15 * M),),
    public_url="http://console.test",
    max_alerts_per_notification=2,
)


def flush_ctx(
    state: GroupState | None = None,
    *,
    now: datetime = T0,
    spec: ReceiverSpec = SPEC,
    mutes: MuteIndex | None = None,
    alerting: AlertingRuntime = ALERTING,
) -> FlushContext:
    route = tree()
    group = GroupRecord(
        "0:ops:{}",
        "0",
        "ops",
        {"alert_id": "tool:failed"},
        state or GroupState(first_alert_at=T0, next_flush_at=now),
    )
    ids = iter(f"id{i}" for i in range(100))
    return FlushContext(
        now=now,
        alerting=alerting,
        group=group,
        route=route,
        receiver=spec,
        mutes=mutes or MuteIndex((), (), (), now),
        make_id=lambda prefix: f"{prefix}_{next(ids)}",
    )


# --- ingest -------------------------------------------------------------------------------------------


def test_route_stage_routes_firing_alerts_and_drops_resolved() -> None:
    ctx = ingest_ctx()
    error = dataclasses.replace(alert("a"), labels={**alert("a").labels, "severity": "error"})
    out = RouteStage().exec(ctx, [error, alert("b"), alert("c", RESOLVED)])
    assert [a.fingerprint for a in out] == ["a", "b"]
    assert [(a.fingerprint, r.receiver) for a, r in ctx.routed] == [("a", "pager"), ("b", "ops")]


def test_route_stage_without_a_tree_routes_nothing() -> None:
    ctx = dataclasses.replace(ingest_ctx(), route=None)
    assert RouteStage().exec(ctx, [alert("a")]) == []


def test_group_stage_creates_a_group_waiting_group_wait() -> None:
    ctx = ingest_ctx()
    alerts = RouteStage().exec(ctx, [alert("a"), alert("b", tool="x")])
    GroupStage().exec(ctx, alerts)
    (key,) = ctx.groups
    assert key == group_key(tree(), {"alert_id": "tool:failed"})
    record = ctx.groups[key]
    assert record.receiver == "ops" and record.group_labels == {"alert_id": "tool:failed"}
    assert record.state.next_flush_at == T0 + 30 * S
    assert ctx.members == {(key, "a"), (key, "b")} and ctx.existing == set()


def test_group_stage_keeps_a_scheduled_flush_and_marks_stored_groups() -> None:
    key = group_key(tree(), {"alert_id": "tool:failed"})
    stored = GroupRecord(
        key, "0", "ops", {"alert_id": "tool:failed"}, GroupState(first_alert_at=T0, next_flush_at=T0 + 30 * S)
    )
    ctx = ingest_ctx(T0 + 10 * S, {key: stored})
    GroupStage().exec(ctx, RouteStage().exec(ctx, [alert("c", starts_at=T0 + 10 * S)]))
    assert ctx.groups == {}  # unchanged timers: nothing to write but the membership
    assert ctx.members == {(key, "c")} and ctx.existing == {key}


def test_group_stage_wakes_an_idle_group_after_group_interval() -> None:
    key = group_key(tree(), {"alert_id": "tool:failed"})
    idle = GroupState(first_alert_at=T0, next_flush_at=None, last_flush_at=T0, last_notified_at=T0)
    ctx = ingest_ctx(T0 + M, {key: GroupRecord(key, "0", "ops", {"alert_id": "tool:failed"}, idle)})
    GroupStage().exec(ctx, RouteStage().exec(ctx, [alert("a", starts_at=T0 + M)]))
    assert ctx.groups[key].state.next_flush_at == T0 + 5 * M


def test_ingest_pipeline_is_route_then_group() -> None:
    assert [type(s) for s in INGEST] == [RouteStage, GroupStage]
    ctx = ingest_ctx()
    run_stages(INGEST, ctx, [alert("a")])
    assert len(ctx.members) == 1


# --- flush --------------------------------------------------------------------------------------------


def test_mute_stage_drops_targets_of_a_firing_source() -> None:
    rule = InhibitRule(
        (parse_matcher('alert_id="src"'),), (parse_matcher('alert_id="tool:failed"'),), ("tool",)
    )
    source = alert("s", alert_id="src", tool="x")
    mutes = MuteIndex((rule,), [source], (), T0)
    ctx = flush_ctx(mutes=mutes)
    out = MuteStage().exec(ctx, [alert("a", tool="x"), alert("b", tool="y")])
    assert [a.fingerprint for a in out] == ["b"]
    assert ctx.muted == {"a": "inhibited"}
    assert mutes.inhibited_by(alert("a", tool="x")) == ["s"]


def test_mute_stage_drops_silenced_alerts_only_while_active() -> None:
    silence = Silence("sil_1", (parse_matcher('tool="x"'),), T0, T0 + H)
    ctx = flush_ctx(mutes=MuteIndex((), (), [silence], T0))
    out = MuteStage().exec(ctx, [alert("a", tool="x"), alert("b", tool="y")])
    assert [a.fingerprint for a in out] == ["b"] and ctx.muted == {"a": "silenced"}
    later = flush_ctx(now=T0 + H, mutes=MuteIndex((), (), [silence], T0 + H))
    assert len(MuteStage().exec(later, [alert("a", tool="x")])) == 1


def test_mute_stage_names_inhibition_first_when_an_alert_is_also_silenced() -> None:
    rule = InhibitRule(
        (parse_matcher('alert_id="src"'),), (parse_matcher('alert_id="tool:failed"'),), ("tool",)
    )
    silence = Silence("sil_1", (parse_matcher('tool="x"'),), T0, T0 + H)
    ctx = flush_ctx(mutes=MuteIndex((rule,), [alert("s", alert_id="src", tool="x")], [silence], T0))
    assert MuteStage().exec(ctx, [alert("a", tool="x")]) == []
    assert ctx.muted == {"a": "inhibited"}


def test_dedup_stage_first_notification_then_nothing_new() -> None:
    ctx = flush_ctx()
    assert len(DedupStage().exec(ctx, [alert("a")])) == 1
    assert ctx.reason is NotifyReason.FIRST_NOTIFICATION and ctx.firing == {"a@warning"}
    told = GroupState(
        first_alert_at=T0,
        next_flush_at=T0 + 5 * M,
        last_flush_at=T0,
        last_notified_at=T0,
        last_firing=frozenset({"a@warning"}),
    )
    again = flush_ctx(told, now=T0 + 5 * M)
    assert DedupStage().exec(again, [alert("a")]) == []
    assert again.reason is NotifyReason.NONE


def test_dedup_stage_renotifies_an_escalation_of_the_same_alert() -> None:
    told = GroupState(
        first_alert_at=T0, next_flush_at=T0 + M, last_notified_at=T0, last_firing=frozenset({"a@warning"})
    )
    escalated = dataclasses.replace(alert("a"), severity="error")
    ctx = flush_ctx(told, now=T0 + M)
    assert DedupStage().exec(ctx, [escalated]) == [escalated]
    assert ctx.reason is NotifyReason.NEW_ALERTS and firing_key(escalated) == "a@error"


def test_dedup_stage_repeats_after_repeat_interval() -> None:
    told = GroupState(
        first_alert_at=T0, next_flush_at=T0 + 4 * H, last_notified_at=T0, last_firing=frozenset({"a@warning"})
    )
    ctx = flush_ctx(told, now=T0 + 4 * H)
    assert len(DedupStage().exec(ctx, [alert("a")])) == 1
    assert ctx.reason is NotifyReason.REPEAT_INTERVAL


def test_dedup_stage_without_send_resolved_sends_no_resolved_alert() -> None:
    quiet = dataclasses.replace(SPEC, send_resolved=False)
    told = GroupState(
        first_alert_at=T0, next_flush_at=T0 + M, last_notified_at=T0, last_firing=frozenset({"a", "b"})
    )
    all_resolved = flush_ctx(told, now=T0 + M, spec=quiet)
    assert DedupStage().exec(all_resolved, [alert("a", RESOLVED), alert("b", RESOLVED)]) == []
    assert all_resolved.reason is NotifyReason.ALL_RESOLVED  # recorded, not sent
    mixed = flush_ctx(told, now=T0 + 5 * H, spec=quiet)
    out = DedupStage().exec(mixed, [alert("a"), alert("b", RESOLVED)])
    assert [a.fingerprint for a in out] == ["a"]


def test_dedup_stage_with_send_resolved_tells_the_resolution() -> None:
    told = GroupState(
        first_alert_at=T0, next_flush_at=T0 + M, last_notified_at=T0, last_firing=frozenset({"a"})
    )
    ctx = flush_ctx(told, now=T0 + M)
    assert len(DedupStage().exec(ctx, [alert("a", RESOLVED)])) == 1
    assert ctx.reason is NotifyReason.ALL_RESOLVED and ctx.resolved == {"a"}


def test_slo_stage_stamps_minutes_and_breach_from_starts_at() -> None:
    ctx = flush_ctx(now=T0 + 16 * M)
    young = alert("y", starts_at=T0 + 10 * M)
    other = alert("o", alert_id="backlog:stale")
    out = SloStage().exec(ctx, [alert("a"), young, alert("r", RESOLVED), other])
    assert [(a.slo_minutes, a.slo_breached) for a in out] == [
        (15, True),
        (15, False),
        (15, False),
        (None, False),
    ]


def test_link_stage_points_at_the_runbook_and_the_console() -> None:
    (out,) = LinkStage().exec(flush_ctx(), [alert("abc")])
    assert out.runbook_url == "http://console.test/runbooks/tool:failed"
    assert out.console_url == "http://console.test/alerts/abc"


def test_delivery_stage_orders_truncates_and_builds_the_notification() -> None:
    ctx = flush_ctx()
    alerts = [alert("r", RESOLVED), alert("late", starts_at=T0 + M), alert("early")]
    out = DeliveryStage().exec(ctx, alerts)
    assert [a.fingerprint for a in out] == ["early", "late"]
    assert ctx.delivery is not None
    n = ctx.delivery.notification
    assert ctx.delivery.delivery_id == "dlv_id1" and n.notification_id == "msg_id0"
    assert n.truncated_alerts == 1 and n.receiver == "ops" and n.routing_key == "fiction-ops"
    assert n.group_key == "0:ops:{}" and n.group_labels == {"alert_id": "tool:failed"}
    assert n.environment == "pre-alpha" and n.external_url == "http://console.test"
    assert [a.fingerprint for a in n.alerts] == ["early", "late"] and ctx.delivery.receiver_type == "webhook"


def test_delivery_stage_never_stores_a_pagerduty_integration_key() -> None:
    pd = ReceiverSpec(
        name="ops", type="pagerduty", url="https://events.pagerduty.com/v2/enqueue", routing_key="R0UT1NGKEY"
    )
    ctx = flush_ctx(spec=pd)
    DeliveryStage().exec(ctx, [alert("a")])
    assert ctx.delivery is not None and ctx.delivery.notification.routing_key is None
    assert "R0UT1NGKEY" not in str(notification_json(ctx.delivery.notification))


def test_flush_pipeline_order_and_early_stop() -> None:
    assert [type(s) for s in FLUSH] == [
        MuteStage,
        DedupStage,
        SloStage,
        LinkStage,
        DeliveryStage,
    ]
    silence = Silence("sil_1", (parse_matcher('alert_id="tool:failed"'),), T0, T0 + H)
    muted = flush_ctx(mutes=MuteIndex((), (), [silence], T0))
    assert run_stages(FLUSH, muted, [alert("a")]) == []
    assert muted.delivery is None and muted.reason is NotifyReason.NONE
    ctx = flush_ctx()
    (sent,) = run_stages(FLUSH, ctx, [alert("a")])
    assert sent.slo_minutes == 15 and sent.console_url.endswith("/alerts/a")


def test_notification_json_round_trip() -> None:
    ctx = flush_ctx()
    run_stages(FLUSH, ctx, [alert("a"), alert("b")])
    assert ctx.delivery is not None
    data = notification_json(ctx.delivery.notification)
    assert data["alerts"][0]["starts_at"] == "2026-11-25T20:00:00Z"
    assert notification_from_json(data) == ctx.delivery.notification


def test_alert_rows_and_read_time_enrichment() -> None:
    row: dict[str, Any] = {
        "alert_id": "tool:failed",
        "fingerprint": "f",
        "status": FIRING,
        "severity": "warning",
        "title": "t",
        "description": "d",
        "labels": {"alert_id": "tool:failed"},
        "starts_at": T0,
        "ends_at": None,
        "generated_at": T0,
        "annotations": {"summary": "s"},
    }
    shown = enrich(alert_from_row(row), ALERTING, T0 + 20 * M)
    assert shown.annotations == {"summary": "s"} and shown.slo_breached
    assert shown.runbook_url == "http://console.test/runbooks/tool:failed"
