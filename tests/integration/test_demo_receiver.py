"""The built-in demo receiver: verifies Standard Webhooks signatures, keeps every request, shows the inbox."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from storyloom.alerting import publish, signing
from storyloom.alerting.delivery.worker import DeliveryDispatcher
from storyloom.alerting.egress import EgressPolicy
from storyloom.alerting.notifier import Notifier
from storyloom.alerting.publish import AlertSignal
from storyloom.alerting.reads import routes_for_alert
from storyloom.alerting.setup import build_alerting, routing_without_secrets
from storyloom.api.app import create_app
from storyloom.clock import FrozenClock
from storyloom.demo_receiver import DEMO_RECEIVER, DEMO_SECRET_ENV, with_demo_receiver
from storyloom.runtime import Runtime
from storyloom.services.alerts import match_routes
from storyloom.services.tokens import create_token
from storyloom.store.db import Database
from storyloom.store.tables import deliveries
from tests.conftest import make_config
from tests.support.deliveries import delivery, enqueue

DEMO_SECRET = "whsec_" + base64.b64encode(b"demo-receiver-test-secret-012345").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"somebody-elses-secret-0123456789").decode()
URL = "http://127.0.0.1:8700"
BODY = json.dumps({"version": "1", "type": "storyloom.alerts", "alerts": []}).encode()


@pytest.fixture(autouse=True)
def _secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(DEMO_SECRET_ENV, DEMO_SECRET)


@pytest.fixture
def rt(db: Database, clock: FrozenClock) -> Runtime:
    config = with_demo_receiver(make_config(), server_url="http://127.0.0.1:8700")
    return Runtime(config=config, db=db, clock=clock)


@pytest.fixture
def viewer(rt: Runtime) -> dict[str, str]:
    with rt.db.begin() as conn:
        plain, _ = create_token(conn, name="v", role="viewer", agent_ids=[], now=rt.clock.now())
    return {"Authorization": f"Bearer {plain}"}


def signed(secret: str, msg_id: str, clock: FrozenClock, body: bytes = BODY) -> dict[str, str]:
    return {
        "content-type": "application/json",
        **signing.signature_headers(secret, msg_id, clock.now(), body),
    }


def test_a_valid_signature_is_kept_and_answered_204(
    client: TestClient, clock: FrozenClock, viewer: dict[str, str]
) -> None:
    sent = signed(DEMO_SECRET, "msg_valid", clock)
    response = client.post("/api/demo/receiver", content=BODY, headers=sent)
    assert response.status_code == 204, response.text

    [kept] = client.get("/api/demo/inbox", headers=viewer).json()
    assert kept["signature_valid"] is True and kept["error"] is None
    assert kept["webhook_id"] == "msg_valid" and kept["body"] == json.loads(BODY)
    assert kept["headers"]["webhook-timestamp"] == sent["webhook-timestamp"]
    assert kept["headers"]["webhook-signature"] == "<redacted>"
    assert sent["webhook-signature"].partition(",")[2] not in json.dumps(kept)
    assert kept["received_at"].endswith("Z")


def test_a_tampered_body_is_refused_with_401_and_kept_as_invalid(
    client: TestClient, clock: FrozenClock, viewer: dict[str, str]
) -> None:
    sent = signed(DEMO_SECRET, "msg_tampered", clock)
    tampered = BODY.replace(b"storyloom.alerts", b"storyloom.ALERTS")
    response = client.post("/api/demo/receiver", content=tampered, headers=sent)
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "no matching signature" in response.json()["detail"]

    wrong_key = client.post(
        "/api/demo/receiver", content=BODY, headers=signed(OTHER_SECRET, "msg_other_key", clock)
    )
    assert wrong_key.status_code == 401
    unsigned = client.post("/api/demo/receiver", content=BODY, headers={"content-type": "application/json"})
    assert unsigned.status_code == 401 and "missing header" in unsigned.json()["detail"]
    clock.advance(timedelta(minutes=10))
    stale = client.post("/api/demo/receiver", content=BODY, headers=sent)
    assert stale.status_code == 401 and "too old" in stale.json()["detail"]

    inbox = client.get("/api/demo/inbox", headers=viewer).json()
    assert [m["signature_valid"] for m in inbox] == [False, False, False, False]
    newest_first = [m["webhook_id"] for m in inbox]
    assert newest_first == ["msg_tampered", None, "msg_other_key", "msg_tampered"]
    assert "no matching signature" in inbox[-1]["error"]
    assert inbox[-1]["body"]["type"] == "storyloom.ALERTS"  # what arrived, as it arrived
    assert [m["webhook_id"] for m in client.get("/api/demo/inbox?limit=1", headers=viewer).json()] == [
        "msg_tampered"
    ]


def test_the_inbox_needs_a_token(client: TestClient) -> None:
    assert client.get("/api/demo/inbox").status_code == 401


def test_off_unless_demo_or_demo_receiver(db: Database, clock: FrozenClock) -> None:
    rt = Runtime(config=make_config(), db=db, clock=clock)
    with TestClient(create_app(rt)) as client:
        with rt.db.begin() as conn:
            plain, _ = create_token(conn, name="v", role="viewer", agent_ids=[], now=clock.now())
        body = signed(DEMO_SECRET, "msg_1", clock)
        assert client.post("/api/demo/receiver", content=BODY, headers=body).status_code == 404
        off = client.get("/api/demo/inbox", headers={"Authorization": f"Bearer {plain}"})
        assert off.status_code == 404 and "--demo" in off.json()["detail"]


async def test_the_dispatcher_delivers_to_the_demo_receiver(
    rt: Runtime, clock: FrozenClock, viewer: dict[str, str]
) -> None:
    app = create_app(rt)

    def asgi_client(_policy: EgressPolicy) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app))

    delivery_id = enqueue(rt, DEMO_RECEIVER)
    dispatcher = DeliveryDispatcher(rt, client_factory=asgi_client)
    try:
        assert await dispatcher.run_once() == 1
    finally:
        await dispatcher.aclose()
    row = delivery(rt, delivery_id)
    assert row["status"] == "delivered" and row["last_status_code"] == 204
    with TestClient(app) as client:
        [kept] = client.get("/api/demo/inbox", headers=viewer).json()
    assert kept["signature_valid"] is True and kept["webhook_id"] == row["webhook_id"]
    assert kept["body"]["receiver"] == DEMO_RECEIVER and kept["body"]["routing_key"] == "demo"


# --- the demo inbox sits beside the configured routing ---------------------------------------------

OPS_AND_PAGER = {
    "receivers": [
        {"name": "ops", "url": "http://127.0.0.1:9000/ops"},
        {"name": "pager", "url": "http://127.0.0.1:9000/pager"},
    ],
    "route": {
        "receiver": "ops",
        "group_by": ["alert_id"],
        "group_wait": "0s",
        "routes": [{"matchers": ['severity=~"error|critical"'], "receiver": "pager"}],
    },
}
ROUTED = [
    ({"alert_id": "obligation:open", "severity": "info"}, ["ops"]),
    ({"alert_id": "planner:phase-failed", "severity": "error"}, ["pager"]),
]


@pytest.mark.parametrize(("labels", "configured"), ROUTED)
def test_the_configured_routing_answers_as_before_and_the_inbox_is_added(
    labels: dict[str, str], configured: list[str]
) -> None:
    plain = build_alerting(make_config(alerting=OPS_AND_PAGER), {})
    with_inbox = routing_without_secrets(
        with_demo_receiver(make_config(alerting=OPS_AND_PAGER), server_url=URL)
    )
    assert match_routes(plain, labels)["receivers"] == configured
    assert match_routes(with_inbox, labels)["receivers"] == [*configured, DEMO_RECEIVER]


def test_a_route_that_already_sends_to_the_inbox_is_kept() -> None:
    alerting = {
        "receivers": [
            *OPS_AND_PAGER["receivers"],
            {"name": DEMO_RECEIVER, "url": f"{URL}/api/demo/receiver"},
        ],
        "route": {
            "receiver": "ops",
            "routes": [{"matchers": ['severity="info"'], "receiver": DEMO_RECEIVER}],
        },
    }
    config = with_demo_receiver(make_config(alerting=alerting), server_url=URL)
    answer = match_routes(
        routing_without_secrets(config), {"alert_id": "obligation:open", "severity": "info"}
    )
    assert answer["receivers"] == [DEMO_RECEIVER]


def test_every_notification_goes_to_the_configured_receivers_and_to_the_inbox(
    db: Database, clock: FrozenClock
) -> None:
    config = with_demo_receiver(make_config(alerting=OPS_AND_PAGER), server_url=URL)
    rt = Runtime(config=config, db=db, clock=clock)
    with rt.db.begin() as conn:
        for labels, _ in ROUTED:
            publish.fire(
                conn, AlertSignal(labels["alert_id"], {"plan_id": "plan_1"}, "it broke"), clock.now()
            )
    assert Notifier(rt).tick().deliveries == 4
    with rt.db.read() as conn:
        rows = conn.execute(select(deliveries.c.receiver, deliveries.c.fingerprints)).all()
        routed = {fp: routes_for_alert(conn, fp) for _, fps in rows for fp in fps}
    assert sorted(r.receiver for r in rows) == [DEMO_RECEIVER, DEMO_RECEIVER, "ops", "pager"]
    assert sorted(routed.values()) == [["ops", DEMO_RECEIVER], ["pager", DEMO_RECEIVER]]
