"""The built-in demo receiver (docs/reference/http-api.md): a real Standard Webhooks endpoint of this same server.

Enabled only with `--demo` or `demo_receiver: true` (404 otherwise). `POST /api/demo/receiver` takes no
bearer token: the signature is the authentication. Every request is kept in `demo_inbox` (signature
verdict, headers without the signature value, body), valid or not, so the Ops inbox page shows what
arrived and why it was refused; 204 when the signature verifies, 401 problem+json when it does not.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy import delete, insert, select
from starlette.concurrency import run_in_threadpool

from storyloom.alerting import signing
from storyloom.api.auth import runtime, viewer
from storyloom.api.openapi import answers, problem_responses
from storyloom.api.problems import problem
from storyloom.api.schemas.demo import InboxEntry
from storyloom.demo import DEMO_SECRET_ENV
from storyloom.domain.alerts import rfc3339
from storyloom.domain.text import escaped
from storyloom.runtime import Runtime
from storyloom.services.actors import Actor
from storyloom.services.errors import NotFound, ServiceError
from storyloom.store.tables import demo_inbox

router = APIRouter(prefix="/api/demo", tags=["demo"])

MAX_BODY = 1024 * 1024  # bytes: the endpoint takes no token, so what it keeps is bounded
KEEP = 1000  # inbox rows kept; older ones are pruned
REDACTED = "<redacted>"
DISABLED = "The demo receiver is off"
_DROPPED_HEADERS = {"authorization", "cookie", "proxy-authorization"}


class PayloadTooLarge(ServiceError):
    status = 413
    title = "Payload too large"


def _enabled(rt: Runtime) -> None:
    if not (rt.demo or getattr(rt.config, "demo_receiver", False)):
        raise NotFound(
            "the demo receiver is off: start with `storyloom run --demo` or set demo_receiver: true"
        )


def _kept_headers(headers: Any) -> dict[str, str]:
    kept = {k.lower(): v for k, v in headers.items() if k.lower() not in _DROPPED_HEADERS}
    if signing.HEADER_SIGNATURE in kept:
        kept[signing.HEADER_SIGNATURE] = REDACTED
    return kept


def _body(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", errors="replace")


def check(headers: Any, raw: bytes, now: datetime) -> str | None:
    """None when the Standard Webhooks signature verifies with the demo secret, else the reason."""
    secret = os.environ.get(DEMO_SECRET_ENV)
    if not secret:
        return f"receiver misconfigured: {DEMO_SECRET_ENV} is not set"
    try:
        signing.verify(secret, headers, raw, now)
    except signing.SignatureError as exc:
        return exc.reason
    return None


def _store(rt: Runtime, row: dict[str, Any]) -> None:
    with rt.db.begin() as conn:
        new_id = conn.execute(insert(demo_inbox).values(**row)).inserted_primary_key
        if new_id and new_id[0] and int(new_id[0]) > KEEP:
            conn.execute(delete(demo_inbox).where(demo_inbox.c.id <= int(new_id[0]) - KEEP))


@router.post(
    "/receiver",
    status_code=204,
    response_class=Response,
    responses=problem_responses(
        401, 404, s401="The signature does not verify (the request is still kept)", s404=DISABLED
    ),
)
async def receive(request: Request, rt: Runtime = Depends(runtime)) -> Response:
    """Receive a webhook (demo receiver).

    Verify and keep one webhook: 204 when signed with the demo secret, 401 (still kept) when not.
    """
    _enabled(rt)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > MAX_BODY:
        raise PayloadTooLarge(f"the demo receiver keeps bodies up to {MAX_BODY} bytes")
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise PayloadTooLarge(f"the demo receiver keeps bodies up to {MAX_BODY} bytes")
    now = rt.clock.now()
    error = check(request.headers, raw, now)
    row = {
        "webhook_id": (request.headers.get(signing.HEADER_ID) or "")[:64] or None,
        "signature_valid": error is None,
        "error": error,
        "headers": escaped(_kept_headers(request.headers)),
        "body": escaped(_body(raw)),
        "received_at": now,
    }
    await run_in_threadpool(_store, rt, row)
    if error is not None:
        return problem(401, f"webhook signature rejected: {error}", title="Unauthorized")
    return Response(status_code=204)


@router.get("/inbox", responses=answers(list[InboxEntry], 404, s404=DISABLED))
def inbox(
    limit: int = Query(default=100, ge=1, le=KEEP),
    _: Actor = Depends(viewer),
    rt: Runtime = Depends(runtime),
) -> list[dict[str, Any]]:
    """List what the demo receiver got.

    Newest first, each with its signature verdict.
    """
    _enabled(rt)
    with rt.db.read() as conn:
        rows = conn.execute(select(demo_inbox).order_by(demo_inbox.c.id.desc()).limit(limit)).mappings()
        return [
            {
                "id": r["id"],
                "webhook_id": r["webhook_id"],
                "signature_valid": r["signature_valid"],
                "error": r["error"],
                "headers": r["headers"],
                "body": r["body"],
                "received_at": rfc3339(r["received_at"]),
            }
            for r in rows
        ]
