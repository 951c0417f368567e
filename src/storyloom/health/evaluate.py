"""The scheduled health evaluation: raises and resolves the catalog's evaluated alerts (docs/reference/alerts.md).

`evaluate(rt)` is one pass inside one transaction: every rule computes the alerts it wants firing from SQL
aggregates, then the pass reconciles them with what fires now (fire the new ones, refresh changed ones,
resolve the ones whose cause is gone) and runs the other services' reconcilers (`EXTRA_EVALUATORS`).
Reading the PlannerHealth report never does any of this: alerts change here, in the background.

It runs every `health.evaluate_every` as a DBOS scheduled workflow (`engine/health_schedule.py`): each
tick runs once across all workers. A pass stamps the `leases` row "health" with the worker that ran it and
when the next pass is overdue (three intervals, at least 30 s), which the report reads to warn when the
evaluation has stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, delete, insert, select

from storyloom.alerting.publish import AlertSignal, alert_fingerprint, alert_labels, fire, resolve
from storyloom.backlog.contract_drift import reconcile_contract_drift
from storyloom.backlog.obligations import reconcile_obligation_aging, reconcile_obligation_drift
from storyloom.config import Config
from storyloom.domain.alerts import FIRING, rfc3339
from storyloom.domain.catalog import (
    BACKLOG_ORPHANED,
    BACKLOG_QUEUE_AGE,
    BACKLOG_STALE,
    LORE_BLOCKED,
    PLANNER_CRITIQUE_EXHAUSTED,
    PLANNER_LATENCY_SLO,
    PLANNER_NO_EXECUTIONS,
    PLANNER_RECENT_FAILURES,
    PLANNER_TEMPLATE_INACTIVE,
    PLANNER_TEMPLATE_MISSING,
    WORLDBIBLE_MISSING,
    WORLDBIBLE_STALE,
)
from storyloom.domain.durations import format_duration
from storyloom.domain.slo import (
    FAST_BURN_FACTOR,
    FAST_BURN_LONG_WINDOW,
    FAST_BURN_SHORT_WINDOW,
    SLOW_BURN_FACTOR,
    SLOW_BURN_LONG_WINDOW,
    SLOW_BURN_SHORT_WINDOW,
    multiwindow_burning,
)
from storyloom.health import execution_queries as executions
from storyloom.health import queries as q
from storyloom.runtime import Runtime
from storyloom.store.set_aside import clear_set_aside, set_aside, set_aside_items
from storyloom.store.tables import alerts, leases, planner_executions, plans

log = structlog.get_logger(__name__)

LEASE_NAME = "health"
SOURCE = "health"
# Set aside: a rule or reconciler that raised ("rule:<name>", retried every pass, cleared once it works
# again) and an alert the pass could not fire (by fingerprint, skipped from then on).
SET_ASIDE_PASS = "health"
BURN_WINDOWS = (FAST_BURN_SHORT_WINDOW, SLOW_BURN_SHORT_WINDOW, FAST_BURN_LONG_WINDOW, SLOW_BURN_LONG_WINDOW)


# An extra reconciler: (conn, rt, now) → how many alerts it changed. Runs inside the evaluation's transaction.
Evaluator = Callable[[Connection, Runtime, datetime], int]

# Other services' reconcilers for their evaluated alerts; append to it to be called by every evaluation.
# The contract-drift and obligation reconcilers are in `builtin_evaluators()`.
EXTRA_EVALUATORS: list[Evaluator] = []


def _plan_labels(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"plan_id": row["plan_id"], "agent_id": row.get("agent_id"), "persona_id": row.get("persona_id")}


def _item_labels(item: Mapping[str, Any]) -> dict[str, Any]:
    """The alert labels of a backlog item (the same keys the planner runner uses)."""
    return {
        "plan_id": item["plan_id"],
        "backlog_id": item["backlog_id"],
        "task_id": item.get("task_id"),
        "phase": item["phase"],
        "agent_id": item["agent_id"],
        "persona_id": item["persona_id"],
        "provider": item["provider"],
        "model": item["model"],
    }


# --- rules: each returns the alerts it wants firing now ---------------------------------------------


def rule_recent_failures(conn: Connection, config: Config, now: datetime) -> list[AlertSignal]:
    window = config.health.recent_failure_window
    return [
        AlertSignal(
            PLANNER_RECENT_FAILURES,
            _plan_labels(row),
            f"{row['failures']} failed planner execution(s) of {row['items']} item(s) of plan {row['plan_id']} "
            f"not completed since, within the last {format_duration(window)}; the latest finished at "
            f"{rfc3339(row['last_failure_at'])}",
        )
        for row in executions.recent_failures_by_plan(conn, now - window)
    ]


def rule_no_executions(conn: Connection, config: Config, now: datetime) -> list[AlertSignal]:
    if executions.any_execution(conn):
        return []
    waiting = executions.count_waiting_plans(conn)
    if not waiting:
        return []
    return [
        AlertSignal(
            PLANNER_NO_EXECUTIONS,
            {},
            f"{waiting} plan(s) exist but no planner execution has been recorded yet (is a worker running?)",
        )
    ]


def rule_templates(conn: Connection, config: Config, now: datetime) -> list[AlertSignal]:
    out = []
    for state in q.template_states(conn):
        if state.issue is None:
            continue
        labels = {"step_id": state.spec.step_id, "template_id": state.spec.template_id}
        alert_id = PLANNER_TEMPLATE_MISSING if state.missing else PLANNER_TEMPLATE_INACTIVE
        out.append(
            AlertSignal(
                alert_id, labels, f"{state.spec.planner_name} (step {state.spec.step_id}): {state.issue}"
            )
        )
    return out


def rule_latency_slo(conn: Connection, config: Config, now: datetime) -> list[AlertSignal]:
    slo = config.health.slo.phase_latency
    windows = executions.latency_windows(conn, now, slo.threshold, BURN_WINDOWS)
    rates = {w: windows.rate(w, slo.objective) for w in BURN_WINDOWS}
    fast = multiwindow_burning(rates[FAST_BURN_LONG_WINDOW], rates[FAST_BURN_SHORT_WINDOW], FAST_BURN_FACTOR)
    slow = multiwindow_burning(rates[SLOW_BURN_LONG_WINDOW], rates[SLOW_BURN_SHORT_WINDOW], SLOW_BURN_FACTOR)
    if not (fast or slow):
        return []
    which = "fast" if fast else "slow"
    return [
        AlertSignal(
            PLANNER_LATENCY_SLO,
            {},
            f"phase latency is burning its error budget ({which} burn): burn rate "
            f"{rates[FAST_BURN_LONG_WINDOW]:.1f} over 1h and {rates[FAST_BURN_SHORT_WINDOW]:.1f} over 5m "
            f"(page over {FAST_BURN_FACTOR:g}), {rates[SLOW_BURN_LONG_WINDOW]:.1f} over 6h and "
            f"{rates[SLOW_BURN_SHORT_WINDOW]:.1f} over 30m (page over {SLOW_BURN_FACTOR:g}); objective "
            f"{slo.objective:.0%} of phases within {format_duration(slo.threshold)}",
        )
    ]


def rule_stale(conn: Connection, config: Config, now: datetime) -> list[AlertSignal]:
    stale_after = config.health.stale_in_progress
    return [
        AlertSignal(
            BACKLOG_STALE,
            _item_labels(item),
            f"{item['backlog_id']} ({item['phase']}) of plan {item['plan_id']} has been in progress without "
            f"an update since {rfc3339(item['updated_at'])}, longer than {format_duration(stale_after)}"
            + (f" (worker {item['worker_id']})" if item.get("worker_id") else ""),
        )
        for item in q.stale_items(conn, now, stale_after)
    ]


_ORPHAN_REASONS = {
    "plan-gone": "its plan no longer exists",
    "no-task": "it is in progress without a task",
    "task-gone": "its task {task_id} no longer exists",
    "task-finished": "it is in progress but its task {task_id} already finished ({task_status})",
}


def rule_orphaned(conn: Connection, config: Config, now: datetime) -> list[AlertSignal]:
    return [
        AlertSignal(
            BACKLOG_ORPHANED,
            _item_labels(item),
            f"{item['backlog_id']} ({item['status']}) of plan {item['plan_id']} is orphaned: "
            + _ORPHAN_REASONS[item["reason"]].format(**item),
        )
        for item in q.orphaned_items(conn)
    ]


def rule_queue_age(conn: Connection, config: Config, now: datetime) -> list[AlertSignal]:
    threshold = config.health.slo.queue_age.threshold
    stats = q.queue_stats(conn, with_oldest=True)
    age = stats.oldest_age(now)
    if age is None or age <= threshold or stats.oldest is None:
        return []
    oldest = stats.oldest
    return [
        AlertSignal(
            BACKLOG_QUEUE_AGE,
            {},
            f"the oldest ready item, {oldest['backlog_id']} ({oldest['phase']}) of plan {oldest['plan_id']}, "
            f"has waited since {rfc3339(stats.oldest_ready_at)}, longer than the "
            f"{format_duration(threshold)} queue objective; {stats.ready} item(s) ready",
        )
    ]


def rule_lore_blocked(conn: Connection, config: Config, now: datetime) -> list[AlertSignal]:
    out = []
    for row in q.lore_blocked_plans(conn):
        lore = ", ".join(row["unready"]) or "none left (the scheduler releases the items at its next pass)"
        out.append(
            AlertSignal(
                LORE_BLOCKED,
                _plan_labels(row),
                f"{row['items']} item(s) of plan {row['plan_id']} are blocked by the lore gate; "
                f"lore not ready: {lore}",
            )
        )
    return out


def rule_worldbible_missing(conn: Connection, config: Config, now: datetime) -> list[AlertSignal]:
    return [
        AlertSignal(
            WORLDBIBLE_MISSING,
            _plan_labels(row),
            f"plan {row['plan_id']} is past its world-bible phase but has no active world-bible entry",
        )
        for row in q.plans_missing_world_bible(conn)
    ]


def rule_worldbible_stale(conn: Connection, config: Config, now: datetime) -> list[AlertSignal]:
    stale_after = config.health.worldbible_stale
    return [
        AlertSignal(
            WORLDBIBLE_STALE,
            _plan_labels(row),
            f"no world-bible entry of running plan {row['plan_id']} was updated within the last "
            f"{format_duration(stale_after)}",
        )
        for row in q.plans_with_stale_world_bible(conn, now, stale_after)
    ]


Rule = Callable[[Connection, Config, datetime], list[AlertSignal]]

# Every evaluated alert this module owns, and the rule that decides it.
RULES: dict[str, Rule] = {
    PLANNER_RECENT_FAILURES: rule_recent_failures,
    PLANNER_NO_EXECUTIONS: rule_no_executions,
    PLANNER_TEMPLATE_MISSING: rule_templates,  # one rule decides both template alerts
    PLANNER_TEMPLATE_INACTIVE: rule_templates,
    PLANNER_LATENCY_SLO: rule_latency_slo,
    BACKLOG_STALE: rule_stale,
    BACKLOG_ORPHANED: rule_orphaned,
    BACKLOG_QUEUE_AGE: rule_queue_age,
    LORE_BLOCKED: rule_lore_blocked,
    WORLDBIBLE_MISSING: rule_worldbible_missing,
    WORLDBIBLE_STALE: rule_worldbible_stale,
}
MANAGED = tuple(RULES)


def desired_alerts(
    conn: Connection, config: Config, now: datetime, *, broken: dict[str, Exception] | None = None
) -> dict[str, AlertSignal]:
    """Every alert the rules want firing now, by fingerprint.

    With `broken`, a rule that raises is recorded there by name (its query rolled back) and the others go
    on; without it, the error propagates."""
    wanted: dict[str, AlertSignal] = {}
    for rule in dict.fromkeys(RULES.values()):  # each rule once, in order
        try:
            with conn.begin_nested():
                signals = rule(conn, config, now)
        except Exception as exc:
            if broken is None:
                raise
            broken[rule.__name__] = exc
            continue
        for signal in signals:
            wanted[alert_fingerprint(alert_labels(signal))] = signal
    return wanted


def _ids_of(rule_names: Iterable[str]) -> set[str]:
    """The alert ids the named rules decide: theirs stay as they are while a rule cannot run."""
    names = set(rule_names)
    return {alert_id for alert_id, rule in RULES.items() if rule.__name__ in names}


# --- the pass ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EvaluationResult:
    at: datetime
    wanted: int = 0  # alerts the rules want firing
    fired: tuple[str, ...] = ()  # fingerprints that started (or started again) firing
    resolved: tuple[str, ...] = ()  # fingerprints resolved because their cause is gone
    refreshed: int = 0  # firing alerts whose severity or description changed
    extra_changes: int = 0  # what EXTRA_EVALUATORS and the built-in reconcilers reported
    errors: tuple[str, ...] = field(default=())


def reconcile_critique_exhausted(conn: Connection, rt: Runtime, now: datetime) -> int:
    """Resolve `planner:critique-exhausted` (fired by the planner runner) once its cause is gone: a later
    execution of the plan critiqued within budget (or without critique), or the plan finished."""
    pe = planner_executions.c
    gone = []
    for fingerprint, plan_id, starts_at in conn.execute(
        select(alerts.c.fingerprint, alerts.c.plan_id, alerts.c.starts_at).where(
            alerts.c.alert_id == PLANNER_CRITIQUE_EXHAUSTED, alerts.c.status == FIRING
        )
    ):
        plan_status = conn.execute(select(plans.c.status).where(plans.c.id == plan_id)).scalar()
        later_ok = conn.execute(
            select(pe.id)
            .where(
                pe.plan_id == plan_id,
                pe.finished_at > starts_at,
                pe.critique_status.not_in(executions.EXHAUSTED_CRITIQUE),
            )
            .limit(1)
        ).first()
        if plan_status in (None, "complete", "archived") or later_ok is not None:
            gone.append(fingerprint)
    return resolve(conn, gone, now, "the critique budget is no longer exhausted")


def builtin_evaluators() -> list[Evaluator]:
    """The critique-exhausted, contract-drift and obligation reconcilers, run on every pass."""
    return [
        reconcile_critique_exhausted,
        lambda conn, rt, now: reconcile_contract_drift(conn, now),
        lambda conn, rt, now: reconcile_obligation_aging(conn, now, rt.config.health.obligation_aging),
        lambda conn, rt, now: reconcile_obligation_drift(conn, now),
    ]


def _firing_managed(conn: Connection) -> dict[str, tuple[str, str, str]]:
    """fingerprint → (alert id, severity, description) of what the rules fired and still fires."""
    rows = conn.execute(
        select(alerts.c.fingerprint, alerts.c.alert_id, alerts.c.severity, alerts.c.description).where(
            alerts.c.alert_id.in_(MANAGED), alerts.c.status == FIRING, alerts.c.source == SOURCE
        )
    ).all()
    return {r.fingerprint: (r.alert_id, r.severity, r.description) for r in rows}


def _fire_or_set_aside(conn: Connection, fingerprint: str, signal: AlertSignal, now: datetime) -> bool:
    """Fire `signal` in a savepoint; an alert that cannot be fired is set aside and the pass goes on."""
    try:
        with conn.begin_nested():
            fire(conn, signal, now)
    except Exception as exc:
        set_aside(conn, SET_ASIDE_PASS, fingerprint, exc, now)
        return False
    return True


def _run_reconciler(conn: Connection, rt: Runtime, now: datetime, evaluator: Evaluator) -> int | str:
    """How many alerts `evaluator` changed, or its error (set aside until it runs cleanly again)."""
    item = f"reconciler:{getattr(evaluator, '__name__', '?')}"
    try:
        with conn.begin_nested():
            changed = int(evaluator(conn, rt, now) or 0)
    except Exception as exc:  # one broken reconciler must not stop the others
        log.exception("health reconciler failed", evaluator=item)
        set_aside(conn, SET_ASIDE_PASS, item, exc, now)
        return f"{type(exc).__name__}: {exc}"
    clear_set_aside(conn, SET_ASIDE_PASS, [item])
    return changed


def evaluate(
    rt: Runtime,
    *,
    now: datetime | None = None,
    worker: str | None = None,
    extra: Iterable[Evaluator] | None = None,
) -> EvaluationResult:
    """One evaluation pass in one transaction; `worker` (the one running it) is stamped as the last run."""
    now = now or rt.clock.now()
    config = rt.config  # read once: a reload applies from the next pass
    evaluators = list(extra) if extra is not None else [*builtin_evaluators(), *EXTRA_EVALUATORS]
    with rt.db.begin() as conn:
        if worker is not None:
            _stamp(conn, worker, now, lease_ttl_for(config))
        broken: dict[str, Exception] = {}
        wanted = desired_alerts(conn, config, now, broken=broken)
        for name, exc in broken.items():
            set_aside(conn, SET_ASIDE_PASS, f"rule:{name}", exc, now)
        clear_set_aside(
            conn, SET_ASIDE_PASS, [f"rule:{r.__name__}" for r in RULES.values() if r.__name__ not in broken]
        )
        aside = set_aside_items(conn, SET_ASIDE_PASS)
        firing = _firing_managed(conn)
        fired: list[str] = []
        refreshed = 0
        for fp, signal in wanted.items():
            current = firing.get(fp)
            if fp in aside or (current is not None and current[1:] == _state_of(signal)):
                continue
            if not _fire_or_set_aside(conn, fp, signal, now):
                continue
            if current is None:
                fired.append(fp)
            else:
                refreshed += 1
        undecided = _ids_of(broken)
        gone = [fp for fp, (alert_id, *_) in firing.items() if fp not in wanted and alert_id not in undecided]
        resolve(conn, gone, now, "the health evaluation no longer finds the cause")
        extra_changes = 0
        errors = [f"{name}: {type(exc).__name__}: {exc}" for name, exc in broken.items()]
        for evaluator in evaluators:
            outcome = _run_reconciler(conn, rt, now, evaluator)
            if isinstance(outcome, str):
                errors.append(outcome)
            else:
                extra_changes += outcome
    return EvaluationResult(
        at=now,
        wanted=len(wanted),
        fired=tuple(fired),
        resolved=tuple(gone),
        refreshed=refreshed,
        extra_changes=extra_changes,
        errors=tuple(errors),
    )


def _state_of(signal: AlertSignal) -> tuple[str, str]:
    return (alert_labels(signal)["severity"], signal.description)


def _stamp(conn: Connection, worker: str, now: datetime, overdue_after: timedelta) -> None:
    conn.execute(delete(leases).where(leases.c.name == LEASE_NAME))
    conn.execute(insert(leases).values(name=LEASE_NAME, holder=worker, expires_at=now + overdue_after))


def lease_ttl_for(config: Config) -> timedelta:
    """Three missed passes (at least 30 s): after that the report says the evaluation has stopped."""
    return max(config.health.evaluate_every * 3, timedelta(seconds=30))


def last_evaluation(conn: Connection) -> tuple[str, datetime] | None:
    """(worker, when the next pass is overdue) of the last evaluation, if one ever ran."""
    row = conn.execute(
        select(leases.c.holder, leases.c.expires_at).where(leases.c.name == LEASE_NAME)
    ).first()
    return (row.holder, row.expires_at) if row else None


# --- one scheduled pass ------------------------------------------------------------------------------


def scheduled_pass(rt: Runtime, worker: str) -> EvaluationResult:
    """What each tick of the schedule runs: one pass, logged when it changed an alert."""
    started = time.monotonic()
    result = evaluate(rt, worker=worker)
    if result.fired or result.resolved:
        log.info(
            "health evaluated",
            fired=len(result.fired),
            resolved=len(result.resolved),
            wanted=result.wanted,
            ms=round((time.monotonic() - started) * 1000, 1),
        )
    return result
