"""The engine in-process over a test database, and a plan seeded through the services to run on it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from storyloom.clock import SystemClock
from storyloom.config import Config
from storyloom.engine.engine import Engine
from storyloom.runtime import Runtime
from storyloom.server import prepare
from storyloom.services.catalog import create_agent, create_persona
from storyloom.services.plans import PlanRequest, create_plan, list_backlog
from storyloom.store.db import Database


@contextmanager
def running(db: Database, config: Config) -> Iterator[Runtime]:
    """The engine started in-process over `db`; stopped (DBOS destroyed) on exit."""
    rt = Runtime(config=config, db=db, clock=SystemClock())
    prepare(rt)
    engine = Engine(rt)
    engine.start()
    try:
        yield rt
    finally:
        engine.stop()


def seed_plan(rt: Runtime, name: str = "Salt Roads") -> str:
    """An author persona, its offline agent and a plan for them; returns the plan id."""
    now = rt.clock.now()
    with rt.db.begin() as conn:
        persona = create_persona(conn, name="Ada Vale", kind="author", summary=None, now=now)
        agent = create_agent(
            conn, name="Ada agent", persona_id=persona["id"], provider="offline", model="m1", now=now
        )
        plan = create_plan(
            conn,
            PlanRequest(
                name=name,
                premise="Smugglers map a sea that moves at night.",
                persona_id=persona["id"],
                agent_id=agent["id"],
            ),
            default_provider="offline",
            default_model="m1",
            max_premise_chars=20_000,
            now=now,
        )
    return str(plan["id"])


def item_statuses(rt: Runtime, plan_id: str) -> dict[str, str]:
    with rt.db.read() as conn:
        return {i["backlog_id"]: i["status"] for i in list_backlog(conn, plan_id)}
