"""The delivery dispatcher over a real database and real loopback receivers: sign, send, retry, disable,
dead → `delivery:failing`, rate limits, and concurrent dispatchers that never send a delivery twice.

Time is a FrozenClock at the real time (receivers verify `webhook-timestamp` against their own clock);
tests move it and call `run_once`, so nothing sleeps."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest
import standardwebhooks
import structlog
from sqlalchemy import func, select, update

from storyloom import signals
from storyloom.alerting import publish
from storyloom.alerting.delivery import metrics as metrics_delivery
from storyloom.alerting.delivery.queue import DISPATCH_CHANNEL
from storyloom.alerting.delivery.receiver_state import FAILURE_THRESHOLD
from storyloom.alerting.delivery.record import Result
from storyloom.alerting.delivery.send import RateLimiter, SendOutcome
from storyloom.alerting.delivery.worker import SELF_SKIP_REASON, DeliveryDispatcher
from storyloom.alerting.notification import notification_from_json
from storyloom.alerting.notifier import Notifier
from storyloom.alerting.publish import AlertSignal
from storyloom.alerting.receivers import alertmanager_webhook, webhook
from storyloom.alerting.setup import build_alerting
from storyloom.clock import FrozenClock
from storyloom.domain.alerts import FIRING, RESOLVED
from storyloom.engine.loops import worker_loops
from storyloom.runtime import Runtime
from storyloom.services import deliveries as delivery_service
from storyloom.services.actors import Actor
from storyloom.store.db import Database
from storyloom.store.tables import deliveries, delivery_attempts
from tests.support.deliveries import (
    PD_KEY,
    SECRET,
    SECRET_ENV,
    PrivateReceiver,
    attempts,
    delivery,
    enqueue,
    failing_alerts,
    make_alert,
    receiver,
    receiver_state,
    runtime,
    wall_clock,
)
from tests.support.receivers import (
    ReceivedRequest,
    Reply,
    pagerduty_events,
    slack_webhook,
    standard_webhook,
)

S = timedelta(seconds=1)
OPERATOR = Actor(name="ops-person", actor_id="tok_1", role="operator")


@pytest.fixture
def clock() -> FrozenClock:
    return wall_clock()


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, SECRET)


@pytest.fixture
def server() -> Iterator[PrivateReceiver]:
    with PrivateReceiver(standard_webhook(SECRET)) as srv:
        yield srv


@pytest.fixture
def rt(db: Database, clock: FrozenClock, server: PrivateReceiver) -> Runtime:
    return runtime(db, clock, receiver("ops", server.url_for("/hooks/ops")))


async def run(dispatcher: DeliveryDispatcher, passes: int = 1) -> int:
    total = 0
    for _ in range(passes):
        total += await dispatcher.run_once()
    return total


def verify(request: ReceivedRequest) -> Any:
    return standardwebhooks.Webhook(SECRET).verify(request.body, request.headers)


def metric(receiver_name: str, result: str) -> float:
    value = metrics_delivery.REGISTRY.get_sample_value(
        "storyloom_notifications_total", {"receiver": receiver_name, "result": result}
    )
    return value or 0.0


# --- one delivery -----------------------------------------------------------------------------------


async def test_a_pending_delivery_is_signed_sent_and_marked_delivered(
    rt: Runtime, server: PrivateReceiver, clock: FrozenClock
) -> None:
    before = metric("ops", "delivered")
    delivery_id = enqueue(rt, "ops")
    row = delivery(rt, delivery_id)
    dispatcher = DeliveryDispatcher(rt)
    try:
        assert await dispatcher.run_once() == 1
        assert await dispatcher.run_once() == 0
    finally:
        await dispatcher.aclose()

    [request] = server.requests
    assert request.path == "/hooks/ops"
    assert verify(request) == request.json  # the standardwebhooks library accepts our signature
    assert request.headers["webhook-id"] == row["webhook_id"]
    assert request.headers["webhook-timestamp"] == str(int(clock.now().timestamp()))
    assert request.headers["content-type"] == "application/json"
    spec = rt.alerting.receivers["ops"]
    assert request.json == webhook.payload(spec, notification_from_json(row["notification"]))
    assert request.json["receiver"] == "ops" and request.json["routing_key"] == "fiction-ops"

    done = delivery(rt, delivery_id)
    assert done["status"] == "delivered" and done["delivered_at"] == clock.now()
    assert done["attempts"] == 1 and done["last_status_code"] == 204 and done["latency_ms"] > 0
    assert done["claimed_by"] is None and done["next_attempt_at"] is None
    [attempt] = attempts(rt, delivery_id)
    assert attempt["outcome"] == "delivered" and attempt["status_code"] == 204 and attempt["attempt"] == 1
    assert metric("ops", "delivered") == before + 1
    assert metrics_delivery.REGISTRY.get_sample_value(
        "storyloom_notification_latency_seconds_count", {"receiver": "ops"}
    )


async def test_500_then_200_retries_on_the_schedule_with_the_same_webhook_id(
    rt: Runtime, server: PrivateReceiver, clock: FrozenClock
) -> None:
    server.script(Reply(500, "database is down"))
    delivery_id = enqueue(rt, "ops")
    start = clock.now()
    dispatcher = DeliveryDispatcher(rt)
    try:
        assert await dispatcher.run_once() == 1
        failed = delivery(rt, delivery_id)
        assert failed["status"] == "failed" and failed["attempts"] == 1 and failed["last_status_code"] == 500
        assert "HTTP 500: database is down" in failed["last_error"]
        # schedule[1] = 10s, with ±20% jitter
        assert start + 8 * S <= failed["next_attempt_at"] <= start + 12 * S
        assert await dispatcher.run_once() == 0  # not due yet
        clock.advance(13 * S)
        assert await dispatcher.run_once() == 1
    finally:
        await dispatcher.aclose()

    first, second = server.requests
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == failed["webhook_id"]
    assert int(second.headers["webhook-timestamp"]) - int(first.headers["webhook-timestamp"]) == 13
    assert first.body == second.body
    verify(first)
    verify(second)  # re-signed for its own timestamp
    assert first.headers["webhook-signature"] != second.headers["webhook-signature"]
    done = delivery(rt, delivery_id)
    assert done["status"] == "delivered" and done["attempts"] == 2 and done["first_attempt_at"] == start
    assert [a["outcome"] for a in attempts(rt, delivery_id)] == ["retry", "delivered"]


async def test_retry_after_is_honoured(rt: Runtime, server: PrivateReceiver, clock: FrozenClock) -> None:
    server.script(Reply(429, headers={"Retry-After": "120"}))
    delivery_id = enqueue(rt, "ops")
    dispatcher = DeliveryDispatcher(rt)
    try:
        await dispatcher.run_once()
    finally:
        await dispatcher.aclose()
    row = delivery(rt, delivery_id)
    assert row["status"] == "failed" and row["last_status_code"] == 429
    assert row["next_attempt_at"] == clock.now() + 120 * S  # longer than the 10s the schedule says


async def test_max_age_caps_the_schedule_then_the_delivery_goes_dead(
    db: Database, clock: FrozenClock, server: PrivateReceiver
) -> None:
    rt = runtime(
        db,
        clock,
        receiver("ops", server.url_for("/h"), retry={"schedule": ["0s", "1h", "1h"], "max_age": "10m"}),
    )
    server.script(Reply(503), Reply(503))
    delivery_id = enqueue(rt, "ops")
    start = clock.now()
    dispatcher = DeliveryDispatcher(rt)
    try:
        await dispatcher.run_once()
        assert delivery(rt, delivery_id)["next_attempt_at"] == start + timedelta(minutes=10)
        clock.advance(timedelta(minutes=10))
        # The receiver checks timestamps against the real clock: the 2nd attempt is signed 10 minutes ahead.
        await dispatcher.run_once()
    finally:
        await dispatcher.aclose()
    row = delivery(rt, delivery_id)
    assert row["status"] == "dead" and "gave up after max_age 10m" in row["last_error"]


# --- 4xx, 410, dead → delivery:failing ---------------------------------------------------------------


async def test_a_client_error_is_retried_once_then_dead_and_raises_delivery_failing(
    db: Database, clock: FrozenClock, server: PrivateReceiver
) -> None:
    rt = runtime(db, clock, receiver("ops", server.url_for("/h"), retry={"schedule": ["0s", "0s", "0s"]}))
    server.script(Reply(400, "bad field"), Reply(400, "bad field"))
    delivery_id = enqueue(rt, "ops")
    before = metric("ops", "dead")
    dispatcher = DeliveryDispatcher(rt)
    try:
        await dispatcher.run_once()
        assert delivery(rt, delivery_id)["status"] == "failed"
        assert "ops" not in failing_alerts(rt)
        await dispatcher.run_once()
        row = delivery(rt, delivery_id)
        assert row["status"] == "dead" and row["attempts"] == 2 and "retried once" in row["last_error"]
        assert [a["outcome"] for a in attempts(rt, delivery_id)] == ["client_error", "client_error"]
        assert await dispatcher.run_once() == 0  # dead is final
        assert len(server.requests) == 2
        assert metric("ops", "dead") == before + 1

        alert = failing_alerts(rt)["ops"]
        assert alert["status"] == FIRING and alert["severity"] == "error" and alert["source"] == "delivery"
        assert alert["labels"]["receiver"] == "ops" and "went dead" in alert["description"]
        assert receiver_state(rt, "ops")["consecutive_failures"] == 2  # type: ignore[index]

        # the next success resolves it
        enqueue(rt, "ops")
        await dispatcher.run_once()
    finally:
        await dispatcher.aclose()
    assert failing_alerts(rt)["ops"]["status"] == RESOLVED
    assert receiver_state(rt, "ops")["consecutive_failures"] == 0  # type: ignore[index]


async def test_five_consecutive_failed_attempts_raise_delivery_failing(
    db: Database, clock: FrozenClock, server: PrivateReceiver
) -> None:
    rt = runtime(db, clock, receiver("ops", server.url_for("/h"), retry={"schedule": ["0s"] * 10}))
    server.script(*[Reply(502)] * FAILURE_THRESHOLD)
    delivery_id = enqueue(rt, "ops")
    dispatcher = DeliveryDispatcher(rt)
    try:
        for _ in range(FAILURE_THRESHOLD - 1):
            await dispatcher.run_once()
        assert "ops" not in failing_alerts(rt)
        await dispatcher.run_once()
        alert = failing_alerts(rt)["ops"]
        assert alert["status"] == FIRING and "5 consecutive failed delivery attempts" in alert["description"]
        assert delivery(rt, delivery_id)["status"] == "failed"  # still retrying
        await dispatcher.run_once()
    finally:
        await dispatcher.aclose()
    assert delivery(rt, delivery_id)["status"] == "delivered"
    assert failing_alerts(rt)["ops"]["status"] == RESOLVED


async def test_410_disables_the_receiver_until_a_replay_re_enables_it(
    rt: Runtime, server: PrivateReceiver, clock: FrozenClock
) -> None:
    server.script(Reply(410, "this hook was deleted"))
    gone_id = enqueue(rt, "ops")
    clock.advance(S)
    waiting_id = enqueue(rt, "ops")
    dispatcher = DeliveryDispatcher(rt, batch_size=1)
    try:
        assert await dispatcher.run_once() == 1
        gone = delivery(rt, gone_id)
        assert gone["status"] == "dead" and gone["last_status_code"] == 410
        state = receiver_state(rt, "ops")
        assert state is not None and state["disabled_at"] == clock.now()
        assert "410" in state["disabled_reason"]
        alert = failing_alerts(rt)["ops"]
        assert alert["status"] == FIRING and "disabled" in alert["description"]

        assert await dispatcher.run_once() == 0  # its other deliveries wait, unsent
        assert delivery(rt, waiting_id)["status"] == "pending"
        assert len(server.requests) == 1

        replayed = delivery_service.replay(rt.db, gone_id, OPERATOR, clock.now(), alerting=rt.alerting)
        assert replayed["receiver_reenabled"] is True and "enabled again" in replayed["message"]
        assert await run(dispatcher, 3) == 2
    finally:
        await dispatcher.aclose()
    assert delivery(rt, waiting_id)["status"] == "delivered"
    assert delivery(rt, replayed["id"])["status"] == "delivered"
    ids = [r.headers["webhook-id"] for r in server.requests]
    assert ids[0] == gone["webhook_id"] and gone["webhook_id"] in ids[1:]  # the replay keeps webhook-id
    assert failing_alerts(rt)["ops"]["status"] == RESOLVED


async def test_a_reload_that_changes_the_url_re_enables_a_disabled_receiver(
    rt: Runtime, server: PrivateReceiver, db: Database, clock: FrozenClock
) -> None:
    server.script(Reply(410))
    enqueue(rt, "ops")
    clock.advance(S)
    waiting_id = enqueue(rt, "ops")
    dispatcher = DeliveryDispatcher(rt, batch_size=1)
    try:
        await dispatcher.run_once()
        assert receiver_state(rt, "ops")["disabled_at"] is not None  # type: ignore[index]
        # The same URL again (a reload that changed something else) keeps it disabled.
        rt.alerting = build_alerting(rt.config, {SECRET_ENV: SECRET})
        assert await dispatcher.run_once() == 0
        moved = runtime(db, clock, receiver("ops", server.url_for("/hooks/new-home")))
        rt.alerting = moved.alerting
        assert await dispatcher.run_once() == 1
    finally:
        await dispatcher.aclose()
    assert delivery(rt, waiting_id)["status"] == "delivered"
    assert server.requests[-1].path == "/hooks/new-home"


# --- never back to the failing receiver -------------------------------------------------------------


async def test_a_receivers_own_failing_alert_is_not_sent_to_it(
    rt: Runtime, server: PrivateReceiver, clock: FrozenClock
) -> None:
    now = clock.now()
    own = make_alert(now, "delivery:failing", receiver="ops")
    other = make_alert(now, "delivery:failing", receiver="pager")
    only_own = enqueue(rt, "ops", own)
    mixed = enqueue(rt, "ops", own, other)
    dispatcher = DeliveryDispatcher(rt)
    try:
        assert await dispatcher.run_once() == 2
    finally:
        await dispatcher.aclose()
    skipped = delivery(rt, only_own)
    assert skipped["status"] == "dead" and skipped["last_error"] == SELF_SKIP_REASON
    assert skipped["attempts"] == 0 and attempts(rt, only_own) == []
    assert delivery(rt, mixed)["status"] == "delivered"
    [request] = server.requests  # only the mixed one, without the alert about itself
    assert [a["labels"]["receiver"] for a in request.json["alerts"]] == ["pager"]
    assert failing_alerts(rt) == {}  # a skip is not a failure


async def test_delivery_failing_reaches_the_other_receivers_through_the_notifier(
    db: Database, clock: FrozenClock, server: PrivateReceiver
) -> None:
    with PrivateReceiver(standard_webhook(SECRET)) as pager:
        rt = runtime(
            db,
            clock,
            receiver("ops", server.url_for("/h"), retry={"schedule": ["0s"]}),
            receiver("pager", pager.url_for("/p")),
        )
        server.script(Reply(503))
        with rt.db.begin() as conn:
            publish.fire(conn, AlertSignal("planner:phase-failed", {"plan_id": "p1"}, "boom"), clock.now())
        notifier = Notifier(rt)
        dispatcher = DeliveryDispatcher(rt)
        try:
            assert notifier.tick().deliveries == 2
            assert await dispatcher.run_once() == 2  # ops: 503 with no retry left → dead
            assert failing_alerts(rt)["ops"]["status"] == FIRING
            assert notifier.tick().deliveries == 2  # the failing alert, routed to both
            assert await dispatcher.run_once() == 2
        finally:
            await dispatcher.aclose()
        told = [r.json for r in pager.requests]
        assert [a["alert_id"] for a in told[-1]["alerts"]] == ["delivery:failing"]
        assert told[-1]["alerts"][0]["labels"]["receiver"] == "ops"
        assert len(server.requests) == 1  # ops never got its own failing alert
        with rt.db.read() as conn:
            to_ops = conn.execute(
                select(deliveries.c.status, deliveries.c.last_error).where(
                    deliveries.c.receiver == "ops", deliveries.c.last_error == SELF_SKIP_REASON
                )
            ).all()
        assert [tuple(r) for r in to_ops] == [("dead", SELF_SKIP_REASON)]


# --- rate limit -------------------------------------------------------------------------------------


class RecordingLimiter(RateLimiter):
    """A limiter on a fake clock that stands still: every reservation is recorded."""

    def __init__(self, rate: float) -> None:
        super().__init__(rate, clock=lambda: 100.0)
        self.reservations: list[float] = []

    def reserve(self) -> float:
        delay = super().reserve()
        self.reservations.append(delay)
        return delay


async def test_max_per_second_spaces_the_sends_and_defers_what_would_wait_too_long(
    db: Database, clock: FrozenClock, server: PrivateReceiver
) -> None:
    rt = runtime(db, clock, receiver("ops", server.url_for("/h"), max_per_second=2))
    ids = [enqueue(rt, "ops") for _ in range(6)]
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    dispatcher = DeliveryDispatcher(rt, limiter_factory=RecordingLimiter, sleep=fake_sleep, max_wait=1.5)
    try:
        assert await dispatcher.run_once() == 6
    finally:
        await dispatcher.aclose()
    limiter = dispatcher.limiters["ops"]
    assert isinstance(limiter, RecordingLimiter)
    # burst of 2, then one every 0.5 s; the sixth would wait 2 s > max_wait: deferred, its token returned
    assert limiter.reservations == [0.0, 0.0, 0.5, 1.0, 1.5, 2.0]
    assert sorted(slept) == [0.5, 1.0, 1.5]
    assert len(server.requests) == 5
    statuses = {i: delivery(rt, i) for i in ids}
    deferred = [row for row in statuses.values() if row["status"] == "pending"]
    assert len(deferred) == 1 and deferred[0]["attempts"] == 0 and deferred[0]["claimed_by"] is None
    assert deferred[0]["next_attempt_at"] == clock.now() + 2 * S


# --- many dispatchers -------------------------------------------------------------------------------


async def test_two_dispatchers_claiming_at_once_never_send_a_delivery_twice(
    rt: Runtime, server: PrivateReceiver
) -> None:
    ids = [enqueue(rt, "ops") for _ in range(60)]
    first = DeliveryDispatcher(rt, batch_size=7)
    second = DeliveryDispatcher(rt, batch_size=7)
    try:
        while sum(await asyncio.gather(first.run_once(), second.run_once())):
            pass
    finally:
        await first.aclose()
        await second.aclose()
    webhook_ids = [r.headers["webhook-id"] for r in server.requests]
    assert len(webhook_ids) == 60 and len(set(webhook_ids)) == 60
    with rt.db.read() as conn:
        assert conn.execute(select(func.count()).select_from(delivery_attempts)).scalar() == 60
        statuses = conn.execute(select(deliveries.c.status, func.count()).group_by(deliveries.c.status)).all()
    assert [tuple(s) for s in statuses] == [("delivered", 60)]
    assert all(delivery(rt, i)["attempts"] == 1 for i in ids)


async def test_concurrent_claims_are_disjoint(rt: Runtime) -> None:
    for _ in range(10):
        enqueue(rt, "ops")
    first = DeliveryDispatcher(rt, batch_size=6)
    second = DeliveryDispatcher(rt, batch_size=6)
    a, b = await asyncio.gather(asyncio.to_thread(first.claim), asyncio.to_thread(second.claim))
    claimed_a = {j.delivery_id for j in a.jobs}
    claimed_b = {j.delivery_id for j in b.jobs}
    assert not claimed_a & claimed_b and len(claimed_a | claimed_b) == 10
    assert second.claim().jobs == [] and first.claim().jobs == []


async def test_an_expired_claim_is_taken_over_and_the_stalled_worker_is_fenced_off(
    rt: Runtime, server: PrivateReceiver, clock: FrozenClock
) -> None:
    ids = [enqueue(rt, "ops") for _ in range(4)]
    stalled = DeliveryDispatcher(rt)
    claim = stalled.claim()  # ... and then it hangs, sending nothing
    assert len(claim.jobs) == 4
    other = DeliveryDispatcher(rt)
    assert other.claim().jobs == []
    clock.advance(timedelta(minutes=5))
    try:
        assert await other.run_once() == 4
    finally:
        await other.aclose()
    assert len(server.requests) == 4
    # The stalled worker wakes up and records a failure: its claim token no longer matches, nothing sticks.
    late = [Result(job, "retry", SendOutcome("retry", 500, "HTTP 500"), clock.now()) for job in claim.jobs]
    stalled.record(claim.token, late, rt.alerting)
    for delivery_id in ids:
        row = delivery(rt, delivery_id)
        assert row["status"] == "delivered" and row["attempts"] == 1
        assert [a["outcome"] for a in attempts(rt, delivery_id)] == ["delivered"]


# --- other receiver types against their fake servers ------------------------------------------------


async def test_slack_receiver(db: Database, clock: FrozenClock) -> None:
    with PrivateReceiver(slack_webhook) as slack:
        rt = runtime(
            db, clock, receiver("chat", slack.url_for("/services/T0/B0/xyz"), type="slack", secret_env=None)
        )
        delivery_id = enqueue(rt, "chat")
        dispatcher = DeliveryDispatcher(rt)
        try:
            await dispatcher.run_once()
        finally:
            await dispatcher.aclose()
        [request] = slack.requests
        assert request.json["text"] and request.json["blocks"]
        assert "webhook-signature" not in request.headers  # no secret configured
    assert delivery(rt, delivery_id)["status"] == "delivered"


async def test_pagerduty_receiver_sends_one_event_per_alert(db: Database, clock: FrozenClock) -> None:
    with PrivateReceiver(pagerduty_events) as pd:
        rt = runtime(
            db,
            clock,
            receiver(
                "pager", pd.url_for("/v2/enqueue"), type="pagerduty", secret_env=None, routing_key=PD_KEY
            ),
        )
        now = clock.now()
        one, two = make_alert(now, plan_id="p1"), make_alert(now, plan_id="p2")
        delivery_id = enqueue(rt, "pager", one, two)
        dispatcher = DeliveryDispatcher(rt)
        try:
            await dispatcher.run_once()
        finally:
            await dispatcher.aclose()
        events = [r.json for r in pd.requests]
        assert sorted(e["dedup_key"] for e in events) == sorted([one.fingerprint, two.fingerprint])
        assert {e["event_action"] for e in events} == {"trigger"} and {e["routing_key"] for e in events} == {
            PD_KEY
        }
    row = delivery(rt, delivery_id)
    assert row["status"] == "delivered" and row["last_status_code"] == 202
    assert PD_KEY not in json.dumps(row["notification"])  # the integration key is never stored


def alertmanager_receiver(request: ReceivedRequest) -> Reply:
    """What an Alertmanager webhook consumer checks: version 4 and the alert fields templates use."""
    body = request.json
    ok = (
        isinstance(body, dict)
        and body.get("version") == "4"
        and body.get("status") in ("firing", "resolved")
        and all(
            {"labels", "annotations", "startsAt", "endsAt", "fingerprint"} <= set(a) for a in body["alerts"]
        )
        and all("alertname" in a["labels"] for a in body["alerts"])
    )
    return Reply(200) if ok else Reply(400, "not an Alertmanager v4 webhook")


async def test_alertmanager_webhook_receiver(db: Database, clock: FrozenClock) -> None:
    with PrivateReceiver(alertmanager_receiver) as am:
        rt = runtime(db, clock, receiver("am", am.url_for("/alerts"), type="alertmanager_webhook"))
        delivery_id = enqueue(rt, "am")
        dispatcher = DeliveryDispatcher(rt)
        try:
            await dispatcher.run_once()
        finally:
            await dispatcher.aclose()
        [request] = am.requests
        assert request.json["version"] == alertmanager_webhook.VERSION
        verify(request)  # signed too, when a secret is set
    assert delivery(rt, delivery_id)["status"] == "delivered"


# --- background loop, logs ---------------------------------------------------------------------------


def test_the_worker_loop_wakes_on_the_dispatch_signal(rt: Runtime, server: PrivateReceiver) -> None:
    assert DeliveryDispatcher in worker_loops()
    dispatcher = DeliveryDispatcher(rt, poll_interval=30.0)  # only a wake-up explains a quick send
    dispatcher.start()
    try:
        enqueue(rt, "ops")
        signals.wake(DISPATCH_CHANNEL)
        server.wait_for(1, timeout=10)
    finally:
        dispatcher.stop()
    assert len(server.requests) == 1


def test_a_restarted_worker_sends_at_once_what_its_killed_predecessor_had_claimed(
    rt: Runtime, clock: FrozenClock, server: PrivateReceiver
) -> None:
    """Same worker id, another pid: the claim is a dead process's, taken back at start, not after its TTL."""
    orphaned = enqueue(rt, "ops")
    other = enqueue(rt, "ops")
    with rt.db.begin() as conn:
        conn.execute(
            update(deliveries)
            .where(deliveries.c.id == orphaned)
            .values(
                claimed_by=f"{rt.worker_id}:999999999:dead/1",
                claim_expires_at=clock.now() + timedelta(hours=1),
            )
        )
        conn.execute(  # another worker's live claim stays untouched
            update(deliveries)
            .where(deliveries.c.id == other)
            .values(claimed_by="elsewhere:1:abc/1", claim_expires_at=clock.now() + timedelta(hours=1))
        )
    dispatcher = DeliveryDispatcher(rt)
    dispatcher.start()
    try:
        server.wait_for(1, timeout=10)
    finally:
        dispatcher.stop()
    assert delivery(rt, orphaned)["status"] == "delivered"
    assert delivery(rt, other)["claimed_by"] == "elsewhere:1:abc/1" and len(server.requests) == 1


async def test_logs_and_errors_never_carry_the_secret_signature_or_url_path(
    db: Database, clock: FrozenClock, server: PrivateReceiver
) -> None:
    path = "/hooks/T0SECRETPATH/abcdef123456"
    rt = runtime(db, clock, receiver("ops", server.url_for(path), retry={"schedule": ["0s", "0s"]}))
    full_path = urlsplit(server.url_for(path)).path  # what the receiver saw, echoed back in its error
    server.script(Reply(500, f"cannot route {full_path} signed with {SECRET}"), Reply(500, "still down"))
    delivery_id = enqueue(rt, "ops")
    dispatcher = DeliveryDispatcher(rt)
    with structlog.testing.capture_logs() as logs:
        try:
            await run(dispatcher, 2)
        finally:
            await dispatcher.aclose()
    signature = server.requests[0].headers["webhook-signature"]
    text = json.dumps(logs, default=str) + json.dumps(attempts(rt, delivery_id), default=str)
    text += json.dumps(delivery(rt, delivery_id), default=str) + json.dumps(failing_alerts(rt), default=str)
    assert logs and "T0SECRETPATH" not in text
    assert SECRET not in text and SECRET.removeprefix("whsec_") not in text
    assert signature.partition(",")[2] not in text
