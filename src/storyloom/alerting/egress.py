"""Where webhooks may go: refuse link-local and cloud metadata always, loopback and private hosts on request.

Self-hosted receivers usually live on loopback or a private network, so both are allowed by default
(`DEFAULT_EGRESS`, the single source of the `alerting.egress` defaults); a hosted setup turns them off.

Two checks use the same rules. `check_url` runs when a receiver is configured and says what to fix.
`GuardedNetworkBackend` runs inside the HTTP client at every new connection: it resolves the host once,
checks every address, and connects only to an address it checked, so a DNS answer that changes between
the config check and the send (DNS rebinding) cannot reach a refused address.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import typing
from collections.abc import Callable, Iterable
from urllib.parse import unquote

import anyio.to_thread
import httpcore
import httpx

from storyloom.domain.egress import DEFAULT_EGRESS, EgressPolicy

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Iterable[str]]
"""`(host, port) -> addresses`; the default is `socket.getaddrinfo`. Tests inject fakes."""

NEVER_METADATA = "link-local and cloud metadata addresses are never allowed"
NEVER_UNSPECIFIED = "unspecified addresses (0.0.0.0, ::) are never allowed"
NEVER_MULTICAST = "multicast addresses are never allowed"
NEVER_RESERVED = "reserved and broadcast addresses are never allowed"
LOOPBACK_HINT = "set alerting.egress.allow_loopback: true to allow it"
PRIVATE_HINT = "set alerting.egress.allow_private: true to allow it"

METADATA_HOSTS = frozenset(
    {"metadata.google.internal", "metadata.goog", "metadata", "instance-data", "instance-data.ec2.internal"}
)
_N = ipaddress.ip_network
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2")
)
LINK_LOCAL = (_N("169.254.0.0/16"), _N("fe80::/10"))
UNSPECIFIED = (_N("0.0.0.0/8"), _N("::/128"))
MULTICAST = (_N("224.0.0.0/4"), _N("ff00::/8"))
RESERVED = (_N("240.0.0.0/4"),)  # includes 255.255.255.255
LOOPBACK = (_N("127.0.0.0/8"), _N("::1/128"))
PRIVATE = (
    _N("10.0.0.0/8"),
    _N("172.16.0.0/12"),
    _N("192.168.0.0/16"),
    _N("100.64.0.0/10"),  # carrier-grade NAT, also home of Alibaba's metadata address
    _N("198.18.0.0/15"),  # benchmarking range, used by fake-IP DNS of local proxies
    _N("fc00::/7"),
    _N("fec0::/10"),  # deprecated site-local
)
NAT64 = _N("64:ff9b::/96")

_NUMBER = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+")


class EgressRefused(Exception):
    """A receiver address that Storyloom will not send to; the message says what to change."""


class EgressUnresolved(EgressRefused):
    """The host did not resolve. At send time this is a connection failure worth retrying."""


def system_resolver(host: str, port: int) -> list[str]:
    """Every address `socket.getaddrinfo` gives for a TCP connection, in its order."""
    seen: dict[str, None] = {}
    for _family, _type, _proto, _canon, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        seen.setdefault(str(sockaddr[0]), None)
    return list(seen)


def _parse_ipv4_loose(host: str) -> ipaddress.IPv4Address | None:
    """The forms `inet_aton` accepts: 1 to 4 parts, each decimal, octal (0…) or hex (0x…)."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_NUMBER.fullmatch(p) for p in parts):
        return None
    values: list[int] = []
    for part in parts:
        if part[:2].lower() == "0x":
            values.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part.startswith("0"):
            if not set(part) <= set("01234567"):
                return None
            values.append(int(part, 8))
        else:
            values.append(int(part))
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (5 - len(values)):
        return None
    number = last
    for index, value in enumerate(head):
        number += value << (8 * (3 - index))
    return ipaddress.IPv4Address(number)


def _ends_in_number(host: str) -> bool:
    """A host whose last label is numeric is an IPv4 address or invalid (WHATWG URL rule); never a name."""
    return bool(_NUMBER.fullmatch(host.rsplit(".", 1)[-1]))


