"""Alerting: alerts and their history and outbox, aggregation groups, silences, deliveries and their
attempts, receiver states, the demo inbox, and rows set aside by background passes."""

from __future__ import annotations

from sqlalchemy import JSON, BigInteger, Boolean, Column, Float, Index, Integer, String, Table, Text

from storyloom.store.tables.base import _id, _ts, metadata

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
    # Someone is on it: kept on the resolved alert (its resolved notice says who), cleared when it fires again.
    Column("acknowledged_by", String(200), nullable=True),
    Column("acknowledged_note", Text, nullable=True),
    _ts("acknowledged_at"),
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
