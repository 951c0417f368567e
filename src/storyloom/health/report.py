"""The PlannerHealth report (docs/reference/payloads.md): one read-only picture of planners, backlog, telemetry, SLOs
and the firing alerts with where they were routed.

Reading it never fires, resolves or sends anything: evaluated alerts change only in the scheduled
evaluation (`storyloom.health.evaluate`). Every figure comes from SQL aggregates over indexed columns,
and lists are bounded, so the report stays fast with millions of executions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, String, case, cast, func, select

from storyloom.alerting.notify import enrich
from storyloom.alerting.reads import delivery_stats, readable_alert, routed_receivers
from storyloom.domain.alerts import DRILL_LABEL, FIRING, rfc3339
from storyloom.domain.catalog import BACKLOG_CONTRACT_DRIFT, PLANNER_TEMPLATE_MISSING, Severity
from storyloom.domain.durations import format_duration
from storyloom.domain.routing import receivers_for
from storyloom.domain.slo import FAST_BURN_LONG_WINDOW, SLOW_BURN_LONG_WINDOW
from storyloom.health import execution_queries as executions
from storyloom.health import queries as q
from storyloom.health import totals
from storyloom.health.evaluate import last_evaluation, lease_ttl_for
from storyloom.runtime import Runtime
from storyloom.store.events import BACKLOG_ACTION, BACKLOG_TELEMETRY
from storyloom.store.tables import (
    alerts,
    backlog_items,
    planner_executions,
    plans,
    transcripts,
    workflow_events,
)

HEALTHY, DEGRADED, CRITICAL = "healthy", "degraded", "critical"
PLAN_LIMIT = 25
ITEM_LIMIT = 50
EVENT_LIMIT = 20
FAILURE_LIMIT = 10
ALERT_LIMIT = 50
SNIPPET_CHARS = 400
_RANK = {s.value: s.rank for s in Severity}


def status_for(firing: Iterable[tuple[str, str]], *, template_missing: bool = False) -> str:
    """The report's status (docs/reference/payloads.md) from (alert_id, severity) of the firing alerts.

    critical: a missing planner template, or `backlog:contract-drift` at error or above;
    degraded: any other firing alert of warning or above; healthy otherwise (info alerts do not count).
    """
    status = CRITICAL if template_missing else HEALTHY
    for alert_id, severity in firing:
        rank = _RANK.get(severity, 0)
        if alert_id == PLANNER_TEMPLATE_MISSING or (
            alert_id == BACKLOG_CONTRACT_DRIFT and rank >= Severity.ERROR.rank
        ):
            return CRITICAL
        if rank >= Severity.WARNING.rank:
            status = DEGRADED if status == HEALTHY else status
    return status


def health_status(conn: Connection) -> dict[str, Any]:
    """The PlannerHealth status (the report's own rule, docs/reference/payloads.md) and firing counts."""
    rows = _firing(conn)
    firing: dict[str, int] = {}
    for _, severity, count in rows:
        firing[severity] = firing.get(severity, 0) + count
    missing = any(state.missing for state in q.template_states(conn))
    status = status_for(((a, s) for a, s, _ in rows), template_missing=missing)
    return {"status": status, "firing": firing}


def _iso(moment: datetime | None) -> str | None:
    return rfc3339(moment)


def _item_view(row: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    view = {
        "plan_id": row["plan_id"],
        "backlog_id": row["backlog_id"],
        "phase": row["phase"],
        "status": row["status"],
        "agent_id": row["agent_id"],
        "persona_id": row["persona_id"],
        "provider": row["provider"],
        "model": row["model"],
        "task_id": row["task_id"],
        "worker_id": row["worker_id"],
        "updated_at": _iso(row["updated_at"]),
        "idle_s": round((now - row["updated_at"]).total_seconds(), 3),
    }
    if "reason" in row:
        view["reason"] = row["reason"]
        view["task_status"] = row.get("task_status")
    return view


# --- sections ------------------------------------------------------------------------------------------


def _planners(states: list[q.TemplateState]) -> list[dict[str, Any]]:
    by_name: dict[str, list[dict[str, Any]]] = {}
    for state in states:
        by_name.setdefault(state.spec.planner_name, []).append(
            {
                "step_id": state.spec.step_id,
                "template_id": state.spec.template_id,
                "template_found": state.found,
                "template_active": state.active,
                "issue": state.issue,
            }
        )
    return [{"name": name, "steps": steps} for name, steps in by_name.items()]


def _plan_summaries(conn: Connection) -> list[dict[str, Any]]:
    """The most recently updated plans with their items per status."""
    rows = conn.execute(
        select(
            plans.c.id,
            plans.c.name,
            plans.c.status,
            plans.c.agent_id,
            plans.c.persona_id,
            plans.c.provider,
            plans.c.model,
            plans.c.updated_at,
        )
        .order_by(plans.c.updated_at.desc(), plans.c.id)
        .limit(PLAN_LIMIT)
    ).mappings()
    summaries = {
        r["id"]: {
            "plan_id": r["id"],
            "name": r["name"],
            "status": r["status"],
            "agent_id": r["agent_id"],
            "persona_id": r["persona_id"],
            "provider": r["provider"],
            "model": r["model"],
            "updated_at": _iso(r["updated_at"]),
            "total_items": 0,
            "counts": dict.fromkeys(
                ("pending", "in_progress", "complete", "blocked", "failed", "cancelled"), 0
            ),
        }
        for r in rows
    }
    if summaries:
        for plan_id, status, count in conn.execute(
            select(backlog_items.c.plan_id, backlog_items.c.status, func.count())
            .where(backlog_items.c.plan_id.in_(list(summaries)))
            .group_by(backlog_items.c.plan_id, backlog_items.c.status)
        ):
            summary = summaries[plan_id]
            summary["counts"][status] = int(count)
            summary["total_items"] += int(count)
    return list(summaries.values())


def _events(conn: Connection, kind: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        select(
            workflow_events.c.id,
            workflow_events.c.plan_id,
            workflow_events.c.backlog_id,
            workflow_events.c.payload,
            workflow_events.c.created_at,
        )
        .where(workflow_events.c.kind == kind)
        .order_by(workflow_events.c.created_at.desc(), workflow_events.c.id.desc())
        .limit(EVENT_LIMIT)
    ).all()
    return [
        {
            **(row.payload or {}),
            "event_id": row.id,
            "plan_id": row.plan_id,
            "backlog_id": row.backlog_id,
            "at": _iso(row.created_at),
        }
        for row in rows
    ]


def _recent_failures(conn: Connection) -> list[dict[str, Any]]:
    pe = planner_executions.c
    rows = conn.execute(
        select(
            pe.plan_id,
            pe.backlog_id,
            pe.task_id,
            pe.attempt,
            pe.planner_name,
            pe.phase,
            pe.provider,
            pe.model,
            pe.agent_id,
            pe.persona_id,
            pe.latency_ms,
            pe.critique_status,
            func.substr(pe.error, 1, 1000).label("error"),
            pe.finished_at,
        )
        .where(pe.outcome == "failed")
        .order_by(pe.finished_at.desc(), pe.id.desc())
        .limit(FAILURE_LIMIT)
    ).mappings()
    failures = [dict(r) for r in rows]
    snippets = _snippets(conn, [(f["task_id"], f["attempt"]) for f in failures])
    for failure in failures:
        failure["finished_at"] = _iso(failure["finished_at"])
        failure["latency_ms"] = round(float(failure["latency_ms"]), 3)
        failure["transcript_snippet"] = snippets.get((failure["task_id"], failure["attempt"]))
    return failures


def _snippets(conn: Connection, keys: list[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """The start of each attempt's last reply (the assistant's, else the last transcript entry)."""
    if not keys:
        return {}
    assistant_first = case((transcripts.c.role == "assistant", 0), else_=1)
    rows = conn.execute(
        select(
            transcripts.c.task_id,
            transcripts.c.attempt,
            func.substr(transcripts.c.content, 1, SNIPPET_CHARS + 1).label("text"),
        )
        .where(transcripts.c.task_id.in_({k[0] for k in keys}))
        .order_by(assistant_first, transcripts.c.id.desc())
    ).all()
    wanted = set(keys)
    found: dict[tuple[str, int], str] = {}
    for row in rows:
        key = (row.task_id, row.attempt)
        if key in wanted and key not in found:
            text = " ".join(str(row.text).split())
            found[key] = text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1] + "…"
    return found


# A drill (`drill="true"`, sent by `storyloom drill`) rehearses delivery; it never makes health degraded.
NOT_A_DRILL = ~cast(alerts.c.labels, String).like(f'%"{DRILL_LABEL}": "true"%')


def _firing(conn: Connection) -> list[tuple[str, str, int]]:
    """(alert id, severity, count) of the firing alerts that count for the status: drills do not."""
    return [
        (str(r[0]), str(r[1]), int(r[2]))
        for r in conn.execute(
            select(alerts.c.alert_id, alerts.c.severity, func.count())
            .where(alerts.c.status == FIRING, NOT_A_DRILL)
            .group_by(alerts.c.alert_id, alerts.c.severity)
        )
    ]


def _alerts_and_routes(
    conn: Connection, rt: Runtime, now: datetime
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The most severe, newest firing alerts (bounded) and the receivers each was routed to."""
    rows: list[Any] = []
    for severity in sorted(Severity, key=lambda s: -s.rank):  # most severe first, newest first within
        if len(rows) >= ALERT_LIMIT:
            break
        rows += conn.execute(
            select(alerts)
            .where(alerts.c.status == FIRING, alerts.c.severity == severity.value)
            .order_by(alerts.c.starts_at.desc(), alerts.c.fingerprint)
            .limit(ALERT_LIMIT - len(rows))
        ).mappings()
    alerting = rt.alerting
    shown = [enrich(readable_alert(row).alert, alerting, now) for row in rows]
    sent_to = routed_receivers(conn, [a.fingerprint for a in shown])
    payloads, routes = [], []
    for alert in shown:
        payloads.append(alert.to_payload())
        receivers = sent_to.get(alert.fingerprint) or []
        if not receivers and alerting.route is not None:
            receivers = receivers_for(alerting.route, alert.labels)  # not grouped by the notifier yet
        routes.append({"alert_fingerprint": alert.fingerprint, "receivers": list(dict.fromkeys(receivers))})
    return payloads, routes


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


# --- the report ------------------------------------------------------------------------------------------


def planner_health(rt: Runtime) -> dict[str, Any]:
    """The PlannerHealth report, read in one read transaction."""
    now = rt.clock.now()
    health = rt.config.health
    slo = health.slo
    with rt.db.read() as conn:
        states = q.template_states(conn)
        counts = q.status_counts(conn)
        stale = q.stale_items(conn, now, health.stale_in_progress, ITEM_LIMIT)
        stale_total = (
            len(stale) if len(stale) < ITEM_LIMIT else q.count_stale(conn, now, health.stale_in_progress)
        )
        orphaned = q.orphaned_items(conn, ITEM_LIMIT)
        orphaned_total = len(orphaned) if len(orphaned) < ITEM_LIMIT else q.count_orphaned(conn)
        outcomes = totals.outcome_counts(conn, now)
        last_execution_at = conn.execute(select(func.max(planner_executions.c.finished_at))).scalar()
        critique = executions.critique_counts(conn, now)
        latency = executions.latency_summary(conn, now, slo.phase_latency.threshold)
        burn = executions.latency_windows(
            conn, now, slo.phase_latency.threshold, (FAST_BURN_LONG_WINDOW, SLOW_BURN_LONG_WINDOW)
        )
        queue = q.queue_stats(conn, depth=counts["pending"])
        deliveries = delivery_stats(conn, now)
        firing = _firing(conn)
        alert_payloads, routes = _alerts_and_routes(conn, rt, now)
        report: dict[str, Any] = {
            "generated_at": rfc3339(now),
            "status": status_for(
                ((a, s) for a, s, _ in firing), template_missing=any(st.missing for st in states)
            ),
            "planners": _planners(states),
            "backlog": {
                "total_items": sum(counts.values()),
                "pending": counts["pending"],
                "in_progress": counts["in_progress"],
                "complete": counts["complete"],
                "blocked": counts["blocked"],
                "failed": counts["failed"],
                "plans": _plan_summaries(conn),
                "recent_transitions": _events(conn, BACKLOG_TELEMETRY),
                "stale_items": [_item_view(i, now) for i in stale],
                "orphaned_items": [_item_view(i, now) for i in orphaned],
                "action_logs": _events(conn, BACKLOG_ACTION),
            },
            "telemetry": {
                "total_executions": sum(outcomes.values()),
                "last_execution_at": _iso(last_execution_at),
                "outcome_counts": {
                    **dict.fromkeys(("success", "partial", "failed", "cancelled"), 0),
                    **outcomes,
                },
                "critique_status_counts": critique,
                "recent_failures": _recent_failures(conn),
            },
            "slo": {
                "phase_latency": {
                    "p50_ms": _round(latency.percentiles[50]),
                    "p95_ms": _round(latency.percentiles[95]),
                    "p99_ms": _round(latency.percentiles[99]),
                    "objective": slo.phase_latency.objective,
                    "good_ratio": _round(latency.good_ratio, 4),
                    "burn_rate_1h": round(burn.rate(FAST_BURN_LONG_WINDOW, slo.phase_latency.objective), 3),
                    "burn_rate_6h": round(burn.rate(SLOW_BURN_LONG_WINDOW, slo.phase_latency.objective), 3),
                },
                "queue": {
                    "depth": queue.depth,
                    "ready": queue.ready,
                    "oldest_age_s": _round(_seconds(queue.oldest_age(now))),
                },
                "critique": _critique_block(critique),
                "delivery": {
                    "success_ratio": _round(deliveries.success_ratio, 4),
                    "p95_ms": _round(deliveries.p95_ms),
                    "pending": deliveries.pending,
                    "dead": deliveries.dead,
                },
            },
            "alerts": alert_payloads,
            "routes": routes,
            "warnings": [],
        }
        evaluation = last_evaluation(conn)
        plans_waiting = executions.count_waiting_plans(conn) if not outcomes else 0
    report["warnings"] = _warnings(
        rt,
        now,
        states=states,
        stale_total=stale_total,
        orphaned_total=orphaned_total,
        queue=queue,
        plans_waiting=plans_waiting,
        firing_total=sum(c for _, _, c in firing),
        shown=len(alert_payloads),
        evaluation=evaluation,
        latency_threshold_good=latency.good_ratio,
    )
    return report


def _seconds(delta: Any) -> float | None:
    return None if delta is None else delta.total_seconds()


def _critique_block(counts: Mapping[str, int]) -> dict[str, Any]:
    passed = sum(counts.get(s, 0) for s in executions.PASSED_CRITIQUE)
    exhausted = sum(counts.get(s, 0) for s in executions.EXHAUSTED_CRITIQUE)
    judged = passed + exhausted
    return {"pass_ratio": round(passed / judged, 4) if judged else None, "exhausted": exhausted}


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def _warnings(
    rt: Runtime,
    now: datetime,
    *,
    states: list[q.TemplateState],
    stale_total: int,
    orphaned_total: int,
    queue: q.QueueStats,
    plans_waiting: int,
    firing_total: int,
    shown: int,
    evaluation: tuple[str, datetime] | None,
    latency_threshold_good: float | None,
) -> list[str]:
    health = rt.config.health
    out = []
    for state in states:
        if state.issue:
            out.append(
                f"{state.spec.planner_name} cannot run step {state.spec.step_id}: {state.issue}."
                if state.missing
                else f"{state.spec.planner_name} step {state.spec.step_id}: {state.issue}."
            )
    if stale_total:
        out.append(
            f"{_plural(stale_total, 'backlog item has', 'backlog items have')} been in progress without an "
            f"update for longer than {format_duration(health.stale_in_progress)}."
        )
    if orphaned_total:
        out.append(
            f"{_plural(orphaned_total, 'backlog item is', 'backlog items are')} orphaned: "
            "their plan or task is gone, or their task already finished."
        )
    age = queue.oldest_age(now)
    threshold = health.slo.queue_age.threshold
    if age is not None and age > threshold:
        out.append(
            f"The oldest ready backlog item has waited {format_duration(age)}, longer than the "
            f"{format_duration(threshold)} queue objective."
        )
    if plans_waiting:
        out.append(
            f"No planner execution has been recorded yet although {_plural(plans_waiting, 'plan')} "
            f"{'exists' if plans_waiting == 1 else 'exist'}."
        )
    objective = health.slo.phase_latency.objective
    if latency_threshold_good is not None and latency_threshold_good < objective:
        out.append(
            f"Only {latency_threshold_good:.1%} of recent phases finished within "
            f"{format_duration(health.slo.phase_latency.threshold)} (objective {objective:.0%})."
        )
    if evaluation is None:
        out.append(
            "The scheduled health evaluation has not run yet, so evaluated alerts may be missing "
            "(it runs in the worker: is one running?)."
        )
    else:
        holder, expires_at = evaluation
        last_run = expires_at - lease_ttl_for(rt.config)
        if expires_at < now:
            out.append(
                f"The scheduled health evaluation last ran at {rfc3339(last_run)} (worker {holder}) and has "
                "stopped since, so evaluated alerts may be out of date."
            )
    if firing_total > shown:
        out.append(
            f"Showing {shown} of {firing_total} firing alerts, most severe and newest first; "
            "see /api/alerts?status=firing for all of them."
        )
    return out
