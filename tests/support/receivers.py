"""Real HTTP receivers on 127.0.0.1 for tests: record what arrives, answer as each protocol would.

    with ReceiverServer(standard_webhook(secret)) as server:
        ... POST to server.url + "/hooks" ...
        path, headers, body = server.requests[0]

A server answers with scripted `Reply`s first (`server.script(Reply(500), Reply(200))`), then with its
handler (default: 200). Handlers for the protocols Storyloom speaks are below: `standard_webhook`
(verifies signatures with the `standardwebhooks` library), `pagerduty_events` and `slack_webhook`.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any

import standardwebhooks

from tests.support.loopback import LoopbackServer


@dataclass
class Reply:
    """What the server answers. A dict or list body is sent as JSON; `delay` holds the answer back."""

    status: int = 200
    body: bytes | str | dict[str, Any] | list[Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0

    def encoded(self) -> tuple[bytes, dict[str, str]]:
        headers = dict(self.headers)
        if isinstance(self.body, dict | list):
            headers.setdefault("Content-Type", "application/json")
            return json.dumps(self.body).encode(), headers
        if isinstance(self.body, str):
            headers.setdefault("Content-Type", "text/plain; charset=utf-8")
            return self.body.encode(), headers
        return self.body or b"", headers


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as it arrived. Unpacks as `(path, headers, json)`; headers are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.path, self.headers, self.json))


Handler = Callable[[ReceivedRequest], Reply]


def ok(_request: ReceivedRequest) -> Reply:
    return Reply(200, b"")


class ReceiverServer:
    """A threaded HTTP/1.1 server on a free loopback port. Use as a context manager."""

    def __init__(self, handler: Handler = ok, *, replies: Iterable[Reply] = (), host: str = "127.0.0.1"):
        self.handler = handler
        self.requests: list[ReceivedRequest] = []
        self._host = host
        self._replies: deque[Reply] = deque(replies)
        self._lock = threading.Condition()
        self._stopping = threading.Event()
        self._server: LoopbackServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the server is not started; use `with ReceiverServer(...) as server`")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self.port}"

    def url_for(self, path: str) -> str:
        return self.url + (path if path.startswith("/") else "/" + path)

    def script(self, *replies: Reply) -> None:
        """Answer the next requests with these replies, in order, before falling back to the handler."""
        with self._lock:
            self._replies.extend(replies)

    def clear(self) -> None:
        with self._lock:
            self.requests.clear()

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedRequest]:
        """Block until at least `count` requests arrived (or fail after `timeout` seconds)."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"expected {count} requests within {timeout}s, got {len(self.requests)}")
            return list(self.requests)

    def _answer(self, request: ReceivedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            self._lock.notify_all()
            scripted = self._replies.popleft() if self._replies else None
        return scripted if scripted is not None else self.handler(request)

    def start(self) -> ReceiverServer:
        owner = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                request = ReceivedRequest(
                    method=self.command,
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                reply = owner._answer(request)
                if reply.delay and owner._stopping.wait(reply.delay):
                    return
                payload, headers = reply.encoded()
                try:
                    self.send_response(reply.status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up (a timeout test)

            do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = LoopbackServer((self._host, 0), _Handler)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.02}, name="receiver-server", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ReceiverServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# --- protocol handlers -------------------------------------------------------------------------------


def standard_webhook(*secrets: str, status: int = 204) -> Handler:
    """A Standard Webhooks consumer: 401 unless some secret verifies the request, else `status`."""
    verifiers = [standardwebhooks.Webhook(s) for s in secrets]

    def handle(request: ReceivedRequest) -> Reply:
        errors = []
        for verifier in verifiers:
            try:
                verifier.verify(request.body, request.headers)
            except standardwebhooks.WebhookVerificationError as exc:
                errors.append(str(exc))
            else:
                return Reply(status)
        return Reply(401, {"error": "; ".join(errors) or "no secret configured"})

    return handle


PAGERDUTY_SEVERITIES = {"critical", "error", "warning", "info"}


def _pd_invalid(*errors: str) -> Reply:
    return Reply(
        400, {"status": "invalid event", "message": "Event object is invalid", "errors": list(errors)}
    )


def pagerduty_events(request: ReceivedRequest) -> Reply:
    """PagerDuty Events API v2 at `/v2/enqueue`: 202 with the dedup key, 400 for an invalid event."""
    if request.path.split("?", 1)[0] != "/v2/enqueue":
        return Reply(404, {"status": "not found"})
    event = request.json
    if not isinstance(event, dict):
        return _pd_invalid("the body must be a JSON object")
    if not str(event.get("routing_key") or "").strip():
        return _pd_invalid("'routing_key' is missing or blank")
    action = event.get("event_action")
    if action not in ("trigger", "acknowledge", "resolve"):
        return _pd_invalid("'event_action' must be trigger, acknowledge or resolve")
    dedup_key = event.get("dedup_key")
    if action == "trigger":
        payload = event.get("payload")
        if not isinstance(payload, dict):
            return _pd_invalid("'payload' is missing")
        missing = [k for k in ("summary", "source", "severity") if not payload.get(k)]
        if missing:
            return _pd_invalid(*(f"'payload.{k}' is missing or blank" for k in missing))
        if payload["severity"] not in PAGERDUTY_SEVERITIES:
            return _pd_invalid("'payload.severity' must be critical, error, warning or info")
        if len(payload["summary"]) > 1024:
            return _pd_invalid("'payload.summary' is longer than 1024 characters")
    elif not dedup_key:
        return _pd_invalid("'dedup_key' is required to acknowledge or resolve")
    return Reply(
        202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key or uuid.uuid4().hex}
    )


_SLACK_BLOCK_TYPES = {"header", "section", "context", "divider", "actions", "image", "rich_text"}
_SLACK_TEXT_TYPES = {"plain_text", "mrkdwn"}


def _text_ok(obj: Any, limit: int, types: set[str] = _SLACK_TEXT_TYPES) -> bool:
    return (
        isinstance(obj, dict)
        and obj.get("type") in types
        and isinstance(obj.get("text"), str)
        and (0 < len(obj["text"]) <= limit)
    )


def _block_ok(block: Any) -> bool:
    if not isinstance(block, dict) or block.get("type") not in _SLACK_BLOCK_TYPES:
        return False
    kind = block["type"]
    if kind == "header":
        return _text_ok(block.get("text"), 150, {"plain_text"})
    if kind == "section":
        fields = block.get("fields")
        if fields is not None and (
            not isinstance(fields, list) or len(fields) > 10 or not all(_text_ok(f, 2000) for f in fields)
        ):
            return False
        return _text_ok(block.get("text"), 3000) if "text" in block else bool(fields)
    if kind == "context":
        elements = block.get("elements")
        return (
            isinstance(elements, list)
            and 0 < len(elements) <= 10
            and all(_text_ok(e, 3000) for e in elements)
        )
    return True


def slack_webhook(request: ReceivedRequest) -> Reply:
    """A Slack incoming webhook: 200 `ok`, or 400 `invalid_blocks` / `no_text` / `invalid_payload`."""
    message = request.json
    if not isinstance(message, dict):
        return Reply(400, "invalid_payload")
    blocks = message.get("blocks")
    if not message.get("text") and not blocks:
        return Reply(400, "no_text")
    if blocks is not None and (
        not isinstance(blocks, list) or len(blocks) > 50 or not all(_block_ok(b) for b in blocks)
    ):
        return Reply(400, "invalid_blocks")
    return Reply(200, "ok", {"Content-Type": "text/html"})