def parse_ip(host: str) -> IPAddress | None:
    """The address a host literal stands for (any IPv4 spelling, bracketed or zoned IPv6), else None.

    Raises ValueError for a host that looks like an address but is not a valid one.
    """
    text = host.strip().lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        address = unquote(text).split("%", 1)[0]
        try:
            return ipaddress.IPv6Address(address)
        except ValueError:
            raise ValueError(f"{host} is not a valid IPv6 address") from None
    text = text.removesuffix(".")
    if not text or not _ends_in_number(text):
        return None
    parsed = _parse_ipv4_loose(text)
    if parsed is None:
        raise ValueError(f"{host} is not a valid IPv4 address")
    return parsed


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """An IPv4 address an IPv6 one carries (mapped, compatible, 6to4, NAT64, Teredo client)."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in NAT64 or (int(ip) >> 32 == 0 and int(ip) > 1):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _in(ip: IPAddress, networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    return any(ip.version == net.version and ip in net for net in networks)


def refusal(ip: IPAddress, policy: EgressPolicy) -> str | None:
    """Why `ip` may not be reached under `policy` (a sentence ending in what to do), or None if it may."""
    candidates: list[IPAddress] = [ip]
    if isinstance(ip, ipaddress.IPv6Address) and (embedded := _embedded_ipv4(ip)) is not None:
        candidates.append(embedded)
    for addr in candidates:
        if addr in METADATA_ADDRESSES or _in(addr, LINK_LOCAL):
            return NEVER_METADATA
        if _in(addr, UNSPECIFIED):
            return NEVER_UNSPECIFIED
        if _in(addr, MULTICAST):
            return NEVER_MULTICAST
        if _in(addr, RESERVED):
            return NEVER_RESERVED
    for addr in candidates:
        if not policy.allow_loopback and _in(addr, LOOPBACK):
            return f"{ip} is a loopback address; {LOOPBACK_HINT}"
        if not policy.allow_private and _in(addr, PRIVATE):
            return f"{ip} is a private address; {PRIVATE_HINT}"
    return None


def _is_localhost(host: str) -> bool:
    return host == "localhost" or host.endswith(".localhost")


def resolve_checked(
    host: str, port: int, policy: EgressPolicy, resolver: Resolver | None = None, *, resolve: bool = True
) -> list[str]:
    """The addresses to connect to for `host`, every one checked; raises EgressRefused (or EgressUnresolved).

    Call this right before connecting and connect only to what it returns (DNS rebinding defence).
    With `resolve=False` names are not looked up (config checks without network); the result is then [].
    """
    name = host.strip().lower()
    try:
        literal = parse_ip(name)
    except ValueError as exc:
        raise EgressRefused(f"{exc}; use a host name or a dotted IP address") from None
    if literal is not None:
        if (reason := refusal(literal, policy)) is not None:
            raise EgressRefused(reason)
        return [str(literal)]
    name = name.removesuffix(".")
    if not name or "%" in name or "/" in name or "\\" in name:
        raise EgressRefused(f"{host!r} is not a valid host name")
    if name in METADATA_HOSTS:
        raise EgressRefused(f"{name} is a cloud metadata host: {NEVER_METADATA}")
    if _is_localhost(name) and not policy.allow_loopback:
        raise EgressRefused(f"{name} is a loopback name; {LOOPBACK_HINT}")
    if not resolve:
        return []
    try:
        addresses = list((resolver or system_resolver)(name, port))
    except (OSError, UnicodeError) as exc:
        raise EgressUnresolved(f"{name} could not be resolved ({exc}); check the host name") from None
    if not addresses:
        raise EgressUnresolved(f"{name} resolved to no address; check the host name")
    for address in addresses:
        try:
            ip = parse_ip(address)
        except ValueError:
            ip = None
        if ip is None:
            raise EgressRefused(f"{name} resolved to {address!r}, which is not an IP address")
        if (reason := refusal(ip, policy)) is not None:
            raise EgressRefused(f"{name} resolves to {ip}: {reason}")
    return addresses


def check_url(
    url: str,
    policy: EgressPolicy = DEFAULT_EGRESS,
    *,
    resolver: Resolver | None = None,
    resolve: bool = True,
) -> None:
    """Refuse a receiver URL Storyloom must not send to; EgressRefused's message says what to fix.

    Host names are resolved (with `resolver`, default `socket.getaddrinfo`) and every address checked;
    EgressUnresolved (a subclass) means the name did not resolve. `resolve=False` checks literals only.
    """
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise EgressRefused(f"url {url} is refused: it is not a valid URL ({exc})") from None
    if parsed.scheme not in ("http", "https"):
        raise EgressRefused(f"url {url} is refused: the scheme must be http or https")
    if not parsed.host:
        raise EgressRefused(
            f"url {url} is refused: it has no host; write it like https://hooks.example.com/path"
        )
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if not 0 < port < 65536:
        raise EgressRefused(f"url {url} is refused: port {port} is out of range 1-65535")
    try:
        resolve_checked(parsed.host, port, policy, resolver, resolve=resolve)
    except EgressUnresolved as exc:
        raise EgressUnresolved(f"url {url} is refused: {exc}") from None
    except EgressRefused as exc:
        raise EgressRefused(f"url {url} is refused: {exc}") from None


class GuardedNetworkBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that checks, then connects to, the very addresses it resolved.

    Refusals raise EgressRefused (not an httpx error: it is not worth retrying); names that do not
    resolve raise httpcore.ConnectError, which httpx turns into httpx.ConnectError (retried).
    """

    MAX_ADDRESSES = 4

    def __init__(
        self,
        policy: EgressPolicy,
        resolver: Resolver | None = None,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self.policy = policy
        self.resolver = resolver
        self._inner = inner or httpcore.AnyIOBackend()

    async def _addresses(self, host: str, port: int) -> list[str]:
        try:
            is_name = parse_ip(host) is None
        except ValueError:
            is_name = False  # a malformed literal: resolve_checked refuses it without a lookup
        if not is_name:
            return resolve_checked(host, port, self.policy, self.resolver)
        return await anyio.to_thread.run_sync(resolve_checked, host, port, self.policy, self.resolver)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            addresses = await self._addresses(host, port)
        except EgressUnresolved as exc:
            raise httpcore.ConnectError(str(exc)) from None
        except EgressRefused as exc:
            raise EgressRefused(f"host {host} is refused: {exc}") from None
        error: Exception = httpcore.ConnectError(f"no address to connect to for {host}")
        for address in addresses[: self.MAX_ADDRESSES]:
            try:
                return await self._inner.connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc
        raise error

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise EgressRefused("unix sockets are never allowed for receivers")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's pooled transport over a GuardedNetworkBackend; no proxies from the environment.

    `connector` is the backend that opens the checked connections (default: anyio's).
    """

    def __init__(
        self,
        policy: EgressPolicy,
        *,
        limits: httpx.Limits | None = None,
        resolver: Resolver | None = None,
        connector: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        limits = limits or httpx.Limits(
            max_connections=100, max_keepalive_connections=20, keepalive_expiry=30
        )
        super().__init__(limits=limits, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedNetworkBackend(policy, resolver, connector),
        )
