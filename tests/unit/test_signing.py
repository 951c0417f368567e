from __future__ import annotations

import base64
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import standardwebhooks

from storyloom.alerting import signing
from storyloom.alerting.receivers.base import RECEIVER_TYPES, ReceiverSpec, render_request
from storyloom.alerting.signing import SignatureError, parse_secret, parse_secrets, sign, verify
from storyloom.domain.alerts import Alert, Notification

# The published Standard Webhooks / Svix example: secret, id, timestamp, body and the expected signature.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = '{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

OLD = "whsec_" + base64.b64encode(b"old-secret-old-secret-old-secret").decode()
NEW = "whsec_" + base64.b64encode(b"new-secret-new-secret-new-secret").decode()
BODY = b'{"version":"1","status":"firing"}'
Headers = dict[str, str]


def headers_for(secret: str, msg_id: str, at: datetime, body: bytes) -> dict[str, str]:
    return signing.signature_headers(secret, msg_id, at, body)


def test_matches_the_published_vector() -> None:
    assert sign(VECTOR_SECRET, VECTOR_ID, VECTOR_TS, VECTOR_BODY) == VECTOR_SIG
    at = datetime.fromtimestamp(VECTOR_TS, UTC)
    headers = {"webhook-id": VECTOR_ID, "webhook-timestamp": str(VECTOR_TS), "webhook-signature": VECTOR_SIG}
    verify(VECTOR_SECRET, headers, VECTOR_BODY, now=at + timedelta(seconds=30))


def test_our_signature_verifies_with_the_standardwebhooks_library() -> None:
    now = datetime.now(UTC)
    headers = headers_for(NEW, "ntf_1", now, BODY)
    assert standardwebhooks.Webhook(NEW).verify(BODY, headers) == json.loads(BODY)


def test_the_libraries_signature_verifies_with_ours() -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    theirs = standardwebhooks.Webhook(NEW).sign("ntf_2", now, BODY.decode())
    headers = {
        "Webhook-Id": "ntf_2",
        "Webhook-Timestamp": str(int(now.timestamp())),
        "Webhook-Signature": theirs,
    }
    verify(NEW, headers, BODY, now=now)
    assert sign(NEW, "ntf_2", now, BODY) == theirs


def test_rotation_sends_one_signature_per_secret_and_either_secret_verifies() -> None:
    now = datetime.now(UTC)
    headers = headers_for(f"{OLD}  {NEW}\n", "ntf_3", now, BODY)
    assert len(headers["webhook-signature"].split(" ")) == 2
    assert all(part.startswith("v1,") for part in headers["webhook-signature"].split(" "))
    for secret in (OLD, NEW):
        standardwebhooks.Webhook(secret).verify(BODY, headers)
        verify(secret, headers, BODY, now=now)
    # A receiver that already knows both secrets accepts a sender that knows only one.
    verify([OLD, NEW], headers_for(OLD, "ntf_3", now, BODY), BODY, now=now)


def test_a_receiver_with_an_unrelated_secret_refuses() -> None:
    now = datetime.now(UTC)
    headers = headers_for(OLD, "ntf_4", now, BODY)
    with pytest.raises(SignatureError, match="no matching signature"):
        verify(NEW, headers, BODY, now=now)
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(NEW).verify(BODY, headers)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda h, b: (h, b + b" "), "no matching signature"),
        (lambda h, b: ({**h, "webhook-id": "other"}, b), "no matching signature"),
        (lambda h, b: ({**h, "webhook-timestamp": str(int(h["webhook-timestamp"]) + 1)}, b), "no matching"),
        (lambda h, b: ({k: v for k, v in h.items() if k != "webhook-id"}, b), "missing header webhook-id"),
        (lambda h, b: ({**h, "webhook-signature": ""}, b), "missing header webhook-signature"),
        (lambda h, b: ({**h, "webhook-timestamp": "soon"}, b), "must be Unix seconds"),
        (lambda h, b: ({**h, "webhook-signature": "v2,abc"}, b), "no v1 signature"),
        (lambda h, b: ({**h, "webhook-signature": "v1,@@@"}, b), "no v1 signature"),
    ],
)
def test_verify_says_why_it_refuses(
    change: Callable[[Headers, bytes], tuple[Headers, bytes]], reason: str
) -> None:
    now = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
    headers, body = change(headers_for(NEW, "ntf_5", now, BODY), BODY)
    with pytest.raises(SignatureError, match=reason) as info:
        verify(NEW, headers, body, now=now)
    assert info.value.reason == str(info.value)


def test_timestamps_outside_the_tolerance_are_refused() -> None:
    at = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
    headers = headers_for(NEW, "ntf_6", at, BODY)
    verify(NEW, headers, BODY, now=at + timedelta(minutes=5))
    verify(NEW, headers, BODY, now=at - timedelta(minutes=5))
    with pytest.raises(SignatureError, match="too old"):
        verify(NEW, headers, BODY, now=at + timedelta(minutes=5, seconds=1))
    with pytest.raises(SignatureError, match="too new"):
        verify(NEW, headers, BODY, now=at - timedelta(minutes=5, seconds=1))
    verify(NEW, headers, BODY, now=at + timedelta(hours=1), tolerance=timedelta(hours=2))


