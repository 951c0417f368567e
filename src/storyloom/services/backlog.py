"""Backlog resume (docs/reference/http-api.md, "Resume"); its rejections feed `backlog/contract_drift.py`.

`resume` applies the seven rules in order inside the caller's transaction. A rejection after rule 1 raises
`ContractRejection`: the caller's transaction rolls back (nothing of the rejected change is kept) and the
contract event must then be written in a transaction of its own. `resume_item` does both and is what the
API and the console call.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import Connection, func, select, update

from storyloom.backlog.contract_drift import record_contract_rejection
from storyloom.backlog.tasks import LIVE, claim_for_task, latest_task
from storyloom.backlog.transitions import DEFAULT_FLAPPING_THRESHOLD, change_status
from storyloom.config import Config
from storyloom.domain import backlog as bl
from storyloom.domain.text import Text
from storyloom.services.action_log import record_action
from storyloom.services.actors import Actor
from storyloom.services.catalog import PROVIDERS, get_agent
from storyloom.services.errors import Conflict, Forbidden, Invalid, ServiceError
from storyloom.services.plans import (
    author_persona_mismatch,
    backlog_view,
    get_item,
    get_plan,
    require_agent_binding,
)
from storyloom.store.db import Database
from storyloom.store.tables import backlog_items, checkpoints, leases, tasks

# Contract codes (the `code` of a `fiction.backlog.contract` event and of the problem+json body).
MISSING_AGENT_OR_PROVIDER = "missing-agent-or-provider"
MISSING_MODEL = "missing-model"
UNKNOWN_AGENT = "unknown-agent"
UNKNOWN_PROVIDER = "unknown-provider"
ITEM_COMPLETE = "item-complete"
ITEM_IN_PROGRESS = "item-in-progress"
ITEM_QUEUED = "item-queued"
AGENT_PERSONA_MISMATCH = "agent-persona-mismatch"
TASK_BACKLOG_MISMATCH = "task-backlog-mismatch"
BRANCH_MISMATCH = "branch-mismatch"
RESUME_CONFLICT = "resume-conflict"
INVALID_BODY = "invalid-body"
AGENT_TOKEN_MISMATCH = "agent-token-mismatch"
INPUTS_INCOMPLETE = "inputs-incomplete"


class ResumeRequest(BaseModel):
    """The resume body. `agent_id`, `provider` and `model` are required by the contract, and checked by rule 2
    (not here) so that leaving one out is recorded as `missing-agent-or-provider` / `missing-model`."""

    model_config = ConfigDict(extra="forbid")
    agent_id: Text | None = Field(default=None, max_length=64, description="the agent to act as (required)")
    provider: Text | None = Field(default=None, max_length=40, description="required")
    model: Text | None = Field(default=None, max_length=200, description="required")
    task_id: Text | None = Field(
        default=None, max_length=64, description="the item's latest task id, to guard against races"
    )
    branch_slug: Text | None = Field(default=None, max_length=100)
    notes: Text | None = Field(default=None, max_length=4000)


def decode_body(body: bytes | Mapping[str, Any]) -> Any:
    """A request body as JSON (an empty body is `{}`); raises `Invalid` (`invalid-body`) when it is not JSON."""
    if not isinstance(body, bytes):
        return body
    try:
        return json.loads(body) if body.strip() else {}
    except ValueError as exc:
        raise Invalid.field(["body"], f"is not valid JSON ({exc})", code=INVALID_BODY) from None


def parse_resume_body(body: Any) -> dict[str, str | None]:
    """The decoded body's fields, stripped (blank → None); raises `Invalid` (`invalid-body`) per bad field."""
    if not isinstance(body, Mapping):
        raise Invalid.field(["body"], "must be a JSON object", code=INVALID_BODY)
    try:
        request = ResumeRequest.model_validate(body)
    except ValidationError as exc:
        raise Invalid.from_validation(exc, code=INVALID_BODY) from None
    return {key: _text(request.model_dump(), key) for key in ResumeRequest.model_fields}


class ContractRejection(ServiceError):
    """A resume refused by the contract: answers like `error`, and carries the contract event to record."""

    def __init__(self, error: ServiceError, event: dict[str, Any]) -> None:
        super().__init__(error.detail, errors=error.errors, code=error.code)
        self.status = error.status
        self.title = error.title
        self.event = event


def _text(body: Mapping[str, Any], key: str) -> str | None:
    """A string field, stripped; None when absent, blank or not a string."""
    value = body.get(key)
    if not isinstance(value, str):
        return None
    return value.strip() or None


def is_stale_in_progress(conn: Connection, item: Mapping[str, Any], now: datetime) -> bool:
    """`in_progress` and its worker has no live heartbeat lease (expired or missing): nobody runs it."""
    if item["status"] != bl.IN_PROGRESS:
        return False
    if not item.get("worker_id"):
        return True
    alive = conn.execute(
        select(leases.c.name).where(leases.c.holder == item["worker_id"], leases.c.expires_at > now)
    ).first()
    return alive is None


