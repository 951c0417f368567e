"""Silences: create, list and expire time-boxed mutes; every change is logged and re-evaluated by the notifier."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update

from storyloom import signals
from storyloom.alerting.publish import NOTIFY_CHANNEL
from storyloom.alerting.reads import readable_silence
from storyloom.domain.alerts import rfc3339
from storyloom.domain.matchers import parse_matcher
from storyloom.domain.readable import readable_text
from storyloom.domain.silences import SilenceState, validate_silence
from storyloom.ids import new_id
from storyloom.services.action_log import log_action, silence_subject
from storyloom.services.actors import Actor
from storyloom.services.errors import Invalid, NotFound
from storyloom.store.db import Database, after_commit
from storyloom.store.events import BACKLOG_ACTION, SILENCE_ACTION, record_event
from storyloom.store.tables import silences

STATES = tuple(s.value for s in SilenceState)


def _loc(problem_field: str) -> list[str | int]:
    """`matchers.0` → `["body", "matchers", 0]`, the shape FastAPI uses for body errors."""
    return ["body", *(int(p) if p.isdigit() else p for p in problem_field.split("."))]


def state_of(row: Any, now: datetime) -> str:
    if now < row["starts_at"]:
        return SilenceState.PENDING.value
    if now >= row["ends_at"]:
        return SilenceState.EXPIRED.value
    return SilenceState.ACTIVE.value


def silence_view(row: Any, now: datetime) -> dict[str, Any]:
    """A silence; `unreadable` (only when set) says why a row an older version stored mutes nothing."""
    readable = readable_silence(row)
    comment, comment_problems = readable_text(row["comment"], "comment")
    view = {
        "id": row["id"],
        "silence_id": row["id"],
        "matchers": readable.matchers,
        "starts_at": rfc3339(row["starts_at"]),
        "ends_at": rfc3339(row["ends_at"]),
        "comment": comment,
        "created_by": row["created_by"],
        "created_at": rfc3339(row["created_at"]),
        "updated_at": rfc3339(row["updated_at"]),
        "status": state_of(row, now),
    }
    if readable.problems or comment_problems:
        view["unreadable"] = readable.problems + comment_problems
    return view


def list_silences(conn: Connection, now: datetime, *, state: str | None = None) -> list[dict[str, Any]]:
    """Newest first; `state` keeps only pending, active or expired ones."""
    if state is not None and state not in STATES:
        raise Invalid.field(["query", "state"], f"unknown state {state!r}; use {', '.join(STATES)}")
    query = select(silences).order_by(silences.c.created_at.desc(), silences.c.id.desc())
    if state == SilenceState.ACTIVE.value:
        query = query.where(silences.c.starts_at <= now, silences.c.ends_at > now)
    elif state == SilenceState.PENDING.value:
        query = query.where(silences.c.starts_at > now)
    elif state == SilenceState.EXPIRED.value:
        query = query.where(silences.c.ends_at <= now)
    return [silence_view(r, now) for r in conn.execute(query).mappings()]


def get_silence(conn: Connection, silence_id: str, now: datetime) -> dict[str, Any]:
    row = conn.execute(select(silences).where(silences.c.id == silence_id)).mappings().first()
    if row is None:
        raise NotFound(f"no silence {silence_id!r}; list them with GET /api/silences")
    return silence_view(row, now)


def _log(conn: Connection, action: str, view: dict[str, Any], actor: Actor, now: datetime) -> None:
    payload = {
        "action": action,
        "silence_id": view["id"],
        "matchers": view["matchers"],
        "starts_at": view["starts_at"],
        "ends_at": view["ends_at"],
        "comment": view["comment"],
        **actor.audit_fields(),
        **({} if "unreadable" in view else silence_subject(view["matchers"])),
        "status": view["status"],
    }
    record_event(conn, SILENCE_ACTION, payload, now)
    record_event(conn, BACKLOG_ACTION, payload, now)
    log_action(conn, payload)
    after_commit(conn, _wake_notifier)


def _wake_notifier() -> None:
    signals.wake(NOTIFY_CHANNEL)


def create_silence(
    db: Database,
    actor: Actor,
    *,
    matchers: Sequence[str],
    ends_at: datetime,
    comment: str,
    now: datetime,
    starts_at: datetime | None = None,
) -> dict[str, Any]:
    """Validate (422 with `errors[].loc` such as `["body", "matchers", 0]`) and store a silence."""
    with db.begin() as conn:
        starts = starts_at or now
        problems = validate_silence(list(matchers), starts, ends_at, now)
        if not comment.strip():
            problems.append(
                ("comment", "say why the alerts are silenced (shown to everyone who sees them muted)")
            )
        if problems:
            errors: list[dict[str, object]] = [{"loc": _loc(f), "msg": msg} for f, msg in problems]
            raise Invalid("; ".join(f"{f}: {msg}" for f, msg in problems), errors=errors)
        row = {
            "id": new_id("sil"),
            "matchers": [str(parse_matcher(m)) for m in matchers],
            "starts_at": starts,
            "ends_at": ends_at,
            "comment": comment.strip(),
            "created_by": actor.name,
            "created_at": now,
            "updated_at": now,
        }
        conn.execute(insert(silences).values(**row))
        view = silence_view(row, now)
        _log(conn, "silence-create", view, actor, now)
        return view


def expire_silence(db: Database, actor: Actor, silence_id: str, now: datetime) -> dict[str, Any]:
    """End a silence now (a pending one never starts); expiring an expired one changes nothing."""
    with db.begin() as conn:
        row = conn.execute(select(silences).where(silences.c.id == silence_id)).mappings().first()
        if row is None:
            raise NotFound(f"no silence {silence_id!r}; list them with GET /api/silences")
        if row["ends_at"] <= now:
            return silence_view(row, now)
        values = {"starts_at": min(row["starts_at"], now), "ends_at": now, "updated_at": now}
        conn.execute(update(silences).where(silences.c.id == silence_id).values(**values))
        view = silence_view({**row, **values}, now)
        _log(conn, "silence-expire", view, actor, now)
        return view
