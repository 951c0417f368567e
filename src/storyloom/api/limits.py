"""The body cap: a request body is counted while it is read and refused with 413 past the limit.

It runs before routing, so before any parsing and before the token is checked: an anonymous 49 MB
POST costs the server at most the limit in memory, whatever its `Content-Length` says (or leaves out,
as a chunked body does).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from storyloom.api.problems import problem


class BodyTooLarge(Exception):
    """The body passed the limit while it was being read."""


def too_large(limit: int) -> Response:
    return problem(
        413,
        f"the request body is larger than the limit of {limit} bytes (limits.max_body_bytes)",
        title="Payload too large",
        errors=[{"loc": ["body"], "msg": f"larger than {limit} bytes"}],
    )


class BodyLimit:
    """Reads the whole body up front (at most `limit()` bytes) and replays it to the app; 413 beyond."""

    def __init__(self, app: ASGIApp, limit: Callable[[], int]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit()
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            await too_large(limit)(scope, receive, send)
            return
        try:
            body = await _read_body(receive, limit)
        except BodyTooLarge:
            await too_large(limit)(scope, receive, send)
            return
        await self.app(scope, _replay(body, receive), send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _read_body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away: nothing left to read
            return b"".join(chunks)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body as one message, then the real channel (which reports the client's disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