def resume(
    conn: Connection,
    plan_id: str,
    backlog_id: str,
    body: bytes | Mapping[str, Any],
    actor: Actor,
    now: datetime,
    cfg: Config | None = None,
) -> dict[str, Any]:
    """Resume one backlog item per docs/reference/http-api.md, "Resume"; returns `{backlog_item, task_id}`.

    Rules, in order: 1 unknown plan/item → 404 (no contract event); 2 missing agent_id/provider → 422
    `missing-agent-or-provider`, missing model → 422 `missing-model`; 3 unknown agent → 422 `unknown-agent`
    (an unknown provider → 422 `unknown-provider`); 4 item complete → 409 `item-complete`, in_progress with
    a live worker → 409 `item-in-progress` (a pending item that already has a queued or running task → 409
    `item-queued`); 5 the agent's persona is not the plan's author persona and the caller is not admin →
    403 `agent-persona-mismatch`; 6 `task_id` given and not the item's latest task → 409
    `task-backlog-mismatch` (`branch_slug` given and not the item's branch → 409 `branch-mismatch`);
    7 success. Losing a race with a concurrent resume → 409 `resume-conflict`.

    Additions, each a rejection after rule 1 and so a contract event: a body that is not JSON, not an
    object, or has a field of the wrong type or an unknown field → 422 `invalid-body` (before rule 2); an
    item whose inputs are not all complete → 409 `inputs-incomplete` (with rule 4: it could not run next);
    a token bound to other agents → 403 `agent-token-mismatch` (just before rule 5).

    Every other rejection raises `ContractRejection`; record its `event` with `record_contract_rejection`
    in a new transaction after this one rolled back (`resume_item` does that).
    """
    plan = get_plan(conn, plan_id)
    item = get_item(conn, plan_id, backlog_id)
    agent_id = provider = model = task_id = None  # as far as the body gives them, for a contract event

    def reject(error: ServiceError) -> ContractRejection:
        return ContractRejection(
            error,
            {
                "code": error.code,
                "status": error.status,
                "detail": error.detail,
                "plan_id": plan_id,
                "backlog_id": backlog_id,
                "item_status": item["status"],
                "agent_id": agent_id,
                "provider": provider,
                "model": model,
                "task_id": task_id,
                "latest_task_id": item["task_id"],
                "actor": actor.name,
                "actor_id": actor.actor_id,
                "source": actor.source,
            },
        )

    try:
        decoded = decode_body(body)
        if isinstance(decoded, Mapping):
            agent_id, provider, model = (_text(decoded, k) for k in ("agent_id", "provider", "model"))
            task_id = _text(decoded, "task_id")
        fields = parse_resume_body(decoded)
    except Invalid as exc:
        raise reject(exc) from None
    agent_id, provider, model = fields["agent_id"], fields["provider"], fields["model"]
    task_id, branch, notes = fields["task_id"], fields["branch_slug"], fields["notes"]
    # 2. agent, provider and model are all required
    missing = [k for k, v in (("agent_id", agent_id), ("provider", provider), ("model", model)) if not v]
    if missing:
        code = MISSING_MODEL if missing == ["model"] else MISSING_AGENT_OR_PROVIDER
        raise reject(
            Invalid(
                f"resume needs {', '.join(missing)}: every resume is done as an agent with a provider and model",
                errors=[{"loc": ["body", k], "msg": "is required"} for k in missing],
                code=code,
            )
        )
    assert agent_id and provider and model
    # 3. the agent (and provider) must exist
    try:
        agent = get_agent(conn, agent_id, loc=["body", "agent_id"], code=UNKNOWN_AGENT)
    except Invalid as exc:
        raise reject(exc) from None
    if provider not in PROVIDERS:
        raise reject(
            Invalid.field(
                ["body", "provider"],
                f"unknown provider {provider!r}; use one of {', '.join(PROVIDERS)}",
                code=UNKNOWN_PROVIDER,
            )
        )
    # 4. state: complete never resumes; in_progress only when its worker is gone
    stale = is_stale_in_progress(conn, item, now)
    if item["status"] == bl.COMPLETE:
        raise reject(
            Conflict(f"backlog item {backlog_id} is complete; nothing to resume", code=ITEM_COMPLETE)
        )
    if item["status"] == bl.IN_PROGRESS and not stale:
        raise reject(
            Conflict(
                f"backlog item {backlog_id} is in progress on live worker {item['worker_id']}; "
                "it can be resumed only once its worker is gone",
                code=ITEM_IN_PROGRESS,
            )
        )
    current = latest_task(conn, plan_id, backlog_id)
    if item["status"] == bl.PENDING and item["task_id"] and _task_is_live(conn, item["task_id"]):
        raise reject(
            Conflict(
                f"backlog item {backlog_id} is already queued as task {item['task_id']} "
                "(another resume won, or the scheduler claimed it)",
                code=ITEM_QUEUED,
            )
        )
    missing_inputs = _incomplete_inputs(conn, item)
    if missing_inputs:
        raise reject(
            Conflict(
                f"backlog item {backlog_id} waits on {', '.join(missing_inputs)}, not complete yet; "
                "resume those first (this item runs once its inputs are complete)",
                code=INPUTS_INCOMPLETE,
            )
        )
    # 5. ownership: the token's agent binding, then the plan's author persona unless admin
    try:
        require_agent_binding(actor, agent_id)
    except Forbidden as exc:
        raise reject(Forbidden(exc.detail, code=AGENT_TOKEN_MISMATCH)) from None
    mismatch = author_persona_mismatch(agent, plan, actor, "resume", code=AGENT_PERSONA_MISMATCH)
    if mismatch is not None:
        raise reject(mismatch)
    # 6. guards: the caller's view of the item must be current
    latest_id = item["task_id"] or (current["task_id"] if current else None)
    if task_id is not None and task_id != latest_id:
        raise reject(
            Conflict(
                f"task {task_id} is not the latest task of backlog item {backlog_id} (latest: {latest_id})",
                code=TASK_BACKLOG_MISMATCH,
            )
        )
    if branch is not None and branch != item["branch_slug"]:
        raise reject(
            Conflict(
                f"backlog item {backlog_id} is on branch {item['branch_slug']}, not {branch}",
                code=BRANCH_MISMATCH,
            )
        )
    # 7. success
    new_task = claim_for_task(
        conn,
        item,
        reason="resume",
        now=now,
        agent_id=agent_id,
        provider=provider,
        model=model,
        notes=notes,
    )
    if new_task is None:
        raise reject(
            Conflict(f"another resume of backlog item {backlog_id} won; reload it", code=RESUME_CONFLICT)
        )
    return _apply_resume(conn, item, agent, provider, model, new_task, notes, actor, now, cfg)


