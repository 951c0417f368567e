"""Alert latency: from the transaction that fires an alert to its signed webhook's arrival on loopback.

Storyloom runs its notifier and delivery dispatcher in-process against a SQLite file, with
`group_wait: 0s` and `group_by: ['...']` (every alert its own notification). The peer, run side by side
when Debian's `prometheus-alertmanager` is installed, is Alertmanager 0.25 with the same routing: the
time from `POST /api/v2/alerts` to its webhook's arrival. Both first send 20 warm-up alerts (a fresh
process's connection pool, egress checks and caches), reported apart, then the measured ones.

    .venv/bin/python bench/alert_latency.py --alerts 300
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storyloom.alerting.publish import AlertSignal, fire  # noqa: E402
from storyloom.clock import SystemClock  # noqa: E402
from storyloom.config import parse_config  # noqa: E402
from storyloom.engine.loops import worker_loops  # noqa: E402
from storyloom.logs import configure_logging  # noqa: E402
from storyloom.runtime import Runtime  # noqa: E402
from storyloom.store.db import Database  # noqa: E402
from storyloom.store.migrate import upgrade  # noqa: E402


class Arrivals:
    """A loopback webhook receiver recording when each `seq` label arrived."""

    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        self.event = threading.Condition()
        arrivals = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                now = time.perf_counter()
                with arrivals.event:
                    for alert in body.get("alerts", []):
                        seq = alert.get("labels", {}).get("seq")
                        if seq is not None and alert.get("status") == "firing":
                            arrivals.times.setdefault(seq, now)
                    arrivals.event.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                return

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the default 5 drops SYNs of a concurrent batch: a 1 s retransmit

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait_for(self, seqs: Collection[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self.event:
            while any(s not in self.times for s in seqs) and time.monotonic() < deadline:
                self.event.wait(0.5)


WARMUP = 20  # the first alerts also pay for the HTTP pool, egress checks and SQLite caches: reported apart


def drive(
    label: str, send: Callable[[str], None], arrivals: Arrivals, count: int, interval: float
) -> list[float]:
    """Send WARMUP alerts and wait for them, then `count` measured ones; print both, return the measured."""
    warm = _send_all(send, [f"w{n}" for n in range(WARMUP)], interval)
    arrivals.wait_for(warm, timeout=60)
    sent = _send_all(send, [str(n) for n in range(count)], interval)
    arrivals.wait_for(sent, timeout=60)
    cold = _latencies(warm, arrivals)
    if cold:
        print(f"{label:>12}: warm-up   first alert {cold[0]:.1f} ms | worst of {WARMUP} {max(cold):.1f} ms")
    latencies = sorted(_latencies(sent, arrivals))
    if not latencies:
        print(f"{label:>12}: nothing arrived")
        return []
    print(
        f"{label:>12}: {len(latencies)}/{len(sent)} arrived | p50 {statistics.median(latencies):.1f} ms | "
        f"p99 {p99(latencies):.1f} ms | max {latencies[-1]:.1f} ms"
    )
    return latencies


def _send_all(send: Callable[[str], None], seqs: list[str], interval: float) -> dict[str, float]:
    sent: dict[str, float] = {}
    for seq in seqs:
        sent[seq] = time.perf_counter()
        send(seq)
        time.sleep(interval)
    return sent


def _latencies(sent: dict[str, float], arrivals: Arrivals) -> list[float]:
    """Milliseconds from send to arrival, in send order, for the alerts that arrived."""
    return [(arrivals.times[s] - t) * 1000 for s, t in sent.items() if s in arrivals.times]


def p99(sorted_latencies: list[float]) -> float:
    return sorted_latencies[min(len(sorted_latencies) - 1, int(len(sorted_latencies) * 0.99))]


def run_storyloom(count: int, interval: float) -> list[float]:
    arrivals = Arrivals()
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    os.environ["BENCH_WEBHOOK_SECRET"] = secret
    config = parse_config(
        {
            "alerting": {
                "receivers": [{"name": "bench", "url": arrivals.url, "secret_env": "BENCH_WEBHOOK_SECRET"}],
                "route": {
                    "receiver": "bench",
                    "group_by": ["..."],
                    "group_wait": "0s",
                    "group_interval": "1m",
                },
            },
        }
    )
    folder = Path(tempfile.mkdtemp())
    rt = Runtime(config=config, db=Database(f"sqlite:///{folder / 'storyloom.db'}"), clock=SystemClock())
    upgrade(rt.db)
    loops = [factory(rt) for factory in worker_loops()]
    for loop in loops:
        loop.start()

    def send(seq: str) -> None:
        with rt.db.begin() as conn:
            fire(
                conn,
                AlertSignal("tool:failed", {"seq": seq, "plan_id": "plan_bench"}, "bench"),
                rt.clock.now(),
            )

    try:
        return drive("storyloom", send, arrivals, count, interval)
    finally:
        for loop in reversed(loops):
            loop.stop()
        shutil.rmtree(folder, ignore_errors=True)


ALERTMANAGER_ROUTE = {
    "receiver": "bench",
    "group_by": ["..."],
    "group_wait": "0s",
    "group_interval": "1m",
}


def alertmanager_binary() -> str | None:
    return shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")


@contextmanager
def alertmanager(binary: str, receiver_url: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Alertmanager with the bench route (every alert its own group, no wait) to one webhook receiver;
    yields its base URL and process, and stops it after."""
    folder = Path(tempfile.mkdtemp())
    port = free_port()
    (folder / "am.yml").write_text(
        json.dumps(
            {
                "route": ALERTMANAGER_ROUTE,
                "receivers": [
                    {"name": "bench", "webhook_configs": [{"url": receiver_url, "send_resolved": False}]}
                ],
            }
        )
    )
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={folder / 'am.yml'}",
            f"--storage.path={folder}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/-/ready")
        yield base, proc
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def run_alertmanager(count: int, interval: float) -> list[float]:
    binary = alertmanager_binary()
    if binary is None:
        print("   alertmanager: not installed (apt-get install prometheus-alertmanager) — peer skipped")
        return []
    arrivals = Arrivals()
    with alertmanager(binary, arrivals.url) as (base, _):

        def send(seq: str) -> None:
            body = json.dumps([{"labels": {"alertname": "bench", "seq": seq}}]).encode()
            request = urllib.request.Request(
                f"{base}/api/v2/alerts",
                data=body,
                method="POST",
                headers={"Content-Type": "application/json"},
            )
            urllib.request.urlopen(request, timeout=5).read()

        return drive("alertmanager", send, arrivals, count, interval)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_http(url: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alerts", type=int, default=300)
    parser.add_argument("--interval", type=float, default=0.01, help="seconds between alerts")
    args = parser.parse_args()
    configure_logging(logging.WARNING)
    ours = run_storyloom(args.alerts, args.interval)
    peer = run_alertmanager(args.alerts, args.interval)
    if ours:
        print(
            f"target p99 < 100 ms after warm-up: {'met' if p99(ours) < 100 else 'NOT met'} ({p99(ours):.1f} ms)"
        )
    if ours and peer:
        print(f"ratio storyloom/alertmanager p50: {statistics.median(ours) / statistics.median(peer):.2f}x")


if __name__ == "__main__":
    main()
