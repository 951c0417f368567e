"""Server-Sent Events for the console: alert, backlog, obligation, delivery and health changes, live.

Two sources feed one stream. In-process publishes (`storyloom.signals`) arrive the moment this
process commits; but the API and the worker may be different processes, so the stream also polls
`workflow_events` by id every half second. The publish only *wakes* the poll, and every event sent is
a `workflow_events` row with its id: nothing is sent twice, and a reconnecting browser resumes from
`Last-Event-ID` without a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import Connection, func, select
from sse_starlette.sse import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from storyloom import signals
from storyloom.api.auth import runtime, viewer
from storyloom.api.query import MAX_ID
from storyloom.domain.readable import kind_of, readable_json
from storyloom.health.report import health_status
from storyloom.runtime import Runtime
from storyloom.services.actors import Actor
from storyloom.store.events import (
    ALERT_STATE,
    BACKLOG_ACTION,
    BACKLOG_CONTRACT,
    BACKLOG_TELEMETRY,
    DELIVERY_ACTION,
    PERSONA_OBLIGATION,
    SILENCE_ACTION,
)
from storyloom.store.tables import workflow_events

router = APIRouter(prefix="/api/events", tags=["events"])

# workflow_events kind → SSE event name (a silence changes which alerts are muted: an `alert` event).
LIVE_KINDS: dict[str, str] = {
    BACKLOG_TELEMETRY: "backlog",
    BACKLOG_ACTION: "backlog",
    BACKLOG_CONTRACT: "backlog",
    PERSONA_OBLIGATION: "obligation",
    ALERT_STATE: "alert",
    SILENCE_ACTION: "alert",
    DELIVERY_ACTION: "delivery",
}
POLL_SECONDS = 0.5
HEALTH_SECONDS = 10.0
PING_SECONDS = 5
BATCH = 200


def latest_event_id(conn: Connection) -> int:
    return int(conn.execute(select(func.coalesce(func.max(workflow_events.c.id), 0))).scalar_one())


def events_after(conn: Connection, cursor: int, limit: int = BATCH) -> list[dict[str, Any]]:
    """Live-relevant rows after `cursor`, oldest first, each as `{id, event, data}`."""
    rows = conn.execute(
        select(
            workflow_events.c.id,
            workflow_events.c.kind,
            workflow_events.c.plan_id,
            workflow_events.c.backlog_id,
            workflow_events.c.payload,
            workflow_events.c.created_at,
        )
        .where(workflow_events.c.id > cursor, workflow_events.c.kind.in_(list(LIVE_KINDS)))
        .order_by(workflow_events.c.id)
        .limit(limit)
    )
    out = []
    for row in rows:
        payload, problems = readable_json(row.payload or {}, "payload")
        if not isinstance(payload, dict):
            payload, problems = {}, [f"payload: stored as {kind_of(payload)}, not an object"]
        data = {
            **payload,
            **({"unreadable": problems} if problems else {}),
            "kind": row.kind,
            "plan_id": row.plan_id,
            "backlog_id": row.backlog_id,
            "event_id": row.id,
            "at": _iso(row.created_at),
        }
        out.append({"id": row.id, "event": LIVE_KINDS[row.kind], "data": data})
    return out


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def _cursor_from(request: Request, after: int | None) -> int | None:
    """`Last-Event-ID` (the browser's own reconnect) wins over `?after=` (the console's manual one)."""
    raw = request.headers.get("last-event-id", "")
    if raw.isdigit() and int(raw) <= MAX_ID:
        return int(raw)
    return after


async def _stream(request: Request, rt: Runtime, after: int | None) -> AsyncIterator[ServerSentEvent]:
    loop = asyncio.get_running_loop()
    woken = asyncio.Event()

    def on_publish(_kind: str, _data: dict[str, object]) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed under a late publish
            loop.call_soon_threadsafe(woken.set)

    def read_cursor() -> int:
        with rt.db.read() as conn:
            return latest_event_id(conn)

    def read_events(after: int) -> list[dict[str, Any]]:
        with rt.db.read() as conn:
            return events_after(conn, after)

    def read_health() -> dict[str, Any]:
        with rt.db.read() as conn:
            return health_status(conn)

    unsubscribe = signals.subscribe(on_publish)
    try:
        cursor = _cursor_from(request, after)
        if cursor is None:
            cursor = await run_in_threadpool(read_cursor)
        yield ServerSentEvent(data=json.dumps({"cursor": cursor}), event="hello", id=str(cursor), retry=1000)
        next_health = 0.0
        while True:
            if time.monotonic() >= next_health:
                health = await run_in_threadpool(read_health)
                yield ServerSentEvent(data=json.dumps(health), event="health")
                next_health = time.monotonic() + HEALTH_SECONDS
            batch = await run_in_threadpool(read_events, cursor)
            for item in batch:
                cursor = item["id"]
                yield ServerSentEvent(
                    data=json.dumps(item["data"], default=str), event=item["event"], id=str(cursor)
                )
            if len(batch) == BATCH:
                continue  # catching up: read the next page now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), timeout=POLL_SECONDS)
            woken.clear()
    finally:
        unsubscribe()


@router.get(
    "/stream",
    summary="Live events (Server-Sent Events)",
    response_class=EventSourceResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "an endless event stream"}},
)
async def stream(
    request: Request,
    after: int | None = Query(
        default=None,
        ge=0,
        le=MAX_ID,
        description="resume after this event id (`Last-Event-ID` takes precedence)",
    ),
    _: Actor = Depends(viewer),
    rt: Runtime = Depends(runtime),
) -> EventSourceResponse:
    """Live changes as Server-Sent Events: `alert`, `backlog`, `obligation`, `delivery`, `health` (every 10 s).

    Each data event carries its `workflow_events` id, so a reconnect (`Last-Event-ID`) resumes without a gap.
    """
    return EventSourceResponse(
        _stream(request, rt, after),
        ping=PING_SECONDS,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
