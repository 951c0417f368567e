"""Where a delivery stands: `pending` (never tried), `failed` (tried, retry scheduled), `delivered`, `dead`."""

from __future__ import annotations

from enum import StrEnum


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    DEAD = "dead"


DUE_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.FAILED)
SETTLED_STATUSES = (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED, DeliveryStatus.DEAD)
