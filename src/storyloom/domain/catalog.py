"""The alert catalog (docs/reference/alerts.md): every alert id raised, its default severity and source."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.ERROR: 2, Severity.CRITICAL: 3}


class Source(StrEnum):
    PLANNER_RUNNER = "planner_runner"
    TOOL_DISPATCHER = "tool_dispatcher"
    BACKLOG_SCHEDULER = "backlog_scheduler"
    OBLIGATIONS = "obligations"
    HEALTH = "health"
    DELIVERY = "delivery"
    INGEST = "ingest"


@dataclass(frozen=True)
class AlertKind:
    alert_id: str
    severity: Severity
    source: Source
    title: str
    evaluated: bool  # raised and resolved by the scheduled health evaluation rather than by an event


def _k(alert_id: str, severity: Severity, source: Source, title: str, evaluated: bool = False) -> AlertKind:
    return AlertKind(alert_id, severity, source, title, evaluated)


# Every alert id a publisher of ours raises; fire them by these names, never by a literal string.
PLANNER_PHASE_FAILED = "planner:phase-failed"
PLANNER_PHASE_BLOCKED = "planner:phase-blocked"
PLANNER_CRITIQUE_EXHAUSTED = "planner:critique-exhausted"
PLANNER_RECENT_FAILURES = "planner:recent-failures"
PLANNER_NO_EXECUTIONS = "planner:no-executions"
PLANNER_TEMPLATE_MISSING = "planner:template-missing"
PLANNER_TEMPLATE_INACTIVE = "planner:template-inactive"
PLANNER_LATENCY_SLO = "planner:latency-slo"
PLANNER_PROVIDER_UNAVAILABLE = "planner:provider-unavailable"
TOOL_FAILED = "tool:failed"
TOOL_TIMEOUT = "tool:timeout"
TOOL_QUOTA_EXCEEDED = "tool:quota-exceeded"
BACKLOG_STALE = "backlog:stale"
BACKLOG_ORPHANED = "backlog:orphaned"
BACKLOG_FLAPPING = "backlog:flapping"
BACKLOG_CONTRACT_DRIFT = "backlog:contract-drift"
BACKLOG_QUEUE_AGE = "backlog:queue-age"
OBLIGATION_OPEN = "obligation:open"
OBLIGATION_AGING = "obligation:aging"
OBLIGATION_DRIFT = "obligation:drift"
LORE_BLOCKED = "lore:blocked"
WORLDBIBLE_MISSING = "worldbible:missing"
WORLDBIBLE_STALE = "worldbible:stale"
DELIVERY_FAILING = "delivery:failing"

S, R = Severity, Source
CATALOG: dict[str, AlertKind] = {
    k.alert_id: k
    for k in (
        _k(PLANNER_PHASE_FAILED, S.ERROR, R.PLANNER_RUNNER, "Planner phase failed"),
        _k(PLANNER_PHASE_BLOCKED, S.WARNING, R.PLANNER_RUNNER, "Planner phase blocked"),
        _k(PLANNER_CRITIQUE_EXHAUSTED, S.WARNING, R.PLANNER_RUNNER, "Critique budget exhausted"),
        _k(PLANNER_RECENT_FAILURES, S.ERROR, R.HEALTH, "Recent planner failures", True),
        _k(PLANNER_NO_EXECUTIONS, S.INFO, R.HEALTH, "No planner executions yet", True),
        _k(PLANNER_TEMPLATE_MISSING, S.CRITICAL, R.HEALTH, "Planner template missing", True),
        _k(PLANNER_TEMPLATE_INACTIVE, S.WARNING, R.HEALTH, "Planner template inactive", True),
        _k(PLANNER_LATENCY_SLO, S.WARNING, R.HEALTH, "Phase latency SLO burning", True),
        _k(PLANNER_PROVIDER_UNAVAILABLE, S.ERROR, R.TOOL_DISPATCHER, "LLM provider unavailable"),
        _k(TOOL_FAILED, S.WARNING, R.TOOL_DISPATCHER, "Tool call failed"),
        _k(TOOL_TIMEOUT, S.WARNING, R.TOOL_DISPATCHER, "Tool call timed out"),
        _k(TOOL_QUOTA_EXCEEDED, S.WARNING, R.TOOL_DISPATCHER, "Planner quota exceeded"),
        _k(BACKLOG_STALE, S.WARNING, R.HEALTH, "Backlog item stale", True),
        _k(BACKLOG_ORPHANED, S.WARNING, R.HEALTH, "Backlog item orphaned", True),
        _k(BACKLOG_FLAPPING, S.WARNING, R.BACKLOG_SCHEDULER, "Backlog item flapping"),
        _k(BACKLOG_CONTRACT_DRIFT, S.WARNING, R.BACKLOG_SCHEDULER, "Backlog resume contract drift"),
        _k(BACKLOG_QUEUE_AGE, S.WARNING, R.HEALTH, "Backlog queue age over SLO", True),
        _k(OBLIGATION_OPEN, S.INFO, R.OBLIGATIONS, "Persona obligation open"),
        _k(OBLIGATION_AGING, S.WARNING, R.OBLIGATIONS, "Persona obligation aging", True),
        _k(OBLIGATION_DRIFT, S.WARNING, R.OBLIGATIONS, "Persona voice drift"),
        _k(LORE_BLOCKED, S.WARNING, R.HEALTH, "Lore requirements block a plan", True),
        _k(WORLDBIBLE_MISSING, S.WARNING, R.HEALTH, "World bible missing", True),
        _k(WORLDBIBLE_STALE, S.WARNING, R.HEALTH, "World bible stale", True),
        _k(DELIVERY_FAILING, S.ERROR, R.DELIVERY, "Webhook deliveries failing"),
    )
}

# Labels that identify the subject of an alert, in the order they are shown.
IDENTITY_LABELS = (
    "plan_id",
    "backlog_id",
    "task_id",
    "phase",
    "agent_id",
    "persona_id",
    "obligation_id",
    "provider",
    "model",
    "tool",
    "budget",
    "code",
    "receiver",
    "step_id",
    "lore_slug",
)


def runbook_slug(alert_id: str) -> str:
    """`planner:phase-failed` → `planner-phase-failed` (the runbook file name)."""
    return alert_id.replace(":", "-")