def _incomplete_inputs(conn: Connection, item: Mapping[str, Any]) -> list[str]:
    """The item's inputs whose producing item is not complete (readiness, docs/reference/payloads.md)."""
    if not item["inputs"]:
        return []
    producers = dict(
        conn.execute(
            select(backlog_items.c.backlog_id, backlog_items.c.status).where(
                backlog_items.c.plan_id == item["plan_id"], backlog_items.c.backlog_id.in_(item["inputs"])
            )
        ).all()
    )
    return bl.incomplete_inputs(item["inputs"], producers)


def _task_is_live(conn: Connection, task_id: str) -> bool:
    status = conn.execute(select(tasks.c.status).where(tasks.c.task_id == task_id)).scalar()
    return status in LIVE


def _apply_resume(
    conn: Connection,
    item: dict[str, Any],
    agent: dict[str, Any],
    provider: str,
    model: str,
    task_id: str,
    notes: str | None,
    actor: Actor,
    now: datetime,
    cfg: Config | None,
) -> dict[str, Any]:
    if item["status"] == bl.IN_PROGRESS and item["task_id"]:
        conn.execute(
            update(tasks)
            .where(tasks.c.task_id == item["task_id"], tasks.c.status.in_(LIVE))
            .values(status="abandoned", finished_at=now)
        )
    top = conn.execute(select(func.max(backlog_items.c.priority))).scalar() or 0
    claimed = {
        **item,
        "task_id": task_id,
        "agent_id": agent["id"],
        "persona_id": agent["persona_id"],
        "provider": provider,
        "model": model,
    }
    threshold = cfg.health.flapping_threshold if cfg else DEFAULT_FLAPPING_THRESHOLD
    moved = change_status(
        conn,
        claimed,
        bl.PENDING,
        "resume",
        now,
        flapping_threshold=threshold,
        persona_id=agent["persona_id"],
        worker_id=None,
        last_error=None,
        priority=max(top, item["priority"]) + 1,
    )
    key = bl.phase_key(item["phase"], item["branch_slug"], item["chapter"], item["scene"])
    conn.execute(
        update(checkpoints)
        .where(checkpoints.c.plan_id == item["plan_id"], checkpoints.c.phase_key == key)
        .values(status="open", locked_by_agent=None, task_id=task_id, last_step="resume", updated_at=now)
    )
    record_action(
        conn,
        {
            "action": "resume",
            "plan_id": item["plan_id"],
            "backlog_id": item["backlog_id"],
            "description": item["description"],
            "branch": item["branch_slug"],
            "actor": actor.name,
            "actor_id": actor.actor_id,
            "source": actor.source,
            "agent_id": agent["id"],
            "persona_id": agent["persona_id"],
            "provider": provider,
            "model": model,
            "task_id": task_id,
            "status": bl.PENDING,
            "previous_status": item["status"],
            "notes": notes,
        },
        now,
    )
    return {"backlog_item": backlog_view(moved), "task_id": task_id}


def resume_item(
    db: Database,
    plan_id: str,
    backlog_id: str,
    body: bytes | Mapping[str, Any],
    actor: Actor,
    now: datetime,
    cfg: Config | None = None,
) -> dict[str, Any]:
    """`resume` in its own transaction; a contract rejection is recorded in a second one, then re-raised."""
    try:
        with db.begin() as conn:
            return resume(conn, plan_id, backlog_id, body, actor, now, cfg)
    except ContractRejection as rejection:
        with db.begin() as conn:
            record_contract_rejection(conn, rejection.event, now)
        raise
