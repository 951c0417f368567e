"""Standard Webhooks signatures: sign what we send, verify what we receive (docs/reference/payloads.md).

The signed content is `"{webhook-id}.{webhook-timestamp}.{body}"`, the MAC is HMAC-SHA256 keyed with the
base64-decoded part of a `whsec_<base64>` secret, and the header carries `v1,<base64 MAC>`. During a
secret rotation a sender holds several secrets (whitespace-separated) and sends one `v1,` signature per
secret, space-separated, so receivers that know either secret accept the message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE = timedelta(minutes=5)

HEADER_ID = "webhook-id"
HEADER_TIMESTAMP = "webhook-timestamp"
HEADER_SIGNATURE = "webhook-signature"

_TIMESTAMP = re.compile(r"\d{1,12}")


class SignatureError(Exception):
    """A webhook failed verification; `reason` says why in words a receiver's operator can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_secret(secret: str) -> bytes:
    """Decode one `whsec_<base64>` secret to its key bytes. Raises ValueError saying what is expected."""
    text = secret.strip()
    if not text.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret must look like whsec_<base64>")
    encoded = text[len(SECRET_PREFIX) :]
    try:
        # Accept unpadded base64 like the reference libraries do.
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(
            "a webhook secret must look like whsec_<base64>: the part after whsec_ is not base64"
        ) from None
    if not key:
        raise ValueError(
            "a webhook secret must not be empty: use whsec_ followed by 24 to 64 random bytes in base64"
        )
    return key


def parse_secrets(secrets: str | bytes | Iterable[str | bytes]) -> list[bytes]:
    """Keys from one secret, several whitespace-separated secrets (rotation), or a list of either.

    Raw `bytes` are taken as the key itself. Raises ValueError when there is no secret or one is malformed.
    """
    items: list[str | bytes] = [secrets] if isinstance(secrets, str | bytes) else list(secrets)
    keys: list[bytes] = []
    for item in items:
        if isinstance(item, bytes):
            if not item:
                raise ValueError("a webhook secret must not be empty")
            keys.append(item)
        else:
            keys.extend(parse_secret(part) for part in item.split())
    if not keys:
        raise ValueError("no webhook secret given: expected whsec_<base64>")
    return keys


def timestamp_of(moment: datetime | int) -> int:
    """Unix seconds (floored) as Standard Webhooks puts them in `webhook-timestamp`."""
    if isinstance(moment, int):
        return moment
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return math.floor(moment.timestamp())


def _mac(key: bytes, msg_id: str, timestamp: int, body: bytes) -> bytes:
    signed = f"{msg_id}.{timestamp}.".encode() + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def _as_bytes(body: bytes | str) -> bytes:
    return body.encode() if isinstance(body, str) else body


def sign(
    secret: str | bytes | Iterable[str | bytes], msg_id: str, timestamp: datetime | int, body: bytes | str
) -> str:
    """The `webhook-signature` header value: one `v1,<base64>` per secret, space-separated."""
    ts = timestamp_of(timestamp)
    data = _as_bytes(body)
    return " ".join(
        f"{SIGNATURE_VERSION},{base64.b64encode(_mac(key, msg_id, ts, data)).decode()}"
        for key in parse_secrets(secret)
    )


def signature_headers(
    secret: str | bytes | Iterable[str | bytes] | None,
    msg_id: str,
    timestamp: datetime | int,
    body: bytes | str,
) -> dict[str, str]:
    """`webhook-id`, `webhook-timestamp` and, when a secret is set, `webhook-signature`."""
    ts = timestamp_of(timestamp)
    headers = {HEADER_ID: msg_id, HEADER_TIMESTAMP: str(ts)}
    if secret:
        headers[HEADER_SIGNATURE] = sign(secret, msg_id, ts, body)
    return headers


def verify(
    secrets: str | bytes | Iterable[str | bytes],
    headers: Mapping[str, str],
    body: bytes | str,
    now: datetime,
    tolerance: timedelta = DEFAULT_TOLERANCE,
) -> None:
    """Check a received webhook; raises SignatureError with the reason when it must be rejected.

    `headers` may use any letter case. Every `v1,` signature in the header is tried against every secret
    with a constant-time comparison; one match is enough.
    """
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get(HEADER_ID, "").strip()
    raw_ts = lowered.get(HEADER_TIMESTAMP, "").strip()
    raw_sig = lowered.get(HEADER_SIGNATURE, "").strip()
    missing = [
        name
        for name, value in ((HEADER_ID, msg_id), (HEADER_TIMESTAMP, raw_ts), (HEADER_SIGNATURE, raw_sig))
        if not value
    ]
    if missing:
        raise SignatureError(f"missing header {', '.join(missing)}")
    if not _TIMESTAMP.fullmatch(raw_ts):
        raise SignatureError(f"{HEADER_TIMESTAMP} must be Unix seconds, got {raw_ts[:32]!r}")
    ts = int(raw_ts)
    now_ts = now.replace(tzinfo=UTC).timestamp() if now.tzinfo is None else now.timestamp()
    skew = now_ts - ts
    window = tolerance.total_seconds()
    if skew > window:
        raise SignatureError(
            f"message timestamp too old ({int(skew)}s > {int(window)}s tolerance); replay refused"
        )
    if -skew > window:
        raise SignatureError(
            f"message timestamp too new ({int(-skew)}s ahead > {int(window)}s tolerance); check clocks"
        )
    try:
        keys = parse_secrets(secrets)
    except ValueError as exc:
        raise SignatureError(f"receiver misconfigured: {exc}") from None

    candidates: list[bytes] = []
    for token in raw_sig.split():
        version, _, encoded = token.partition(",")
        if version != SIGNATURE_VERSION or not encoded:
            continue
        try:
            candidates.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    if not candidates:
        raise SignatureError(f"{HEADER_SIGNATURE} has no v1 signature")
    data = _as_bytes(body)
    matched = False
    for key in keys:
        expected = _mac(key, msg_id, ts, data)
        for candidate in candidates:
            # No early exit: the work done does not depend on which candidate matches.
            matched |= hmac.compare_digest(expected, candidate)
    if not matched:
        raise SignatureError(
            "no matching signature: the body, webhook-id or timestamp changed, or the secret differs"
        )
