"""Rows the background passes set aside (they could not process them), with the error each raised."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from storyloom.api.auth import runtime, viewer
from storyloom.api.openapi import answers
from storyloom.api.schemas.set_aside import Pass, SetAsideRow
from storyloom.runtime import Runtime
from storyloom.services.actors import Actor
from storyloom.store import set_aside

router = APIRouter(prefix="/api/set-aside", tags=["set-aside"])


@router.get("", responses=answers(list[SetAsideRow]))
def list_set_aside(
    pass_name: Pass | None = Query(default=None, alias="pass"),
    limit: int = Query(default=500, ge=1, le=500),
    _: Actor = Depends(viewer),
    rt: Runtime = Depends(runtime),
) -> list[dict[str, Any]]:
    """Rows the background passes set aside, newest first.

    Each is `{pass, item, error, at}`: the pass (`notifier`, `notifier.flush`, `delivery`, `scheduler`,
    `health`), the row it could not process (a fingerprint, group key, delivery id, backlog row id, or a
    health rule or reconciler) and the error it raised.
    Fix the cause, then fire the alert again or replay the delivery.
    """
    with rt.db.read() as conn:
        return set_aside.list_set_aside(conn, pass_name, limit)