def test_signing_covers_the_exact_bytes_including_non_ascii() -> None:
    now = datetime.now(UTC)
    body = json.dumps({"title": "Szene 3: blockiert, Grüße ✅"}, ensure_ascii=False).encode()
    headers = headers_for(NEW, "ntf_7", now, body)
    standardwebhooks.Webhook(NEW).verify(body, headers)
    verify(NEW, headers, body.decode(), now=now)


def test_comparison_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = signing.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signing.hmac, "compare_digest", spy)
    now = datetime.now(UTC)
    verify([OLD, NEW], headers_for(f"{OLD} {NEW}", "ntf_8", now, BODY), BODY, now=now)
    # Every secret against every signature, whichever matches first.
    assert len(calls) == 4


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "must look like whsec_"),
        ("whsec_not*base64", "not base64"),
        ("whsec_", "must not be empty"),
    ],
)
def test_malformed_secrets_are_explained(secret: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_secret(secret)


def test_secrets_parse_with_or_without_padding_and_as_lists() -> None:
    key = b"0123456789abcdef0123456789"
    unpadded = "whsec_" + base64.b64encode(key).decode().rstrip("=")
    assert parse_secret(unpadded) == key
    assert parse_secrets([unpadded, key]) == [key, key]
    with pytest.raises(ValueError, match="no webhook secret"):
        parse_secrets("   ")


def notification() -> Notification:
    at = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
    alert = Alert(
        alert_id="planner:phase-failed",
        fingerprint="fp1",
        status="firing",
        severity="error",
        title="Planner phase failed",
        description="scene weaver failed",
        labels={"alert_id": "planner:phase-failed", "severity": "error", "source": "planner_runner"},
        starts_at=at,
        ends_at=None,
        generated_at=at,
    )
    return Notification(
        notification_id="ntf_fixed",
        receiver="r",
        group_key="{}:{}",
        group_labels={},
        alerts=(alert,),
        environment="test",
    )


@pytest.mark.parametrize("receiver_type", RECEIVER_TYPES)
def test_every_receiver_type_is_signed(receiver_type: str) -> None:
    attempt_at = datetime.now(UTC)
    spec = ReceiverSpec(
        name="r", type=receiver_type, url="https://x.example/", secret=NEW, routing_key="k" * 32
    )
    requests = render_request(spec, notification(), attempt_at)
    assert requests
    for request in requests:
        assert request.headers["webhook-id"] == "ntf_fixed"
        assert request.headers["webhook-timestamp"] == str(int(attempt_at.timestamp()))
        assert request.headers["content-type"] == "application/json"
        standardwebhooks.Webhook(NEW).verify(request.body, request.headers)


def test_without_a_secret_there_is_no_signature_header() -> None:
    spec = ReceiverSpec(name="r", type="webhook", url="https://x.example/")
    (request,) = render_request(spec, notification(), datetime(2026, 11, 25, 20, 0, 30, 900_000, tzinfo=UTC))
    assert "webhook-signature" not in request.headers
    assert request.headers["webhook-timestamp"] == str(
        int(datetime(2026, 11, 25, 20, 0, 30, tzinfo=UTC).timestamp())
    )


def test_a_retry_reuses_the_id_and_re_signs_with_the_new_timestamp() -> None:
    spec = ReceiverSpec(name="r", type="webhook", url="https://x.example/", secret=NEW)
    first = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
    (a,) = render_request(spec, notification(), first)
    (b,) = render_request(spec, notification(), first + timedelta(seconds=5))
    assert a.body == b.body and a.headers["webhook-id"] == b.headers["webhook-id"]
    assert a.headers["webhook-signature"] != b.headers["webhook-signature"]
    verify(NEW, b.headers, b.body, now=first + timedelta(seconds=5))


def test_the_spec_repr_never_shows_the_secret_or_url_path() -> None:
    spec = ReceiverSpec(
        name="slack",
        type="slack",
        url="https://hooks.slack.example/services/T000/B000/XXXXSECRETPATH",
        secret=NEW,
        headers={"Authorization": "Bearer tok-123456"},
    )
    text = repr(spec) + str(spec) + f"{spec}"
    for leaked in (NEW, NEW.removeprefix("whsec_"), "XXXXSECRETPATH", "tok-123456"):
        assert leaked not in text
    assert "<redacted>" in text and "hooks.slack.example" in text
    pd = ReceiverSpec(
        name="pd", type="pagerduty", url="https://events.example/v2/enqueue", routing_key="R" * 32
    )
    assert "R" * 32 not in repr(pd)
