"""Every table Storyloom keeps, as SQLAlchemy Core tables (one schema for SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC, returns timezone-aware UTC on both SQLite (which drops tzinfo) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use storyloom.clock")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _id(name: str = "id") -> Column[Any]:
    return Column(name, String(64), primary_key=True)


def _ts(name: str, nullable: bool = True, index: bool = False) -> Column[Any]:
    return Column(name, UTCDateTime(), nullable=nullable, index=index)


# --- identity and access ---------------------------------------------------------------------------

personas = Table(
    "personas",
    metadata,
    _id(),
    Column("name", String(200), nullable=False),
    Column("kind", String(20), nullable=False),
    Column("summary", Text, nullable=True),
    Column("plan_id", String(64), nullable=True, index=True),
    _ts("created_at", False),
)

agents = Table(
    "agents",
    metadata,
    _id(),
    Column("name", String(200), nullable=False),
    Column("persona_id", String(64), ForeignKey("personas.id"), nullable=False, index=True),
    Column("provider", String(40), nullable=True),
    Column("model", String(200), nullable=True),
    _ts("created_at", False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    _id(),
    Column("name", String(200), nullable=False),
    Column("role", String(20), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("agent_ids", JSON, nullable=False, default=list),
    _ts("created_at", False),
    _ts("last_used_at"),
    _ts("revoked_at"),
)

# A console sign-in: the cookie holds a random id, stored here only as its SHA-256, bound to the hash of the
# token that signed in (so revoking or rotating that token ends the session too).
console_sessions = Table(
    "console_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("token_hash", String(64), nullable=False),
    Column("actor_id", String(64), nullable=False, index=True),
    Column("role", String(20), nullable=False),
    _ts("created_at", False),
    _ts("expires_at", False, index=True),
    _ts("revoked_at"),
)

# --- fiction plans ---------------------------------------------------------------------------------

projects = Table(
    "projects",
    metadata,
    _id(),
    Column("title", String(300), nullable=False),
    _ts("created_at", False),
)

plans = Table(
    "plans",
    metadata,
    _id(),
    Column("project_id", String(64), ForeignKey("projects.id"), nullable=False),
    Column("name", String(200), nullable=False),
    Column("premise", Text, nullable=False),
    Column("persona_id", String(64), ForeignKey("personas.id"), nullable=False, index=True),
    Column("agent_id", String(64), ForeignKey("agents.id"), nullable=False),
    Column("branch_slug", String(100), nullable=False, default="main"),
    Column("provider", String(40), nullable=False),
    Column("model", String(200), nullable=False),
    Column("status", String(20), nullable=False, index=True),
    Column("settings", JSON, nullable=False, default=dict),
    _ts("created_at", False),
    _ts("updated_at", False),
    _ts("completed_at"),
)

backlog_items = Table(
    "backlog_items",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("plan_id", String(64), ForeignKey("plans.id"), nullable=False),
    Column("backlog_id", String(100), nullable=False),
    Column("description", Text, nullable=False),
    Column("phase", String(40), nullable=False),
    Column("status", String(20), nullable=False),
    Column("inputs", JSON, nullable=False, default=list),
    Column("outputs", JSON, nullable=False, default=list),
    Column("agent_id", String(64), nullable=False),
    Column("persona_id", String(64), nullable=False),
    Column("provider", String(40), nullable=False),
    Column("model", String(200), nullable=False),
    Column("task_id", String(64), nullable=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text, nullable=True),
    Column("branch_slug", String(100), nullable=False, default="main"),
    Column("chapter", Integer, nullable=True),
    Column("scene", Integer, nullable=True),
    Column("ready_at", UTCDateTime(), nullable=True),
    Column("worker_id", String(100), nullable=True),
    Column("priority", Integer, nullable=False, default=0),
    _ts("created_at", False),
    _ts("updated_at", False),
    _ts("in_progress_at"),
    _ts("completed_at"),
    UniqueConstraint("plan_id", "backlog_id"),
    Index("ix_backlog_items_status_updated", "status", "updated_at"),
    Index("ix_backlog_items_status_ready", "status", "ready_at"),
    Index("ix_backlog_items_status_task", "status", "task_id"),
)

tasks = Table(
    "tasks",
    metadata,
    Column("task_id", String(64), primary_key=True),
    Column("plan_id", String(64), nullable=False),
    Column("backlog_id", String(100), nullable=False),
    Column("agent_id", String(64), nullable=False),
    Column("provider", String(40), nullable=False),
    Column("model", String(200), nullable=False),
    Column("status", String(20), nullable=False),
    Column("reason", String(40), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("notes", Text, nullable=True),
    _ts("enqueued_at"),
    Column("worker_id", String(100), nullable=True),
    _ts("created_at", False),
    _ts("started_at"),
    _ts("finished_at"),
    Index("ix_tasks_plan_backlog", "plan_id", "backlog_id"),
)

checkpoints = Table(
    "checkpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("plan_id", String(64), nullable=False),
    Column("phase_key", String(200), nullable=False),
    Column("phase", String(40), nullable=False),
    Column("status", String(20), nullable=False),
    Column("locked_by_agent", String(64), nullable=True),
    Column("task_id", String(64), nullable=True),
    Column("last_step", String(40), nullable=True),
    _ts("created_at", False),
    _ts("updated_at", False),
    UniqueConstraint("plan_id", "phase_key"),
)

planner_templates = Table(
    "planner_templates",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("template_id", String(100), nullable=False),
    Column("version", Integer, nullable=False),
    Column("body", Text, nullable=False),
    Column("active", Boolean, nullable=False, default=True),
    _ts("created_at", False),
    UniqueConstraint("template_id", "version"),
)

planner_executions = Table(
    "planner_executions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("plan_id", String(64), nullable=False),
    Column("backlog_id", String(100), nullable=False),
    Column("task_id", String(64), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("planner_name", String(100), nullable=False),
    Column("phase", String(40), nullable=False),
    Column("outcome", String(20), nullable=False),
    Column("latency_ms", Float, nullable=False),
    Column("prompt_tokens", Integer, nullable=False, default=0),
    Column("completion_tokens", Integer, nullable=False, default=0),
    Column("critique_status", String(20), nullable=False),
    Column("critique_count", Integer, nullable=False, default=0),
    Column("critique_tokens", Integer, nullable=False, default=0),
    Column("provider", String(40), nullable=False),
    Column("model", String(200), nullable=False),
    Column("agent_id", String(64), nullable=False),
    Column("persona_id", String(64), nullable=False),
    Column("error", Text, nullable=True),
    Column("diagnostics", JSON, nullable=False, default=dict),
    _ts("started_at", False),
    _ts("finished_at", False),
    UniqueConstraint("task_id", "attempt"),
    # covering for the health report's recent samples and burn-rate windows (no table reads)
    Index("ix_planner_executions_finished", "finished_at", "latency_ms", "critique_status"),
    Index("ix_planner_executions_outcome_finished", "outcome", "finished_at"),
    Index("ix_planner_executions_plan", "plan_id", "finished_at"),
)

transcripts = Table(
    "transcripts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("task_id", String(64), nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    Column("role", String(20), nullable=False),
    Column("content", Text, nullable=False),
    _ts("created_at", False),
)

artifacts = Table(
    "artifacts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("plan_id", String(64), nullable=False),
    Column("backlog_id", String(100), nullable=False),
    Column("kind", String(40), nullable=False),
    Column("key", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("content", JSON, nullable=False),
    Column("task_id", String(64), nullable=False),
    _ts("created_at", False),
    UniqueConstraint("plan_id", "key", "version"),
)

characters = Table(
    "characters",
    metadata,
    _id(),
    Column("plan_id", String(64), nullable=False, index=True),
    Column("persona_id", String(64), nullable=True),
    Column("agent_id", String(64), nullable=True),
    Column("name", String(200), nullable=False),
    Column("role", String(200), nullable=False),
    Column("track", Boolean, nullable=False),
    Column("importance", String(40), nullable=False),
    Column("summary", Text, nullable=False),
    _ts("created_at", False),
    UniqueConstraint("plan_id", "name"),
)

lore_requirements = Table(
    "lore_requirements",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("plan_id", String(64), nullable=False),
    Column("slug", String(200), nullable=False),
    Column("title", String(300), nullable=False),
    Column("description", Text, nullable=False),
    Column("status", String(20), nullable=False),
    _ts("created_at", False),
    _ts("updated_at", False),
    _ts("fulfilled_at"),
    Column("fulfilled_by", String(200), nullable=True),
    UniqueConstraint("plan_id", "slug"),
)

world_bible_entries = Table(
    "world_bible_entries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("plan_id", String(64), nullable=False),
    Column("slug", String(300), nullable=False),
    Column("category", String(40), nullable=False),
    Column("name", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("content", JSON, nullable=False),
    _ts("created_at", False),
    UniqueConstraint("plan_id", "slug", "version"),
    Index("ix_world_bible_entries_plan_active", "plan_id", "active", "created_at"),
)

persona_obligations = Table(
    "persona_obligations",
    metadata,
    _id("obligation_id"),
    Column("plan_id", String(64), nullable=False),
    Column("persona_id", String(64), nullable=False),
    Column("character_id", String(64), nullable=True),
    Column("slug", String(200), nullable=False),
    Column("title", String(300), nullable=False),
    Column("description", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("source_phase", String(40), nullable=False),
    Column("source_backlog_id", String(100), nullable=False),
    Column("branch_slug", String(100), nullable=False),
    Column("voice_drift", Boolean, nullable=False, default=False),
    Column("resolution_notes", JSON, nullable=False, default=list),
    _ts("resolved_at"),
    Column("resolved_by", String(200), nullable=True),
    _ts("created_at", False),
    _ts("updated_at", False),
    UniqueConstraint("plan_id", "persona_id", "slug"),
    Index("ix_persona_obligations_plan_status", "plan_id", "status"),
    Index("ix_persona_obligations_status_created", "status", "created_at"),
)

workflow_events = Table(
    "workflow_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(60), nullable=False),
    Column("plan_id", String(64), nullable=True),
    Column("backlog_id", String(100), nullable=True),
    Column("payload", JSON, nullable=False),
    _ts("created_at", False),
    Index("ix_workflow_events_kind_created", "kind", "created_at"),
    Index("ix_workflow_events_plan_kind", "plan_id", "kind", "id"),
)

tool_executions = Table(
    "tool_executions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("tool", String(100), nullable=False),
    Column("agent_id", String(64), nullable=True),
    Column("plan_id", String(64), nullable=True),
    Column("backlog_id", String(100), nullable=True),
    Column("task_id", String(64), nullable=True),
    _ts("started_at", False),
    Column("duration_ms", Float, nullable=False),
    Column("success", Boolean, nullable=False),
    Column("request", JSON, nullable=False),
    Column("response", JSON, nullable=True),
    Column("error", Text, nullable=True),
    Index("ix_tool_executions_started", "started_at"),
)

# --- alerting --------------------------------------------------------------------------------------

alerts = Table(
    "alerts",
    metadata,
    Column("fingerprint", String(32), primary_key=True),
    Column("alert_id", String(80), nullable=False),
    Column("status", String(20), nullable=False),
    Column("severity", String(20), nullable=False),
    Column("title", String(300), nullable=False),
    Column("description", Text, nullable=False),
    Column("labels", JSON, nullable=False),
    Column("annotations", JSON, nullable=False, default=dict),
    Column("source", String(40), nullable=False),
    Column("plan_id", String(64), nullable=True),
    _ts("starts_at", False),
    _ts("ends_at"),
    _ts("expires_at"),  # ingested alerts: resolve at this moment unless the client sends them again
    _ts("generated_at", False),
    _ts("updated_at", False),
    Index("ix_alerts_status_severity", "status", "severity", "starts_at"),
    Index("ix_alerts_status_expires", "status", "expires_at"),
    Index("ix_alerts_alert_id_status", "alert_id", "status", "severity"),
    Index("ix_alerts_plan_status", "plan_id", "status"),
)

alert_history = Table(
    "alert_history",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("fingerprint", String(32), nullable=False),
    Column("status", String(20), nullable=False),
    Column("severity", String(20), nullable=False),
    Column("reason", Text, nullable=True),
    _ts("at", False),
    Index("ix_alert_history_fingerprint", "fingerprint", "id"),
)

alert_changes = Table(
    "alert_changes",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("fingerprint", String(32), nullable=False),
    Column("status", String(20), nullable=False),
    _ts("created_at", False),
)

set_aside = Table(
    "set_aside",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pass_name", String(40), nullable=False),  # notifier, notifier.flush, delivery, scheduler, health
    Column("item", String(200), nullable=False),  # the row's key: a fingerprint, group key or delivery id
    Column("error", Text, nullable=False),
    _ts("at", False),
    Index("ux_set_aside_pass_item", "pass_name", "item", unique=True),
)

aggregation_groups = Table(
    "aggregation_groups",
    metadata,
    Column("group_key", String(), primary_key=True),
    Column("route_id", String(100), nullable=False),
    Column("receiver", String(100), nullable=False),
    Column("group_labels", JSON, nullable=False),
    _ts("first_alert_at", False),
    _ts("next_flush_at"),
    _ts("last_flush_at"),
    _ts("last_notified_at"),
    Column("last_firing", JSON, nullable=False, default=list),
    Column("last_resolved", JSON, nullable=False, default=list),
    Index("ix_aggregation_groups_next_flush", "next_flush_at"),
)

group_members = Table(
    "group_members",
    metadata,
    Column("group_key", String(), primary_key=True),
    Column("fingerprint", String(32), primary_key=True),
    _ts("added_at", False),
    Index("ix_group_members_fingerprint", "fingerprint"),
)

silences = Table(
    "silences",
    metadata,
    _id(),
    Column("matchers", JSON, nullable=False),
    _ts("starts_at", False),
    _ts("ends_at", False, index=True),
    Column("comment", Text, nullable=False),
    Column("created_by", String(200), nullable=False),
    _ts("created_at", False),
    _ts("updated_at", False),
)

deliveries = Table(
    "deliveries",
    metadata,
    _id(),
    Column("webhook_id", String(64), nullable=False, index=True),
    Column("receiver", String(100), nullable=False),
    Column("receiver_type", String(40), nullable=False),
    Column("group_key", String(), nullable=False),
    Column("status", String(20), nullable=False),
    Column("alert_status", String(20), nullable=False),
    Column("fingerprints", JSON, nullable=False),
    Column("notification", JSON, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    _ts("next_attempt_at", True),
    _ts("first_attempt_at"),
    _ts("last_attempt_at"),
    Column("last_status_code", Integer, nullable=True),
    Column("last_error", Text, nullable=True),
    Column("claimed_by", String(100), nullable=True),
    _ts("claim_expires_at"),
    Column("latency_ms", Float, nullable=True),
    Column("replay_of", String(64), nullable=True),
    _ts("created_at", False),
    _ts("delivered_at"),
    Index("ix_deliveries_status_next", "status", "next_attempt_at"),
    Index("ix_deliveries_receiver_status", "receiver", "status"),
    Index("ix_deliveries_created", "created_at", "status", "latency_ms"),  # covering for the SLO window
)

delivery_attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("delivery_id", String(64), nullable=False, index=True),
    Column("attempt", Integer, nullable=False),
    _ts("at", False),
    Column("status_code", Integer, nullable=True),
    Column("outcome", String(20), nullable=False),
    Column("error", Text, nullable=True),
    Column("latency_ms", Float, nullable=False),
)

receiver_states = Table(
    "receiver_states",
    metadata,
    Column("receiver", String(100), primary_key=True),
    _ts("disabled_at"),
    Column("disabled_reason", Text, nullable=True),
    Column("consecutive_failures", Integer, nullable=False, default=0),
    _ts("updated_at", False),
)

demo_inbox = Table(
    "demo_inbox",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("webhook_id", String(64), nullable=True),
    Column("signature_valid", Boolean, nullable=False),
    Column("error", Text, nullable=True),
    Column("headers", JSON, nullable=False),
    Column("body", JSON, nullable=True),
    _ts("received_at", False),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(100), nullable=False),
    _ts("expires_at", False),
)
