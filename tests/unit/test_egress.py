from __future__ import annotations

import ipaddress
import socket
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from storyloom.alerting.egress import (
    NEVER_METADATA,
    EgressPolicy,
    EgressRefused,
    EgressUnresolved,
    GuardedTransport,
    Resolver,
    check_url,
    parse_ip,
    refusal,
    resolve_checked,
)

PUBLIC = "93.184.215.14"
STRICT = EgressPolicy(allow_loopback=False, allow_private=False)  # a hosted setup
OPEN = EgressPolicy(allow_loopback=True, allow_private=True)


def no_lookup(host: str, port: int) -> list[str]:
    raise AssertionError(f"{host} is a literal and must not be resolved")


def resolving_to(*addresses: str) -> Resolver:
    def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


def refused(url: str, policy: EgressPolicy | None = None, **kwargs: Any) -> str:
    with pytest.raises(EgressRefused) as info:
        check_url(url, policy or EgressPolicy(), **kwargs)
    return str(info.value)


def test_metadata_message_names_the_url_and_the_rule() -> None:
    message = refused("http://169.254.169.254/", OPEN, resolver=no_lookup)
    assert message == f"url http://169.254.169.254/ is refused: {NEVER_METADATA}"


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://169.254.1.1/",
        "http://user:pw@169.254.169.254:80/",
        "http://[fe80::1]/",
        "http://[fe80::1%25eth0]/",
        "http://[fd00:ec2::254]/",
        "http://100.100.100.200/",
        "http://0.0.0.0:8080/",
        "http://0/",
        "http://[::]/",
        "http://224.0.0.1/",
        "http://[ff02::1]/",
        "http://255.255.255.255/",
        "http://2852039166/",  # 169.254.169.254 as one decimal number
        "http://0xA9FEA9FE/",
        "http://169.254.43518/",
        "http://[::ffff:169.254.169.254]/",
        "http://[::ffff:a9fe:a9fe]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[2002:a9fe:a9fe::1]/",
        "http://metadata.google.internal/computeMetadata/v1/",
        "http://METADATA.google.internal./",
    ],
)
def test_never_allowed_even_with_everything_allowed(url: str) -> None:
    message = refused(url, OPEN, resolver=no_lookup)
    assert "never allowed" in message
    assert message.startswith(f"url {url} is refused: ")


@pytest.mark.parametrize(
    ("url", "hint"),
    [
        ("http://127.0.0.1:9000/hooks", "allow_loopback"),
        ("http://127.1/", "allow_loopback"),
        ("http://0x7f000001/", "allow_loopback"),
        ("http://[::1]/", "allow_loopback"),
        ("http://[::ffff:127.0.0.1]/", "allow_loopback"),
        ("http://localhost:8700/", "allow_loopback"),
        ("http://api.localhost/", "allow_loopback"),
        ("http://10.1.2.3/", "allow_private"),
        ("http://172.16.0.1/", "allow_private"),
        ("http://172.31.255.255/", "allow_private"),
        ("http://192.168.1.10/", "allow_private"),
        ("http://100.64.0.1/", "allow_private"),
        ("http://[fd12:3456::1]/", "allow_private"),
        ("http://[::ffff:10.0.0.1]/", "allow_private"),
        ("http://012.1/", "allow_private"),  # octal 10, then 0.0.1
    ],
)
def test_loopback_and_private_can_be_turned_off_and_the_message_says_how(url: str, hint: str) -> None:
    message = refused(url, STRICT, resolver=no_lookup)
    assert f"set alerting.egress.{hint}: true to allow it" in message
    only_this = EgressPolicy(allow_loopback=hint == "allow_loopback", allow_private=hint == "allow_private")
    check_url(url, only_this, resolver=resolving_to("127.0.0.1"))
    check_url(url, resolver=resolving_to("127.0.0.1"))  # self-hosted receivers: allowed by default


