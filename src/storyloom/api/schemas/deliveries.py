"""Webhook deliveries and their attempts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from storyloom.api.schemas import Body, Timestamp, Unreadable


class Attempt(Body):
    attempt: int
    at: Timestamp
    status_code: int | None = Field(description="null when no HTTP answer came (timeout, refused)")
    outcome: str
    error: str | None
    latency_ms: float | None


class Delivery(Body):
    id: str
    delivery_id: str = Field(description="the same as `id`")
    webhook_id: str = Field(description="the Standard Webhooks `webhook-id`, kept by retries and replays")
    receiver: str
    receiver_type: str
    group_key: str
    status: Literal["pending", "delivered", "failed", "dead"]
    alert_status: Literal["firing", "resolved"]
    fingerprints: list[str]
    alert_ids: list[str]
    attempts: int
    next_attempt_at: Timestamp | None
    first_attempt_at: Timestamp | None
    last_attempt_at: Timestamp | None
    last_status_code: int | None
    last_error: str | None
    latency_ms: float | None
    replay_of: str | None = Field(description="the delivery this one replays")
    created_at: Timestamp
    delivered_at: Timestamp | None
    attempt_log: list[Attempt] = Field(description="oldest first")
    unreadable: Unreadable


class Replayed(Delivery):
    receiver_reenabled: bool = Field(
        description="the receiver had been disabled by a 410 and is enabled again"
    )
    message: str
