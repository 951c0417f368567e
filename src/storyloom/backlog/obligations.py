"""Persona obligations' state below the pipeline: a continuity hook opens (or reopens) one, and the
`obligation:*` alerts follow its state; the scheduled health evaluation reconciles aging and drift.

Listing, resolving and flagging them (with their actors and checks) are `services/obligations.py`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, select, update

from storyloom.alerting.publish import AlertSignal, fire, resolve_matching
from storyloom.domain.alerts import FIRING
from storyloom.domain.catalog import OBLIGATION_AGING, OBLIGATION_DRIFT, OBLIGATION_OPEN
from storyloom.ids import new_id
from storyloom.store.events import PERSONA_OBLIGATION, record_event
from storyloom.store.tables import alerts, persona_obligations

OPEN, RESOLVED, DISMISSED = "open", "resolved", "dismissed"
STATUSES = (OPEN, RESOLVED, DISMISSED)
OBLIGATION_ALERTS = (OBLIGATION_OPEN, OBLIGATION_AGING, OBLIGATION_DRIFT)


def obligation_alert(row: dict[str, Any], alert_id: str = OBLIGATION_OPEN) -> AlertSignal:
    return AlertSignal(
        alert_id,
        {
            "plan_id": row["plan_id"],
            "obligation_id": row["obligation_id"],
            "persona_id": row["persona_id"],
            "backlog_id": row["source_backlog_id"],
            "phase": row["source_phase"],
        },
        f"Obligation '{row['title']}' ({row['slug']}) is open for persona {row['persona_id']}",
    )


def emit_hook(
    conn: Connection,
    *,
    plan_id: str,
    persona_id: str,
    character_id: str | None,
    slug: str,
    title: str,
    description: str,
    source_phase: str,
    source_backlog_id: str,
    branch_slug: str,
    now: datetime,
) -> str:
    """Create the obligation for a hook, or reopen it when an earlier one was settled; returns its id."""
    row = (
        conn.execute(
            select(persona_obligations).where(
                persona_obligations.c.plan_id == plan_id,
                persona_obligations.c.persona_id == persona_id,
                persona_obligations.c.slug == slug,
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        values: dict[str, Any] = {
            "obligation_id": new_id("obl"),
            "plan_id": plan_id,
            "persona_id": persona_id,
            "character_id": character_id,
            "slug": slug,
            "title": title,
            "description": description,
            "status": OPEN,
            "source_phase": source_phase,
            "source_backlog_id": source_backlog_id,
            "branch_slug": branch_slug,
            "voice_drift": False,
            "resolution_notes": [],
            "resolved_at": None,
            "resolved_by": None,
            "created_at": now,
            "updated_at": now,
        }
        conn.execute(insert(persona_obligations).values(**values))
        record_event(conn, PERSONA_OBLIGATION, {"action": "open", **obligation_event(values)}, now)
        fire(conn, obligation_alert(values), now)
        return str(values["obligation_id"])
    if row["status"] != OPEN:
        values = {
            **row,
            "status": OPEN,
            "source_phase": source_phase,
            "source_backlog_id": source_backlog_id,
            "updated_at": now,
        }
        conn.execute(
            update(persona_obligations)
            .where(persona_obligations.c.obligation_id == row["obligation_id"])
            .values(
                status=OPEN, source_phase=source_phase, source_backlog_id=source_backlog_id, updated_at=now
            )
        )
        record_event(conn, PERSONA_OBLIGATION, {"action": "reopen", **obligation_event(values)}, now)
        fire(conn, obligation_alert(values), now)
        if values["voice_drift"]:
            fire(conn, drift_alert(values), now)
    return str(row["obligation_id"])


def obligation_event(row: dict[str, Any]) -> dict[str, Any]:
    return {
        k: row[k]
        for k in (
            "obligation_id",
            "plan_id",
            "persona_id",
            "slug",
            "status",
            "source_phase",
            "source_backlog_id",
            "voice_drift",
        )
    }


def drift_alert(row: Mapping[str, Any]) -> AlertSignal:
    return replace(
        obligation_alert(dict(row), OBLIGATION_DRIFT),
        description=f"Obligation '{row['title']}' ({row['slug']}) of persona {row['persona_id']} "
        "is flagged for voice drift",
    )


def aging_alert(row: Mapping[str, Any], now: datetime) -> AlertSignal:
    hours = (now - row["created_at"]).total_seconds() / 3600
    return replace(
        obligation_alert(dict(row), OBLIGATION_AGING),
        description=f"Obligation '{row['title']}' ({row['slug']}) of persona {row['persona_id']} "
        f"has been open for {hours:.1f}h",
    )


def reconcile_obligation_aging(conn: Connection, now: datetime, aging: timedelta) -> int:
    """Fire `obligation:aging` for obligations open longer than `aging`; resolve it for all others.

    Returns how many alerts it fired anew or resolved.
    """
    cutoff = now - aging
    changed = 0
    firing = _firing_obligation_ids(conn, OBLIGATION_AGING)
    rows = conn.execute(
        select(persona_obligations).where(
            persona_obligations.c.status == OPEN, persona_obligations.c.created_at < cutoff
        )
    ).mappings()
    aging_ids = set()
    for row in rows:
        aging_ids.add(row["obligation_id"])
        if row["obligation_id"] not in firing:
            fire(conn, aging_alert(dict(row), now), now)
            changed += 1
    for obligation_id in firing - aging_ids:
        changed += resolve_matching(
            conn, OBLIGATION_AGING, now, "no longer open and aging", obligation_id=obligation_id
        )
    return changed


def reconcile_obligation_drift(conn: Connection, now: datetime) -> int:
    """`obligation:drift` firing exactly for open obligations flagged `voice_drift: true` (not false, not settled)."""
    changed = 0
    firing = _firing_obligation_ids(conn, OBLIGATION_DRIFT)
    rows = conn.execute(
        select(persona_obligations).where(
            persona_obligations.c.status == OPEN, persona_obligations.c.voice_drift.is_(True)
        )
    ).mappings()
    drifting = set()
    for row in rows:
        drifting.add(row["obligation_id"])
        if row["obligation_id"] not in firing:
            fire(conn, drift_alert(dict(row)), now)
            changed += 1
    for obligation_id in firing - drifting:
        changed += resolve_matching(
            conn, OBLIGATION_DRIFT, now, "no longer open and drifting", obligation_id=obligation_id
        )
    return changed


def _firing_obligation_ids(conn: Connection, alert_id: str) -> set[str]:
    rows = conn.execute(
        select(alerts.c.labels).where(alerts.c.alert_id == alert_id, alerts.c.status == FIRING)
    ).scalars()
    return {str(labels["obligation_id"]) for labels in rows if labels.get("obligation_id")}
