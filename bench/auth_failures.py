"""The failed-authentication limiter: its cost per wrong token, its memory when full, and the issue's
probe (200 wrong bearer tokens, then 200 wrong sign-ins) against a real `storyloom run` on loopback.

    .venv/bin/python bench/auth_failures.py

Peer for the probe: the same run of valid-token requests from the same address, which must all pass.
"""

from __future__ import annotations

import sys
import tempfile
import time
import timeit
import tracemalloc
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from tests.support.server import running_server  # noqa: E402

from storyloom.api.auth_failures import FailedAuthLimiter  # noqa: E402
from storyloom.config import FailedAuthConfig  # noqa: E402

POLICY = FailedAuthConfig()
NOW = datetime(2026, 12, 2, tzinfo=UTC)


def addresses(count: int) -> list[str]:
    return [f"10.{i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(count)]


def limiter_cost(rounds: int = 200_000) -> float:
    """Microseconds per wrong token: one check and one recorded failure, over 5 times more clients than kept."""
    limiter, ips = FailedAuthLimiter(), addresses(POLICY.max_clients * 5)
    calls = iter(range(10**12))

    def one() -> None:
        ip = ips[next(calls) % len(ips)]
        limiter.retry_after(ip, NOW, POLICY)
        limiter.record_failure(ip, NOW, POLICY)

    return min(timeit.repeat(one, number=rounds, repeat=3)) / rounds * 1e6


def limiter_memory() -> tuple[int, float]:
    """(clients kept, MB, their address strings included) after failures from 5 times `max_clients`."""
    tracemalloc.start()
    limiter = FailedAuthLimiter()
    for i in range(POLICY.max_clients * 5):
        limiter.record_failure(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", NOW, POLICY)
    current, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return len(limiter), current / 1e6


def probe() -> str:
    with (
        tempfile.TemporaryDirectory() as data,
        running_server(Path(data), config={}) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        started = time.perf_counter()
        bearer = Counter(
            client.get("/api/alerts", headers={"Authorization": f"Bearer sl_{i}"}).status_code
            for i in range(200)
        )
        bearer_s = time.perf_counter() - started
        started = time.perf_counter()
        logins = Counter(client.get("/login", params={"token": f"sl_{i}"}).status_code for i in range(200))
        logins_s = time.perf_counter() - started
        valid = Counter(server.client.get("/api/alerts").status_code for _ in range(200))
    return (
        f"200 wrong bearer tokens: {dict(bearer)} in {bearer_s:.2f} s; "
        f"200 wrong sign-ins: {dict(logins)} in {logins_s:.2f} s; "
        f"200 valid-token requests from the same address: {dict(valid)}"
    )


def main() -> None:
    print(f"limiter: {limiter_cost():.2f} µs per wrong token (check + record)")
    kept, mb = limiter_memory()
    print(f"limiter: {kept} clients kept after {POLICY.max_clients * 5} addresses failed, {mb:.2f} MB")
    print(probe())


if __name__ == "__main__":
    main()
