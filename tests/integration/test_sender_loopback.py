"""Real HTTP over 127.0.0.1: render, sign, send, classify, and decide the next attempt."""

from __future__ import annotations

import asyncio
import base64
import json
import random
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from storyloom.alerting.delivery.retry import next_attempt
from storyloom.alerting.delivery.send import make_client, send
from storyloom.alerting.egress import EgressPolicy
from storyloom.alerting.receivers.base import ReceiverSpec, RenderedRequest, render_request
from storyloom.domain.alerts import Alert, Notification, fingerprint
from tests.support.receivers import (
    ReceivedRequest,
    ReceiverServer,
    Reply,
    pagerduty_events,
    slack_webhook,
    standard_webhook,
)

SECRET = "whsec_" + base64.b64encode(b"storyloom-test-secret-0123456789").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"storyloom-old-secret-0123456789!").decode()
PD_KEY = "0123456789abcdef0123456789abcdef"
LOOPBACK = EgressPolicy(allow_loopback=True)
HOSTED = EgressPolicy(allow_loopback=False, allow_private=False)


def alert(status: str = "firing", plan_id: str = "plan-1") -> Alert:
    labels = {
        "alert_id": "planner:phase-failed",
        "severity": "error",
        "source": "planner_runner",
        "plan_id": plan_id,
        "backlog_id": "scene-1-2",
        "task_id": "task-9",
        "phase": "scene_weaver",
    }
    now = datetime.now(UTC)
    return Alert(
        alert_id="planner:phase-failed",
        fingerprint=fingerprint(labels),
        status=status,
        severity="error",
        title="Planner phase failed",
        description="scene-1-2 failed 3 times",
        labels=labels,
        starts_at=now,
        ends_at=now if status == "resolved" else None,
        generated_at=now,
        runbook_url="http://127.0.0.1:8700/runbooks/planner:phase-failed",
        console_url="http://127.0.0.1:8700/alerts/x",
    )


def notification(*alerts: Alert) -> Notification:
    return Notification(
        notification_id="ntf_loopback_1",
        receiver="ops",
        group_key='{}:{plan_id="plan-1"}',
        group_labels={"plan_id": "plan-1"},
        alerts=alerts or (alert(),),
        environment="test",
        routing_key="fiction-ops",
        external_url="http://127.0.0.1:8700",
    )


def spec(url: str, receiver_type: str = "webhook", **kwargs: Any) -> ReceiverSpec:
    kwargs.setdefault("secret", SECRET)
    kwargs.setdefault("timeout", timedelta(seconds=5))
    return ReceiverSpec(name="ops", type=receiver_type, url=url, **kwargs)


def one(receiver: ReceiverSpec, attempt_at: datetime | None = None) -> RenderedRequest:
    (request,) = render_request(receiver, notification(), attempt_at or datetime.now(UTC))
    return request


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(LOOPBACK) as c:
        yield c


async def test_a_signed_webhook_is_verified_by_a_standard_webhooks_consumer(
    client: httpx.AsyncClient,
) -> None:
    with ReceiverServer(standard_webhook(SECRET)) as server:
        receiver = spec(server.url_for("/hooks/ops"))
        request = one(receiver)
        outcome = await send(client, receiver, request)
        assert (outcome.kind, outcome.status_code, outcome.error) == ("delivered", 204, None)
        assert outcome.latency_ms > 0
        (received,) = server.requests
        path, headers, body = received
        assert path == "/hooks/ops" and received.method == "POST"
        assert received.body == request.body
        assert headers["webhook-id"] == "ntf_loopback_1" and headers["content-type"] == "application/json"
        assert body["type"] == "storyloom.alerts" and body["alerts"][0]["labels"]["task_id"] == "task-9"


async def test_during_rotation_consumers_with_either_secret_accept(client: httpx.AsyncClient) -> None:
    with ReceiverServer(standard_webhook(OLD_SECRET)) as old, ReceiverServer(standard_webhook(SECRET)) as new:
        for server in (old, new):
            receiver = spec(server.url_for("/hook"), secret=f"{OLD_SECRET} {SECRET}")
            assert (await send(client, receiver, one(receiver))).kind == "delivered"


async def test_a_consumer_with_another_secret_refuses_and_the_error_hides_the_signature(
    client: httpx.AsyncClient,
) -> None:
    def echo(request: ReceivedRequest) -> Reply:
        return Reply(401, f"bad signature {request.headers['webhook-signature']} for {SECRET}")

    with ReceiverServer(echo) as server:
        receiver = spec(server.url_for("/hook"))
        request = one(receiver)
        outcome = await send(client, receiver, request)
        assert outcome.kind == "client_error" and outcome.status_code == 401
        assert outcome.error is not None and "<redacted>" in outcome.error
        signature = request.headers["webhook-signature"]
        for leaked in (signature, signature.partition(",")[2], SECRET, SECRET.removeprefix("whsec_")):
            assert leaked not in outcome.error


