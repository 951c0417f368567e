"""Failed sign-ins and bearer tokens, limited per client address: a small token bucket each, bounded in memory.

Each client starts with `burst` allowed failures and gets one back every `refill_every`; a client with none
left is answered 429 until the next one is back. Only failures spend allowance, so a valid token always
works, whatever its address has been doing.
"""

from __future__ import annotations

import ipaddress
import math
import threading
from collections import OrderedDict
from datetime import datetime

import structlog

from storyloom.config import FailedAuthConfig

log = structlog.get_logger(__name__)


def client_key(host: str | None) -> str:
    """The limited unit: an IPv4 address, or an IPv6 /64 (one host usually holds the whole /64)."""
    if not host:
        return "unknown"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class FailedAuthLimiter:
    """Per-client failure allowance; at most `max_clients` clients are remembered (least recent dropped)."""

    def __init__(self) -> None:
        self._allowance: OrderedDict[str, tuple[float, datetime]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._allowance)

    def _left(self, client: str, now: datetime, policy: FailedAuthConfig) -> float:
        entry = self._allowance.get(client)
        if entry is None:
            return float(policy.burst)
        left, since = entry
        refilled = max((now - since).total_seconds(), 0.0) / policy.refill_every.total_seconds()
        return min(float(policy.burst), left + refilled)

    def retry_after(self, client: str, now: datetime, policy: FailedAuthConfig) -> int | None:
        """Whole seconds until `client` may fail again, or None while it has allowance left."""
        with self._lock:
            left = self._left(client, now, policy)
        if left >= 1:
            return None
        return max(1, math.ceil((1 - left) * policy.refill_every.total_seconds()))

    def record_failure(self, client: str, now: datetime, policy: FailedAuthConfig) -> None:
        with self._lock:
            left = self._left(client, now, policy) - 1
            self._allowance[client] = (left, now)
            self._allowance.move_to_end(client)
            while len(self._allowance) > policy.max_clients:
                self._allowance.popitem(last=False)
        if left < 1:
            log.warning("failed authentications rate limited", client=client, burst=policy.burst)
