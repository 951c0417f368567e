"""HTTP send: one rendered request POSTed over the shared pool, its answer classified, secrets scrubbed.

`send` does I/O and never raises for receiver trouble: it returns a `SendOutcome`; when to try again is
`delivery.retry`'s pure decision. `RateLimiter` is each receiver's token bucket.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Literal

import httpx

from storyloom.alerting.egress import EgressPolicy, EgressRefused, GuardedTransport, Resolver
from storyloom.alerting.receivers.base import ReceiverSpec, RenderedRequest
from storyloom.alerting.signing import HEADER_SIGNATURE
from storyloom.domain.durations import format_duration

OutcomeKind = Literal["delivered", "retry", "dead", "disable", "client_error"]

USER_AGENT = "Storyloom-Webhooks/1"
ERROR_BODY_MAX = 200  # characters of a failed response's body kept in the error
READ_MAX = 64 * 1024  # bytes of a response read at most: a receiver cannot make us buffer more
REDACTED = "<redacted>"


@dataclass(frozen=True)
class SendOutcome:
    """What one attempt came to. `error` is safe to store and show: no secret, signature or URL path."""

    kind: OutcomeKind
    status_code: int | None = None
    error: str | None = None
    retry_after: timedelta | None = None
    latency_ms: float = 0.0

    @property
    def delivered(self) -> bool:
        return self.kind == "delivered"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def make_client(
    egress: EgressPolicy | None = EgressPolicy(),
    *,
    max_connections: int = 100,
    max_keepalive_connections: int = 100,
    keepalive_expiry: float = 30.0,
    resolver: Resolver | None = None,
) -> httpx.AsyncClient:
    """The one pooled client every delivery shares. Redirects are not followed (a 3xx is not success,
    and following one could lead to an address the egress check never saw); environment proxies are
    ignored. With an `egress` policy every new connection is checked (pass None only in tests).
    """
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=max_keepalive_connections,
        keepalive_expiry=keepalive_expiry,
    )
    transport: httpx.AsyncBaseTransport = (
        GuardedTransport(egress, limits=limits, resolver=resolver)
        if egress is not None
        else httpx.AsyncHTTPTransport(limits=limits, trust_env=False)
    )
    return httpx.AsyncClient(
        transport=transport,
        follow_redirects=False,
        trust_env=False,
        timeout=httpx.Timeout(10.0),
        headers={"user-agent": USER_AGENT},
    )


def parse_retry_after(value: str | None, now: datetime) -> timedelta | None:
    """`Retry-After` as delay-seconds or an HTTP-date; None when absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    if text.isdigit():
        return timedelta(seconds=int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(when - now, timedelta(0))


def _secrets_of(spec: ReceiverSpec, request: RenderedRequest) -> list[str]:
    """Strings that must never appear in an error we keep."""
    found: list[str] = []
    if spec.secret:
        for token in spec.secret.split():
            found += [token, token.removeprefix("whsec_")]
    for token in request.headers.get(HEADER_SIGNATURE, "").split():
        found += [token, token.partition(",")[2]]
    if spec.type == "pagerduty" and spec.routing_key:
        found.append(spec.routing_key)
    found += [v for v in spec.headers.values()]
    try:
        path = httpx.URL(spec.url).raw_path.decode(errors="replace") if spec.url else ""
    except httpx.InvalidURL:
        path = ""
    found += [spec.url, path.split("?", 1)[0]]
    return sorted({s for s in found if len(s) >= 6}, key=len, reverse=True)


def scrub(text: str, spec: ReceiverSpec, request: RenderedRequest) -> str:
    """Remove secrets, signatures, integration keys and the URL path from a message."""
    for secret in _secrets_of(spec, request):
        text = text.replace(secret, REDACTED)
    return text


def _snippet(body: bytes) -> str:
    text = re.sub(r"\s+", " ", body.decode("utf-8", errors="replace")).strip()
    return text if len(text) <= ERROR_BODY_MAX else text[: ERROR_BODY_MAX - 1] + "…"


def classify(status: int, body: bytes, headers: httpx.Headers, now: datetime) -> SendOutcome:
    """The outcome of an HTTP answer (before latency and scrubbing)."""
    if 200 <= status < 300:
        return SendOutcome("delivered", status)
    detail = _snippet(body)
    error = f"HTTP {status}" + (f": {detail}" if detail else "")
    if status == 410:
        return SendOutcome("disable", status, f"{error} (the receiver says it is gone; it is disabled)")
    if status in (408, 429) or status >= 500:
        return SendOutcome("retry", status, error, parse_retry_after(headers.get("retry-after"), now))
    if 300 <= status < 400:
        return SendOutcome(
            "client_error",
            status,
            f"HTTP {status}: redirects are not followed; set the receiver url to the final address",
        )
    return SendOutcome("client_error", status, error)


async def send(
    client: httpx.AsyncClient,
    spec: ReceiverSpec,
    request: RenderedRequest,
    *,
    now: Callable[[], datetime] = _utcnow,
    clock: Callable[[], float] = time.perf_counter,
) -> SendOutcome:
    """POST `request` to `spec.url` within `spec.timeout` (overall) and classify the result.

    2xx delivered; 429, 408, 5xx, timeouts and connection errors retry; 410 disable; other 4xx and 3xx
    client_error (the policy retries once); an address the egress policy refuses is dead.
    """
    headers = {k.lower(): v for k, v in spec.headers.items()}
    headers.update({k.lower(): v for k, v in request.headers.items()})
    seconds = spec.timeout.total_seconds()
    started = clock()

    def done(outcome: SendOutcome) -> SendOutcome:
        error = scrub(outcome.error, spec, request) if outcome.error else None
        return SendOutcome(
            outcome.kind, outcome.status_code, error, outcome.retry_after, (clock() - started) * 1000
        )

    try:
        async with asyncio.timeout(seconds):
            async with client.stream(
                "POST",
                spec.url,
                content=request.body,
                headers=headers,
                timeout=httpx.Timeout(seconds),
                follow_redirects=False,
            ) as response:
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) >= READ_MAX:
                        break
                return done(classify(response.status_code, bytes(body[:READ_MAX]), response.headers, now()))
    except EgressRefused as exc:
        return done(SendOutcome("dead", error=str(exc)))
    except (TimeoutError, httpx.TimeoutException):
        return done(SendOutcome("retry", error=f"timed out after {format_duration(spec.timeout)}"))
    except httpx.UnsupportedProtocol as exc:
        return done(SendOutcome("dead", error=f"invalid receiver url: {exc}; use http:// or https://"))
    except httpx.TransportError as exc:
        return done(
            SendOutcome("retry", error=f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        )
    except httpx.InvalidURL as exc:
        return done(SendOutcome("dead", error=f"invalid receiver url: {exc}"))


class RateLimiter:
    """Token bucket for one receiver: at most `max_per_second` sends on average, bursts up to `burst`.

    0 means unlimited. Reservations are first come, first served; time comes from `clock` and waiting
    from `sleep`, both injectable.
    """

    def __init__(
        self,
        max_per_second: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if max_per_second < 0:
            raise ValueError("max_per_second cannot be negative (0 means unlimited)")
        self.rate = float(max_per_second)
        self.capacity = float(burst) if burst is not None else max(1.0, self.rate)
        self._clock = clock
        self._sleep = sleep
        self._tokens = self.capacity
        self._last = clock()

    @property
    def unlimited(self) -> bool:
        return self.rate == 0

    def reserve(self) -> float:
        """Take a token now; returns the seconds to wait before using it (0 = go)."""
        if self.unlimited:
            return 0.0
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.rate

    def release(self) -> None:
        """Give back a reserved token that was not used."""
        if not self.unlimited:
            self._tokens = min(self.capacity, self._tokens + 1)

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay <= 0:
            return
        try:
            await self._sleep(delay)
        except asyncio.CancelledError:
            self.release()
            raise
