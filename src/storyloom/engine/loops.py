"""The background loops a worker runs beside the phase engine, in start order."""

from __future__ import annotations

from collections.abc import Callable

from storyloom.engine.engine import Loop
from storyloom.runtime import Runtime


def worker_loops() -> list[Callable[[Runtime], Loop]]:
    """Notify pipeline, delivery dispatcher, health evaluation: each takes the Runtime and starts a thread."""
    from storyloom.alerting.dispatcher import DeliveryDispatcher
    from storyloom.alerting.notifier import Notifier
    from storyloom.health.evaluate import HealthEvaluator

    loops: list[Callable[[Runtime], Loop]] = [
        Notifier,
        DeliveryDispatcher,
        HealthEvaluator,
    ]
    return loops
