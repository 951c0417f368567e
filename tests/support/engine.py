"""The engine in-process over a test database, and a plan seeded through the services to run on it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from storyloom.clock import Clock, SystemClock
from storyloom.config import Config
from storyloom.engine.engine import Engine
from storyloom.runtime import Runtime
from storyloom.server import prepare
from storyloom.services.plans import list_backlog
from storyloom.store.db import Database
from tests.support.health_seed import new_plan


class ShiftedClock:
    """Wall-clock time plus an offset that a test moves forward, so an SLA passes when the test says so."""

    def __init__(self) -> None:
        self._offset = timedelta()
        self._lock = threading.Lock()
        self._system = SystemClock()

    def now(self) -> datetime:
        with self._lock:
            return self._system.now() + self._offset

    def advance(self, delta: timedelta) -> None:
        with self._lock:
            self._offset += delta


@contextmanager
def running(db: Database, config: Config, clock: Clock | None = None) -> Iterator[Runtime]:
    """The engine started in-process over `db`; stopped (DBOS destroyed) on exit."""
    rt = Runtime(config=config, db=db, clock=clock or SystemClock())
    prepare(rt)
    engine = Engine(rt)
    engine.start()
    try:
        yield rt
    finally:
        engine.stop()


def seed_plan(rt: Runtime, name: str = "Salt Roads") -> str:
    """An author persona, its offline agent and a plan for them; returns the plan id."""
    return str(new_plan(rt, name, premise="Smugglers map a sea that moves at night.")["id"])


def item_statuses(rt: Runtime, plan_id: str) -> dict[str, str]:
    with rt.db.read() as conn:
        return {i["backlog_id"]: i["status"] for i in list_backlog(conn, plan_id)}
