"""Webhook deliveries (docs/reference/http-api.md): list with attempts, and replay with the same `webhook-id`."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query

from storyloom.api.auth import operator, runtime, viewer
from storyloom.api.openapi import answers
from storyloom.api.query import Page
from storyloom.api.schemas.deliveries import Delivery, Replayed
from storyloom.runtime import Runtime
from storyloom.services import deliveries
from storyloom.services.actors import Actor

router = APIRouter(prefix="/api/deliveries", tags=["deliveries"])


@router.get("", responses=answers(list[Delivery]))
def list_deliveries(
    receiver: str | None = Query(default=None, max_length=100),
    status: Literal["pending", "delivered", "failed", "dead"] | None = None,
    limit: int = Query(default=100, ge=1, le=deliveries.MAX_LIMIT),
    page: Page = 1,
    _: Actor = Depends(viewer),
    rt: Runtime = Depends(runtime),
) -> list[dict[str, Any]]:
    """List webhook deliveries.

    Newest first, each with its `attempt_log`; filter by receiver and status.
    """
    with rt.db.read() as conn:
        return deliveries.list_deliveries(conn, receiver=receiver, status=status, limit=limit, page=page)


@router.get("/{delivery_id}", responses=answers(Delivery))
def get_delivery(
    delivery_id: str, _: Actor = Depends(viewer), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    """Get a delivery.

    One webhook delivery with its attempt log.
    """
    with rt.db.read() as conn:
        return deliveries.get_delivery(conn, delivery_id)


@router.post(
    "/{delivery_id}/replay",
    status_code=202,
    responses=answers(
        Replayed,
        409,
        status=202,
        description="The new delivery, queued with the same `webhook-id`",
        s409="Its receiver is no longer configured",
    ),
)
def replay(
    delivery_id: str, actor: Actor = Depends(operator), rt: Runtime = Depends(runtime)
) -> dict[str, Any]:
    """Replay a delivery.

    Queue a new delivery with the same `webhook-id` and body; re-enables a receiver disabled by a 410.
    """
    with rt.db.begin() as conn:
        return deliveries.replay(conn, delivery_id, actor, rt.clock.now(), alerting=rt.alerting)
