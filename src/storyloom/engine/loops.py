"""The background loops a worker runs beside the phase engine, in start order."""

from __future__ import annotations

from collections.abc import Callable

from storyloom.engine.engine import Loop
from storyloom.runtime import Runtime


def worker_loops() -> list[Callable[[Runtime], Loop]]:
    """Alert expiry, notify pipeline and delivery dispatcher: each takes the Runtime and starts a thread.

    The health evaluation is not a loop: the engine schedules it as a DBOS workflow.
    """
    from storyloom.alerting.delivery.worker import DeliveryDispatcher
    from storyloom.alerting.expiry import AlertExpiry
    from storyloom.alerting.notifier import Notifier

    loops: list[Callable[[Runtime], Loop]] = [AlertExpiry, Notifier, DeliveryDispatcher]
    return loops
