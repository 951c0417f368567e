"""In-process wake-ups: a commit that creates work wakes the loop that does it instead of waiting a poll."""

from __future__ import annotations

import threading
from collections.abc import Callable

SCHEDULER_CHANNEL = (
    "scheduler"  # work for the backlog scheduler: items added or ready, a task queued or ended
)

_events: dict[str, threading.Event] = {}
_listeners: list[Callable[[str, dict[str, object]], None]] = []
_lock = threading.Lock()


def channel(name: str) -> threading.Event:
    with _lock:
        return _events.setdefault(name, threading.Event())


def wake(name: str) -> None:
    channel(name).set()


def waiter(name: str) -> Callable[[float], bool]:
    """A wait(timeout) that returns True when woken and re-arms itself."""
    event = channel(name)

    def wait(timeout: float) -> bool:
        woken = event.wait(timeout)
        event.clear()
        return woken

    return wait


def subscribe(listener: Callable[[str, dict[str, object]], None]) -> Callable[[], None]:
    """Listen to published live events (SSE); returns the unsubscribe function."""
    with _lock:
        _listeners.append(listener)

    def unsubscribe() -> None:
        with _lock:
            if listener in _listeners:
                _listeners.remove(listener)

    return unsubscribe


def publish(kind: str, data: dict[str, object]) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        listener(kind, data)
