"""A real OpenAI-compatible HTTP server on 127.0.0.1 for tests: `POST /v1/chat/completions`.

Replies are programmable: queue `FakeReply`s with `enqueue` (used first, in order), otherwise the
`responder` answers. The default responder, `storyloom_responder`, recognizes the Storyloom phase from
the system prompt and the rendered template's `Label: value` lines and answers with the offline
provider's schema-valid output, so a whole plan can run through the openai provider.

    with FakeOpenAIServer() as server:
        provider = OpenAIProvider(base_url=server.base_url, ...)
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from storyloom.domain.phases import PHASES, Phase
from storyloom.pipeline.llm.base import LLMRequest
from storyloom.pipeline.llm.offline import OfflineProvider


@dataclass
class FakeReply:
    """One programmed answer. `content` becomes the chat message; `body` replaces the whole JSON body."""

    content: str | None = "ok"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    usage: dict[str, int] | None = None  # None = word counts of prompt and content
    finish_reason: str = "stop"
    body: Any = None
    raw_body: bytes | None = None
    delay: float = 0.0  # seconds before answering (the server waits; stop() cuts it short)
    model: str | None = None


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]
    body: Any

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", [])) if isinstance(self.body, dict) else []

    @property
    def system(self) -> str:
        return next((str(m.get("content", "")) for m in self.messages if m.get("role") == "system"), "")

    @property
    def prompt(self) -> str:
        return next(
            (str(m.get("content", "")) for m in reversed(self.messages) if m.get("role") == "user"), ""
        )


Responder = Callable[[RecordedRequest], FakeReply]

_PLANNERS = {spec.planner_name: phase for phase, spec in PHASES.items()}
_LINE = re.compile(
    r"^(Plan|Premise|Chapter number|Scene number|Scenes per chapter|Chapters|Salient terms|"
    r"Open obligations): (.*)$",
    re.MULTILINE,
)
_CONTEXT_KEYS = {
    "Plan": "plan_name",
    "Premise": "premise",
    "Chapter number": "chapter_number",
    "Scene number": "scene_number",
    "Scenes per chapter": "scenes_per_chapter",
    "Chapters": "chapters",
    "Salient terms": "salient_terms",
    "Open obligations": "open_obligations",
}


def phase_of(request: RecordedRequest) -> Phase | None:
    """The Storyloom phase a request is for, from its system prompt (`You are the <planner name> ...`)."""
    for planner, phase in _PLANNERS.items():
        if f"You are the {planner}" in request.system:
            return phase
    return None


def storyloom_responder(offline: OfflineProvider | None = None) -> Responder:
    """Answer Storyloom planner prompts with the offline provider's output for the same context."""
    provider = offline or OfflineProvider()

    def respond(request: RecordedRequest) -> FakeReply:
        phase = phase_of(request)
        if phase is None:
            return FakeReply(content="ok")
        context: dict[str, Any] = {}
        for label, value in _LINE.findall(request.prompt):
            key = _CONTEXT_KEYS[label]
            if key in ("salient_terms", "open_obligations"):
                try:
                    context[key] = json.loads(value)
                except ValueError:
                    continue
            else:
                context[key] = value.strip()
        call = LLMRequest(phase=phase.value, prompt=request.prompt, system=request.system, context=context)
        return FakeReply(content=provider.generate(call))

    return respond


class FakeOpenAIServer:
    def __init__(self, responder: Responder | None = None, *, model: str = "fake-model") -> None:
        self.responder = responder or storyloom_responder()
        self.model = model
        self.requests: list[RecordedRequest] = []
        self._queue: deque[FakeReply] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def enqueue(self, *replies: FakeReply) -> None:
        with self._lock:
            self._queue.extend(replies)

    def completions(self) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def start(self) -> FakeOpenAIServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-openai", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _next_reply(self, request: RecordedRequest) -> FakeReply:
        with self._lock:
            self.requests.append(request)
            queued = self._queue.popleft() if self._queue else None
        return queued if queued is not None else self.responder(request)

    def _body(self, reply: FakeReply, request: RecordedRequest) -> bytes:
        if reply.raw_body is not None:
            return reply.raw_body
        if reply.body is not None:
            return json.dumps(reply.body).encode()
        if reply.status >= 400:
            return json.dumps({"error": {"message": f"fake error {reply.status}", "type": "fake"}}).encode()
        content = reply.content or ""
        usage = reply.usage or {
            "prompt_tokens": len(f"{request.system} {request.prompt}".split()),
            "completion_tokens": len(content.split()),
        }
        usage.setdefault("total_tokens", usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0))
        return json.dumps(
            {
                "id": f"chatcmpl-{len(self.requests)}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": reply.model or (request.body or {}).get("model") or self.model,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply.content},
                        "finish_reason": reply.finish_reason,
                    }
                ],
                "usage": usage,
            }
        ).encode()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                return

            def do_GET(self) -> None:
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, json.dumps({"object": "list", "data": [{"id": server.model}]}).encode())
                else:
                    self._send(404, b'{"error": {"message": "not found"}}')

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw or b"null")
                except ValueError:
                    body = raw.decode(errors="replace")
                request = RecordedRequest(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, b'{"error": {"message": "not found"}}')
                    return
                reply = server._next_reply(request)
                if reply.delay and server._stopping.wait(reply.delay):
                    return
                self._send(reply.status, server._body(reply, request), reply.headers)

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

        return Handler