@pytest.mark.parametrize(
    "url",
    ["http://93.184.215.14/", "https://8.8.8.8:8443/x", "http://[2606:4700::1111]/", "http://172.32.0.1/"],
)
def test_public_literals_pass_without_a_lookup(url: str) -> None:
    check_url(url, resolver=no_lookup)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/x", "the scheme must be http or https"),
        ("file:///etc/passwd", "the scheme must be http or https"),
        ("gopher://127.0.0.1:6379/", "the scheme must be http or https"),
        ("http:///path", "it has no host"),
        ("http://example.com:99999/", "port 99999 is out of range"),
        ("http://256.1.1.1/", "not a valid"),
        ("http://1.2.3.4.5/", "not a valid"),
        ("http://%31%32%37.0.0.1/", "not a valid"),
        ("http://%6c%6fcalhost/", "not a valid host name"),
        ("http://0251.0376.0251.0376/", "not a valid"),  # httpx refuses dotted quads with leading zeros
    ],
)
def test_malformed_urls_say_what_is_wrong(url: str, message: str) -> None:
    assert message in refused(url, resolver=no_lookup)


def test_every_resolved_address_is_checked() -> None:
    check_url("https://hooks.example.com/x", resolver=resolving_to(PUBLIC, "2606:4700::1111"))
    message = refused("https://hooks.example.com/x", STRICT, resolver=resolving_to(PUBLIC, "10.0.0.7"))
    assert "hooks.example.com resolves to 10.0.0.7" in message and "allow_private" in message
    message = refused(
        "https://hooks.example.com/x",
        OPEN,
        resolver=resolving_to(PUBLIC, "::ffff:169.254.169.254"),
    )
    assert NEVER_METADATA in message


def test_resolution_failures_are_their_own_kind() -> None:
    def fail(host: str, port: int) -> list[str]:
        raise socket.gaierror(-2, "Name or service not known")

    with pytest.raises(EgressUnresolved, match="could not be resolved"):
        check_url("https://nowhere.example/", resolver=fail)
    with pytest.raises(EgressUnresolved, match="no address"):
        check_url("https://nowhere.example/", resolver=resolving_to())
    # Config checks may skip the lookup; literals and known names are still judged.
    check_url("https://nowhere.example/", resolve=False, resolver=fail)
    with pytest.raises(EgressRefused):
        check_url("http://metadata.google.internal/", OPEN, resolve=False)


def test_resolve_checked_returns_what_to_connect_to() -> None:
    policy = EgressPolicy(allow_loopback=True, allow_private=False)
    assert resolve_checked("hooks.example.com", 443, policy, resolving_to("127.0.0.1")) == ["127.0.0.1"]
    assert resolve_checked("0x7f.1", 80, policy, no_lookup) == ["127.0.0.1"]
    with pytest.raises(EgressRefused, match="allow_private"):
        resolve_checked("hooks.example.com", 443, policy, resolving_to("192.168.0.2"))


async def test_the_client_checks_again_when_it_connects() -> None:
    """DNS rebinding: the name passed the config check, then resolves to the metadata address."""
    answers = iter([[PUBLIC], ["169.254.169.254"]])

    def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    check_url("http://rebind.example/", resolver=rebinding)
    transport = GuardedTransport(OPEN, resolver=rebinding)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(EgressRefused, match=r"host rebind\.example is refused: .*never allowed"):
            await client.post("http://rebind.example/hook", content=b"{}")


async def test_the_client_refuses_numeric_host_spellings() -> None:
    transport = GuardedTransport(STRICT, resolver=no_lookup)
    async with httpx.AsyncClient(transport=transport) as client:
        for url in ("http://2852039166/", "http://0x7f.1/", "http://[::ffff:7f00:1]/"):
            with pytest.raises(EgressRefused):
                await client.get(url)


# --- address spellings (hypothesis) --------------------------------------------------------------

NEVER = [ipaddress.IPv4Network(n) for n in ("169.254.0.0/16", "0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4")]
OPT_IN = [
    ipaddress.IPv4Network(n)
    for n in ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
]