async def test_a_5xx_is_retried_with_the_same_id_and_a_fresh_signature(client: httpx.AsyncClient) -> None:
    with ReceiverServer(standard_webhook(SECRET), replies=[Reply(500, "database down")]) as server:
        receiver = spec(server.url_for("/hook"))
        first_at = datetime.now(UTC)
        first = await send(client, receiver, one(receiver, first_at))
        assert (first.kind, first.status_code, first.error) == ("retry", 500, "HTTP 500: database down")

        kind, at = next_attempt(
            first, 1, first_at, first_at, receiver.retry_schedule, receiver.retry_max_age, random.Random(1)
        )
        assert kind == "retry" and isinstance(at, datetime) and at > first_at

        second = await send(client, receiver, one(receiver, datetime.now(UTC)))
        assert second.kind == "delivered"
        ids = {r.headers["webhook-id"] for r in server.requests}
        assert ids == {"ntf_loopback_1"} and len(server.requests) == 2


async def test_429_retry_after_is_honoured(client: httpx.AsyncClient) -> None:
    with ReceiverServer(replies=[Reply(429, "slow down", {"Retry-After": "2"})]) as server:
        receiver = spec(server.url_for("/hook"), retry_schedule=(timedelta(0), timedelta(seconds=1)))
        outcome = await send(client, receiver, one(receiver))
        assert (outcome.kind, outcome.retry_after) == ("retry", timedelta(seconds=2))
        now = datetime.now(UTC)
        decision = next_attempt(
            outcome, 1, now, now, receiver.retry_schedule, receiver.retry_max_age, random.Random(3)
        )
        assert decision == ("retry", now + timedelta(seconds=2))


async def test_410_disables_the_receiver(client: httpx.AsyncClient) -> None:
    with ReceiverServer(lambda r: Reply(410, "channel_is_archived")) as server:
        receiver = spec(server.url_for("/hook"))
        outcome = await send(client, receiver, one(receiver))
        assert (outcome.kind, outcome.status_code) == ("disable", 410)
        assert "channel_is_archived" in (outcome.error or "")


async def test_400_is_retried_once_then_dead(client: httpx.AsyncClient) -> None:
    with ReceiverServer(lambda r: Reply(400, {"error": "unknown field"})) as server:
        receiver = spec(server.url_for("/hook"))
        start = datetime.now(UTC)
        outcomes = [await send(client, receiver, one(receiver)) for _ in range(2)]
        assert [o.kind for o in outcomes] == ["client_error", "client_error"]
        rng = random.Random(5)
        schedule, max_age = receiver.retry_schedule, receiver.retry_max_age
        assert next_attempt(outcomes[0], 1, start, start, schedule, max_age, rng)[0] == "retry"
        kind, reason = next_attempt(
            outcomes[1], 2, start, start, schedule, max_age, rng, previous_client_errors=1
        )
        assert kind == "dead" and "unknown field" in reason


async def test_a_slow_receiver_times_out_and_is_retried(client: httpx.AsyncClient) -> None:
    with ReceiverServer(lambda r: Reply(200, delay=30)) as server:
        receiver = spec(server.url_for("/slow"), timeout=timedelta(milliseconds=300))
        outcome = await send(client, receiver, one(receiver))
        assert (outcome.kind, outcome.status_code) == ("retry", None)
        assert outcome.error == "timed out after 300ms"
        assert 250 <= outcome.latency_ms < 5000


async def test_a_redirect_is_not_followed_and_not_success(client: httpx.AsyncClient) -> None:
    with ReceiverServer(lambda r: Reply(302, headers={"Location": "/elsewhere"})) as server:
        receiver = spec(server.url_for("/hook"))
        outcome = await send(client, receiver, one(receiver))
        assert outcome.kind == "client_error" and "redirects are not followed" in (outcome.error or "")
        assert [r.path for r in server.requests] == ["/hook"]


async def test_a_refused_connection_is_retried(client: httpx.AsyncClient) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        receiver = spec(f"http://127.0.0.1:{port}/hook")
        outcome = await send(client, receiver, one(receiver))
    assert outcome.kind == "retry" and outcome.error is not None and "ConnectError" in outcome.error


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/hook", "127.0.0.1/hook", ""])
async def test_a_url_that_cannot_work_is_dead_at_once(client: httpx.AsyncClient, url: str) -> None:
    receiver = spec(url)
    outcome = await send(client, receiver, one(receiver))
    assert outcome.kind == "dead" and "invalid receiver url" in (outcome.error or "")


