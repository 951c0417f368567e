"""`self_url`: how a server reaches itself (demo receiver, default `public_url`) from the address it binds."""

from __future__ import annotations

import pytest

from storyloom.alerting.egress import EgressPolicy, check_url
from storyloom.server import self_url


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("0.0.0.0", "http://127.0.0.1:8701"),
        ("::", "http://[::1]:8701"),
        ("127.0.0.1", "http://127.0.0.1:8701"),
        ("::1", "http://[::1]:8701"),
        ("192.168.1.5", "http://192.168.1.5:8701"),
        ("localhost", "http://localhost:8701"),
    ],
)
def test_wildcard_binds_are_reached_through_loopback(host: str, expected: str) -> None:
    assert self_url(host, 8701) == expected


@pytest.mark.parametrize("wildcard", ["0.0.0.0", "::"])
def test_the_egress_policy_lets_a_wildcard_server_deliver_to_itself(wildcard: str) -> None:
    check_url(
        f"{self_url(wildcard, 8701)}/api/demo/receiver", EgressPolicy(allow_private=False), resolve=False
    )
