"""Backlog resume (docs/reference/http-api.md, "Resume"): 202 with the item and its new task, or problem+json with a `code`;
and cancel."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from storyloom.api.auth import operator, runtime
from storyloom.api.openapi import answers
from storyloom.api.schemas.plans import Cancelled, Resumed
from storyloom.runtime import Runtime
from storyloom.services import backlog
from storyloom.services import cancel as cancel_service
from storyloom.services.actors import Actor

router = APIRouter(prefix="/api/fiction/plans", tags=["backlog"])

NO_ITEM = "No such plan, or no such backlog item in it"
NOT_YOURS = (
    "The token's role may not do this, the token is bound to other agents, or the agent is not of the "
    "plan's author persona (see `code`)"
)


RESUME_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": backlog.ResumeRequest.model_json_schema()}},
    }
}


@router.post(
    "/{plan_id}/backlog/{backlog_id}/resume",
    status_code=202,
    openapi_extra=RESUME_BODY,
    responses=answers(
        Resumed,
        403,
        404,
        409,
        status=202,
        description="The item, pending and run next, and its new task",
        s403=NOT_YOURS,
        s404=NO_ITEM,
        s409="The item is complete, already queued or running, or another resume won (see `code`)",
    ),
)
async def resume(
    plan_id: str,
    backlog_id: str,
    request: Request,
    actor: Actor = Depends(operator),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    """Resume a backlog item.

    Resume a failed, blocked, cancelled or stale item: it runs next, as a new task, with this agent.

    The body is read raw and validated by the contract (after the 404 of rule 1), so that a bad body is
    recorded as a contract event like every other rejection.
    """
    body = await request.body()
    result = await run_in_threadpool(
        backlog.resume_item, rt.db, plan_id, backlog_id, body, actor, rt.clock.now(), rt.config
    )
    return result


@router.post(
    "/{plan_id}/backlog/{backlog_id}/cancel",
    responses=answers(
        Cancelled,
        403,
        404,
        409,
        s403=NOT_YOURS,
        s404=NO_ITEM,
        description="The cancelled item (already cancelled: unchanged, no task stopped)",
        s409="The item is complete: there is nothing to cancel",
    ),
)
def cancel(
    plan_id: str,
    backlog_id: str,
    body: cancel_service.CancelRequest,
    actor: Actor = Depends(operator),
    rt: Runtime = Depends(runtime),
) -> dict[str, Any]:
    """Cancel a backlog item.

    Cancel an item that is not complete: a queued task never starts, a running one stops at its next step.
    """
    with rt.db.begin() as conn:
        return cancel_service.cancel(conn, plan_id, backlog_id, body.model_dump(), actor, rt.clock.now())