async def test_a_hosted_policy_refuses_loopback_before_connecting() -> None:
    with ReceiverServer() as server:
        receiver = spec(server.url_for("/hook"))
        async with make_client(HOSTED) as strict:
            outcome = await send(strict, receiver, one(receiver))
        assert outcome.kind == "dead" and "allow_loopback" in (outcome.error or "")
        assert server.requests == []


async def test_a_host_name_is_resolved_checked_and_pinned() -> None:
    with ReceiverServer(standard_webhook(SECRET)) as server:
        receiver = spec(f"http://receiver.test:{server.port}/hook")
        async with make_client(LOOPBACK, resolver=lambda host, port: ["127.0.0.1"]) as pinned:
            assert (await send(pinned, receiver, one(receiver))).kind == "delivered"
        async with make_client(HOSTED, resolver=lambda host, port: ["127.0.0.1"]) as strict:
            outcome = await send(strict, receiver, one(receiver))
        assert outcome.kind == "dead" and "receiver.test resolves to 127.0.0.1" in (outcome.error or "")
        assert [r.headers["host"] for r in server.requests] == [f"receiver.test:{server.port}"]


async def test_the_pooled_client_carries_concurrent_deliveries(client: httpx.AsyncClient) -> None:
    with ReceiverServer(standard_webhook(SECRET)) as server:
        receiver = spec(server.url_for("/hook"))
        outcomes = await asyncio.gather(*(send(client, receiver, one(receiver)) for _ in range(40)))
        assert {o.kind for o in outcomes} == {"delivered"}
        assert len(server.wait_for(40)) == 40


async def test_pagerduty_events_are_accepted_one_per_alert(client: httpx.AsyncClient) -> None:
    with ReceiverServer(pagerduty_events) as server:
        receiver = spec(server.url_for("/v2/enqueue"), "pagerduty", routing_key=PD_KEY)
        firing, resolved = alert(plan_id="plan-1"), alert("resolved", plan_id="plan-2")
        requests = render_request(receiver, notification(firing, resolved), datetime.now(UTC))
        outcomes = [await send(client, receiver, r) for r in requests]
        assert [(o.kind, o.status_code) for o in outcomes] == [("delivered", 202), ("delivered", 202)]
        events = [body for _path, _headers, body in server.requests]
        assert [e["event_action"] for e in events] == ["trigger", "resolve"]
        assert [e["dedup_key"] for e in events] == [firing.fingerprint, resolved.fingerprint]


async def test_pagerduty_refuses_an_event_without_routing_key(client: httpx.AsyncClient) -> None:
    with ReceiverServer(pagerduty_events) as server:
        receiver = spec(server.url_for("/v2/enqueue"), "pagerduty", routing_key=None)
        outcome = await send(client, receiver, one(receiver))
        assert outcome.kind == "client_error" and outcome.status_code == 400
        assert "routing_key" in (outcome.error or "")


async def test_slack_accepts_our_blocks_and_refuses_malformed_ones(client: httpx.AsyncClient) -> None:
    with ReceiverServer(slack_webhook) as server:
        receiver = spec(server.url_for("/services/T0/B0/XYZSECRETPATH"), "slack", secret=None)
        requests = render_request(
            receiver, notification(alert(), alert("resolved", plan_id="p2")), datetime.now(UTC)
        )
        outcome = await send(client, receiver, requests[0])
        assert (outcome.kind, outcome.status_code) == ("delivered", 200)
        assert server.requests[-1].json["blocks"][0]["type"] == "header"

        malformed = {"text": "x", "blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "*no*"}}]}
        bad = RenderedRequest(json.dumps(malformed).encode(), {"content-type": "application/json"})
        outcome = await send(client, receiver, bad)
        assert (outcome.kind, outcome.error) == ("client_error", "HTTP 400: invalid_blocks")


async def test_alertmanager_webhook_body_arrives_as_v4(client: httpx.AsyncClient) -> None:
    with ReceiverServer(standard_webhook(SECRET, status=200)) as server:
        receiver = spec(server.url_for("/alertmanager"), "alertmanager_webhook")
        assert (await send(client, receiver, one(receiver))).kind == "delivered"
        (_path, _headers, body) = server.requests[0]
        assert body["version"] == "4" and body["alerts"][0]["endsAt"] == "0001-01-01T00:00:00Z"
