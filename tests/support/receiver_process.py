"""An Ops webhook receiver as its own process, for end-to-end tests.

    python -m tests.support.receiver_process --port 9000 --secret whsec_... --out received.jsonl \
        [--statuses 500,410]

It verifies every Standard Webhooks signature with the `standardwebhooks` library, appends one JSON line
per request to `--out` (`{"path", "headers", "body", "signature_valid", "complete", "status"}`), and answers with the
scripted `--statuses` in order, then 200 (or 401 when the signature is invalid).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import standardwebhooks

from tests.support.loopback import LoopbackServer


def serve(port: int, secret: str | None, out: Path, statuses: list[int]) -> None:
    script = deque(statuses)
    lock = threading.Lock()
    webhook = standardwebhooks.Webhook(secret) if secret else None

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            valid = False
            if webhook is not None:
                try:
                    webhook.verify(raw, headers)
                    valid = True
                except Exception:  # the library raises its own WebhookVerificationError
                    valid = False
            with lock:
                status = script.popleft() if script else (200 if valid or webhook is None else 401)
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw.decode(errors="replace")
                record = {
                    "path": self.path,
                    "headers": headers,
                    "body": body,
                    "signature_valid": valid,
                    "complete": len(raw) == length,  # false when the sender died mid-request
                    "status": status,
                }
                with out.open("a") as handle:
                    handle.write(json.dumps(record) + "\n")
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            return

    server = LoopbackServer(("127.0.0.1", port), Handler)
    server.serve_forever()


class ReceiverProcess:
    """Start the receiver in a subprocess; `received()` reads what it recorded so far."""

    def __init__(self, port: int, out: Path, *, secret: str | None = None, statuses: list[int] | None = None):
        self.port = port
        self.out = out
        self.url = f"http://127.0.0.1:{port}/hooks/ops"
        args = [
            sys.executable,
            "-m",
            "tests.support.receiver_process",
            "--port",
            str(port),
            "--out",
            str(out),
        ]
        if secret:
            args += ["--secret", secret]
        if statuses:
            args += ["--statuses", ",".join(str(s) for s in statuses)]
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ReceiverProcess:
        root = Path(__file__).resolve().parents[2]
        self.proc = subprocess.Popen(self.args, cwd=root)
        from tests.support.server import wait_for

        def listening() -> bool:
            import socket

            with socket.socket() as sock:
                return sock.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(listening, timeout=20, message=f"receiver on port {self.port}")
        return self

    def received(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]

    def alerts(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(notification body, alert) pairs for every alert in every notification received."""
        return [
            (r["body"], a)
            for r in self.received()
            if isinstance(r["body"], dict)
            for a in r["body"].get("alerts", [])
        ]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--secret")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--statuses", default="")
    args = parser.parse_args()
    statuses = [int(s) for s in args.statuses.split(",") if s]
    serve(args.port, args.secret, args.out, statuses)


if __name__ == "__main__":
    main()
