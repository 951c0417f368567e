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


S, R = Severity, Source
CATALOG: dict[str, AlertKind] = {
    k.alert_id: k
    for k in (
        _k("planner:phase-failed", S.ERROR, R.PLANNER_RUNNER, "Planner phase failed"),
        _k("planner:phase-blocked", S.WARNING, R.PLANNER_RUNNER, "Planner phase blocked"),
        _k("planner:critique-exhausted", S.WARNING, R.PLANNER_RUNNER, "Critique budget exhausted"),
        _k("planner:recent-failures", S.ERROR, R.HEALTH, "Recent planner failures", True),
        _k("planner:no-executions", S.INFO, R.HEALTH, "No planner executions yet", True),
        _k("planner:template-missing", S.CRITICAL, R.HEALTH, "Planner template missing", True),
        _k("planner:template-inactive", S.WARNING, R.HEALTH, "Planner template inactive", True),
        _k("planner:latency-slo", S.WARNING, R.HEALTH, "Phase latency SLO burning", True),
        _k("planner:provider-unavailable", S.ERROR, R.TOOL_DISPATCHER, "LLM provider unavailable"),
        _k("tool:failed", S.WARNING, R.TOOL_DISPATCHER, "Tool call failed"),
        _k("tool:timeout", S.WARNING, R.TOOL_DISPATCHER, "Tool call timed out"),
        _k("tool:quota-exceeded", S.WARNING, R.TOOL_DISPATCHER, "Planner quota exceeded"),
        _k("backlog:stale", S.WARNING, R.HEALTH, "Backlog item stale", True),
        _k("backlog:orphaned", S.WARNING, R.HEALTH, "Backlog item orphaned", True),
        _k("backlog:flapping", S.WARNING, R.BACKLOG_SCHEDULER, "Backlog item flapping"),
        _k("backlog:contract-drift", S.WARNING, R.BACKLOG_SCHEDULER, "Backlog resume contract drift"),
        _k("backlog:queue-age", S.WARNING, R.HEALTH, "Backlog queue age over SLO", True),
        _k("obligation:open", S.INFO, R.OBLIGATIONS, "Persona obligation open"),
        _k("obligation:aging", S.WARNING, R.OBLIGATIONS, "Persona obligation aging", True),
        _k("obligation:drift", S.WARNING, R.OBLIGATIONS, "Persona voice drift"),
        _k("lore:blocked", S.WARNING, R.HEALTH, "Lore requirements block a plan", True),
        _k("worldbible:missing", S.WARNING, R.HEALTH, "World bible missing", True),
        _k("worldbible:stale", S.WARNING, R.HEALTH, "World bible stale", True),
        _k("delivery:failing", S.ERROR, R.DELIVERY, "Webhook deliveries failing"),
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