def addresses_in(networks: list[ipaddress.IPv4Network]) -> st.SearchStrategy[ipaddress.IPv4Address]:
    return st.sampled_from(networks).flatmap(
        lambda net: st.integers(int(net.network_address), int(net.broadcast_address)).map(
            ipaddress.IPv4Address
        )
    )


def _number(value: int, style: str) -> str:
    if style == "hex":
        return hex(value)
    if style == "HEX":
        return "0X" + format(value, "X")
    if style == "oct":
        return "0" + format(value, "o")
    return str(value)


@st.composite
def ipv4_spellings(draw: st.DrawFn, ip: ipaddress.IPv4Address) -> str:
    """Any form `inet_aton` accepts: 1-4 parts, the last one filling the remaining bytes."""
    raw = ip.packed
    parts_count = draw(st.integers(1, 4))
    head = list(raw[: parts_count - 1])
    tail = int.from_bytes(raw[parts_count - 1 :], "big")
    styles = st.sampled_from(["dec", "hex", "HEX", "oct"])
    return ".".join(_number(v, draw(styles)) for v in [*head, tail])


@st.composite
def ipv6_spellings(draw: st.DrawFn, ip: ipaddress.IPv4Address) -> str:
    form = draw(st.sampled_from(["mapped-dotted", "mapped-hex", "nat64", "6to4", "compat"]))
    hi, lo = int(ip) >> 16, int(ip) & 0xFFFF
    if form == "mapped-dotted":
        return f"::ffff:{ip}"
    if form == "mapped-hex":
        return f"::ffff:{hi:x}:{lo:x}"
    if form == "nat64":
        return f"64:ff9b::{hi:x}:{lo:x}"
    if form == "6to4":
        return f"2002:{hi:x}:{lo:x}::1"
    return f"::{hi:x}:{lo:x}"


@given(st.data(), addresses_in(NEVER))
def test_no_spelling_of_a_never_address_gets_through(data: st.DataObject, ip: ipaddress.IPv4Address) -> None:
    host = data.draw(st.one_of(ipv4_spellings(ip), ipv6_spellings(ip).map(lambda h: f"[{h}]")))
    # Refused for what it is, or (for spellings httpx itself rejects) as an invalid URL.
    with pytest.raises(EgressRefused, match=r"never allowed|not a valid"):
        check_url(f"http://{host}/", OPEN, resolver=no_lookup)


@given(st.data(), addresses_in(OPT_IN))
def test_no_spelling_of_a_loopback_or_private_address_gets_through(
    data: st.DataObject, ip: ipaddress.IPv4Address
) -> None:
    host = data.draw(st.one_of(ipv4_spellings(ip), ipv6_spellings(ip).map(lambda h: f"[{h}]")))
    with pytest.raises(EgressRefused, match=r"allow_loopback|allow_private|not a valid"):
        check_url(f"http://{host}/", STRICT, resolver=no_lookup)


@given(st.data(), st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address))
def test_our_ipv4_reading_agrees_with_inet_aton(data: st.DataObject, ip: ipaddress.IPv4Address) -> None:
    spelling = data.draw(ipv4_spellings(ip))
    assert parse_ip(spelling) == ip
    assert socket.inet_aton(spelling) == ip.packed


PUBLIC_NETS = [ipaddress.IPv4Network(n) for n in ("1.0.0.0/8", "8.0.0.0/7", "93.184.0.0/16", "203.0.0.0/8")]


@given(addresses_in(PUBLIC_NETS))
def test_public_addresses_pass_in_every_embedding(ip: ipaddress.IPv4Address) -> None:
    assert refusal(ip, EgressPolicy()) is None
    assert refusal(ipaddress.IPv6Address(f"::ffff:{ip}"), EgressPolicy()) is None
    assert refusal(ipaddress.IPv6Address(f"64:ff9b::{ip}"), EgressPolicy()) is None
