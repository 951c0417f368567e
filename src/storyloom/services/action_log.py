"""Operator actions: what an action-log entry is about, and the server log line each action writes.

A silence or a replay concerns alerts; its `fiction.backlog.action` entry names the plan, item, agent,
persona, provider, model and task those alerts agree on, so it shows in that plan's
`GET .../backlog/actions` like a resume does. Every operator action (resume, cancel, silence create and
expire, replay, obligation resolve, dismiss and voice drift, alert acknowledge and unacknowledge, drill)
also writes one `operator action` line to the server log once its transaction commits, so the log alone
tells who did what.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import Connection

from storyloom.domain.matchers import MatchType, parse_matcher
from storyloom.store.db import after_commit
from storyloom.store.events import BACKLOG_ACTION, record_event

log = structlog.get_logger(__name__)

SUBJECT = ("plan_id", "backlog_id", "agent_id", "persona_id", "provider", "model", "task_id")

# What an `operator action` log line carries of the action's payload: who, as which agent, on what.
# Free text (notes, comments) stays in the action log: an operator may paste anything into it.
LOGGED = (
    "actor",
    "actor_id",
    "source",
    "agent_id",
    "persona_id",
    "plan_id",
    "backlog_id",
    "task_id",
    "obligation_id",
    "silence_id",
    "matchers",
    "delivery_id",
    "new_delivery_id",
    "receiver",
    "fingerprint",
    "alert_id",
    "owner",
    "drill_id",
    "previous_status",
    "status",
)


def log_action(conn: Connection, payload: Mapping[str, Any]) -> None:
    """One `operator action` log line for the action in `payload`, written after its transaction commits."""
    fields = {key: payload[key] for key in LOGGED if payload.get(key) is not None}
    action = payload["action"]
    after_commit(conn, lambda: log.info("operator action", action=action, **fields))


def record_action(conn: Connection, payload: dict[str, Any], now: datetime) -> None:
    """The action-log entry (`fiction.backlog.action`) of an operator action on one item, and its log line."""
    record_event(conn, BACKLOG_ACTION, payload, now)
    log_action(conn, payload)


def common_subject(label_sets: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Each subject label the label sets all agree on; None where they differ, lack it, or there are none."""
    sets = list(label_sets)
    subject: dict[str, Any] = {}
    for key in SUBJECT:
        values = {labels.get(key) for labels in sets}
        subject[key] = values.pop() if len(values) == 1 else None
    return subject


def subjects_by_plan(label_sets: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One subject per plan among the label sets (at least one, plan-less when none names a plan)."""
    by_plan: dict[Any, list[Mapping[str, Any]]] = defaultdict(list)
    for labels in label_sets:
        by_plan[labels.get("plan_id")].append(labels)
    return [common_subject(group) for group in by_plan.values()] or [common_subject([])]


def silence_subject(matchers: Sequence[str]) -> dict[str, Any]:
    """The labels a silence pins with equality matchers (`plan_id="plan_x"`)."""
    parsed = [parse_matcher(m) for m in matchers]
    return common_subject([{m.name: m.value for m in parsed if m.op is MatchType.EQUAL}])
