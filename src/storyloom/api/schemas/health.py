"""The PlannerHealth report (docs/reference/payloads.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from storyloom.api.schemas import Body, OpenBody, Timestamp
from storyloom.api.schemas.alerts import AlertPayload


class PlannerStep(Body):
    step_id: str
    template_id: str
    template_found: bool
    template_active: bool = Field(description="an active version with a non-blank body exists")
    issue: str | None


class Planner(Body):
    name: str
    steps: list[PlannerStep]


class ItemCounts(Body):
    pending: int
    in_progress: int
    complete: int
    blocked: int
    failed: int
    cancelled: int


class PlanSummary(Body):
    plan_id: str
    name: str
    status: str
    agent_id: str
    persona_id: str
    provider: str
    model: str
    updated_at: Timestamp
    total_items: int
    counts: ItemCounts


class BacklogEvent(OpenBody):
    """A recent `fiction.backlog.telemetry` or `.action` event: its payload and where it belongs."""

    event_id: int
    plan_id: str | None
    backlog_id: str | None
    at: Timestamp


class WatchedItem(Body):
    plan_id: str
    backlog_id: str
    phase: str
    status: str
    agent_id: str
    persona_id: str
    provider: str
    model: str
    task_id: str | None
    worker_id: str | None
    updated_at: Timestamp
    idle_s: float = Field(description="seconds since its last update")
    reason: Literal["plan-gone", "no-task", "task-gone", "task-finished"] | None = Field(
        default=None, description="orphaned items only: why it is an orphan"
    )
    task_status: str | None = Field(default=None, description="orphaned items only: its task's status")


class BacklogSection(Body):
    total_items: int
    pending: int
    in_progress: int
    complete: int
    blocked: int
    failed: int
    plans: list[PlanSummary] = Field(description="the most recently updated plans (at most 25)")
    recent_transitions: list[BacklogEvent]
    stale_items: list[WatchedItem] = Field(description="in progress without a sign of life (at most 50)")
    orphaned_items: list[WatchedItem] = Field(description="to be worked, but their plan or task is gone")
    action_logs: list[BacklogEvent]


class Failure(Body):
    plan_id: str
    backlog_id: str
    task_id: str
    attempt: int
    planner_name: str
    phase: str
    provider: str
    model: str
    agent_id: str
    persona_id: str
    latency_ms: float
    critique_status: str
    error: str | None = Field(description="its first 1,000 characters")
    finished_at: Timestamp | None
    transcript_snippet: str | None = Field(description="the start of the attempt's last reply")


class Telemetry(Body):
    total_executions: int
    last_execution_at: Timestamp | None
    outcome_counts: dict[str, int] = Field(description="success, partial, failed, cancelled (and any other)")
    critique_status_counts: dict[str, int]
    recent_failures: list[Failure] = Field(
        description="the newest failed executions, whether fixed since or not"
    )


class PhaseLatency(Body):
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    objective: float
    good_ratio: float | None
    burn_rate_1h: float
    burn_rate_6h: float


class Queue(Body):
    depth: int = Field(description="pending items")
    ready: int = Field(description="pending items whose inputs are all complete")
    oldest_age_s: float | None


class Critique(Body):
    pass_ratio: float | None
    exhausted: int


class DeliverySlo(Body):
    success_ratio: float | None
    p95_ms: float | None
    pending: int
    dead: int


class Slo(Body):
    phase_latency: PhaseLatency
    queue: Queue
    critique: Critique
    delivery: DeliverySlo


class AlertRoute(Body):
    alert_fingerprint: str
    receivers: list[str]


class PlannerHealth(Body):
    generated_at: Timestamp
    status: Literal["healthy", "degraded", "critical"]
    planners: list[Planner]
    backlog: BacklogSection
    telemetry: Telemetry
    slo: Slo
    alerts: list[AlertPayload] = Field(description="the most severe, newest firing alerts (at most 50)")
    routes: list[AlertRoute] = Field(description="where each of `alerts` was routed")
    warnings: list[str]
