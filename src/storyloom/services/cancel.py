"""Cancel a backlog item (DOMAIN: cancel → `cancelled`, reason `cancel-requested`), as an agent of its plan.

A queued task never starts; a running one stops at its next step: the attempt in flight is recorded with
outcome `cancelled` and its output is dropped. The item's checkpoint is cancelled (a resume reopens it),
the item's own alerts resolve, and the action `cancel` is logged. Items that take the cancelled item's
output as input wait until it is resumed and completes, and so does the plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import update

from storyloom.backlog.tasks import LIVE
from storyloom.backlog.transitions import change_status, resolve_item_alerts
from storyloom.domain import backlog as bl
from storyloom.domain.text import Text
from storyloom.services.action_log import record_action
from storyloom.services.actors import Actor
from storyloom.services.catalog import get_agent
from storyloom.services.errors import Conflict, Invalid
from storyloom.services.plans import (
    author_persona_mismatch,
    backlog_view,
    get_item,
    get_plan,
    require_agent_binding,
)
from storyloom.store.db import Database
from storyloom.store.tables import checkpoints, tasks


class CancelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    agent_id: Text = Field(min_length=1, max_length=64, description="the agent to act as")
    notes: Text | None = Field(default=None, max_length=4000)


def cancel(
    db: Database,
    plan_id: str,
    backlog_id: str,
    body: Mapping[str, Any],
    actor: Actor,
    now: datetime,
) -> dict[str, Any]:
    """Cancel one item; returns `{backlog_item, cancelled_task_id}`. Cancelling a cancelled item is a no-op.

    404 unknown plan or item; 422 a bad body or an unknown agent; 409 a complete item; 403 a token bound to
    other agents, or an agent not of the plan's author persona unless the caller is admin.
    """
    with db.begin() as conn:
        plan = get_plan(conn, plan_id)
        item = get_item(conn, plan_id, backlog_id)
        try:
            request = CancelRequest.model_validate(body)
        except ValidationError as exc:
            raise Invalid.from_validation(exc) from None
        agent = get_agent(conn, request.agent_id, loc=["body", "agent_id"])
        require_agent_binding(actor, agent["id"])
        mismatch = author_persona_mismatch(agent, plan, actor, "cancel")
        if mismatch is not None:
            raise mismatch
        if item["status"] == bl.CANCELLED:
            return {"backlog_item": backlog_view(item), "cancelled_task_id": None}
        if item["status"] == bl.COMPLETE:
            raise Conflict(f"backlog item {backlog_id} is complete; there is nothing to cancel")

        cancelled_task = conn.execute(
            update(tasks)
            .where(tasks.c.task_id == item["task_id"], tasks.c.status.in_(LIVE))
            .values(status="cancelled", finished_at=now)
        ).rowcount
        moved = change_status(conn, item, bl.CANCELLED, "cancel-requested", now, worker_id=None)
        key = bl.phase_key(item["phase"], item["branch_slug"], item["chapter"], item["scene"])
        conn.execute(
            update(checkpoints)
            .where(checkpoints.c.plan_id == plan_id, checkpoints.c.phase_key == key)
            .values(status="cancelled", locked_by_agent=None, last_step="cancel", updated_at=now)
        )
        resolve_item_alerts(conn, item, now, "the item was cancelled")
        record_action(
            conn,
            {
                "action": "cancel",
                "plan_id": plan_id,
                "backlog_id": backlog_id,
                "description": item["description"],
                "branch": item["branch_slug"],
                **actor.audit_fields(),
                "agent_id": agent["id"],
                "persona_id": agent["persona_id"],
                "provider": item["provider"],
                "model": item["model"],
                "task_id": item["task_id"],
                "status": bl.CANCELLED,
                "previous_status": item["status"],
                "notes": request.notes,
            },
            now,
        )
        return {
            "backlog_item": backlog_view(moved),
            "cancelled_task_id": item["task_id"] if cancelled_task else None,
        }
