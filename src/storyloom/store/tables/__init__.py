"""Every table Storyloom keeps, as SQLAlchemy Core tables (one schema for SQLite and PostgreSQL), by area."""

from __future__ import annotations

from storyloom.store.tables.alerting import (
    aggregation_groups,
    alert_changes,
    alert_history,
    alerts,
    deliveries,
    delivery_attempts,
    demo_inbox,
    group_members,
    receiver_states,
    set_aside,
    silences,
)
from storyloom.store.tables.base import UTCDateTime, metadata
from storyloom.store.tables.coordination import (
    leases,
)
from storyloom.store.tables.fiction import (
    artifacts,
    backlog_items,
    characters,
    checkpoints,
    lore_requirements,
    persona_obligations,
    planner_executions,
    planner_templates,
    plans,
    projects,
    tasks,
    tool_executions,
    transcripts,
    workflow_events,
    world_bible_entries,
)
from storyloom.store.tables.identity import (
    agents,
    api_tokens,
    console_sessions,
    personas,
)

__all__ = [
    "UTCDateTime",
    "agents",
    "aggregation_groups",
    "alert_changes",
    "alert_history",
    "alerts",
    "api_tokens",
    "artifacts",
    "backlog_items",
    "characters",
    "checkpoints",
    "console_sessions",
    "deliveries",
    "delivery_attempts",
    "demo_inbox",
    "group_members",
    "leases",
    "lore_requirements",
    "metadata",
    "persona_obligations",
    "personas",
    "planner_executions",
    "planner_templates",
    "plans",
    "projects",
    "receiver_states",
    "set_aside",
    "silences",
    "tasks",
    "tool_executions",
    "transcripts",
    "workflow_events",
    "world_bible_entries",
]
