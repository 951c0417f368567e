"""Coordination: named leases (worker heartbeats, the notifier's leader lease, the last health evaluation)."""

from __future__ import annotations

from sqlalchemy import Column, String, Table

from storyloom.store.tables.base import _ts, metadata

# --- coordination ----------------------------------------------------------------------------------

leases = Table(
    "leases",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("holder", String(100), nullable=False),
    _ts("expires_at", False),
)
