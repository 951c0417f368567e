"""Egress is checked again at send time: a receiver name that passed the config check and then resolves
to a link-local or metadata address (DNS rebinding) is refused by the dispatcher without connecting."""

from __future__ import annotations

import typing

import httpcore
import httpx
import pytest

from storyloom.alerting.delivery.worker import DeliveryDispatcher
from storyloom.alerting.egress import EgressPolicy, GuardedTransport, check_url
from storyloom.store.db import Database
from tests.support.deliveries import SECRET, SECRET_ENV, delivery, enqueue, receiver, runtime, wall_clock
from tests.support.receivers import ReceiverServer


class RecordingConnector(httpcore.AsyncNetworkBackend):
    """The real network backend, recording every address a connection is opened to."""

    def __init__(self) -> None:
        self.inner = httpcore.AnyIOBackend()
        self.connected: list[tuple[str, int]] = []

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        self.connected.append((host, port))
        return await self.inner.connect_tcp(host, port, timeout, local_address, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class SwitchingResolver:
    """A DNS answer that the test changes between the config check and the send."""

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        return [self.answer]


@pytest.mark.parametrize("rebound_to", ["169.254.169.254", "169.254.10.1", "fe80::1", "fd00:ec2::254"])
async def test_a_name_rebound_to_link_local_or_metadata_is_refused_at_send_time_without_connecting(
    db: Database, monkeypatch: pytest.MonkeyPatch, rebound_to: str
) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)
    with ReceiverServer() as server:
        url = f"http://hooks.rebind.test:{server.port}/hook"
        rt = runtime(db, wall_clock(), receiver("ops", url))
        resolver = SwitchingResolver("127.0.0.1")
        check_url(url, rt.config.alerting.egress.policy(), resolver=resolver)  # passes: loopback is allowed
        connector = RecordingConnector()

        def client(policy: EgressPolicy) -> httpx.AsyncClient:
            transport = GuardedTransport(policy, resolver=resolver, connector=connector)
            return httpx.AsyncClient(transport=transport, follow_redirects=False)

        async def dispatch_one() -> dict[str, typing.Any]:
            delivery_id = enqueue(rt, "ops")
            dispatcher = DeliveryDispatcher(rt, client_factory=client)
            try:
                assert await dispatcher.run_once() == 1
            finally:
                await dispatcher.aclose()
            return delivery(rt, delivery_id)

        resolver.answer = rebound_to
        refused = await dispatch_one()
        assert refused["status"] == "dead"
        assert f"hooks.rebind.test resolves to {rebound_to}" in refused["last_error"]
        assert "never allowed" in refused["last_error"]
        assert connector.connected == [] and server.requests == []

        resolver.answer = "127.0.0.1"  # the same path connects, to the address it checked, when allowed
        delivered = await dispatch_one()
        assert delivered["status"] == "delivered", delivered["last_error"]
        assert connector.connected == [("127.0.0.1", server.port)]
        assert len(server.requests) == 1
        assert resolver.asked == ["hooks.rebind.test"] * 3
