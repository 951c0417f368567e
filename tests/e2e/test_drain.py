"""SIGTERM drains a real `storyloom run`: the phase in flight finishes and is recorded, nothing new starts,
and the process exits cleanly; a restart carries on from there."""

from __future__ import annotations

import contextlib
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from storyloom.store.db import Database
from storyloom.store.tables import backlog_items, leases, planner_executions, tasks
from tests.support.server import ServerProcess, backlog_status, start_plan, wait_for

pytestmark = pytest.mark.slow

CONFIG = {
    "pipeline": {"chapters": 1, "scenes_per_chapter": 1},
    "llm": {"faults": [{"phase": "world_bible", "mode": "slow", "times": 1, "delay": "4s"}]},
}


def test_sigterm_finishes_the_phase_in_flight_and_takes_nothing_new(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", config=CONFIG).start()
    db = Database(f"sqlite:///{tmp_path / 'data' / 'storyloom.db'}")
    try:
        plan_id = start_plan(server, "Drain", "A ferry that only sails at dusk.")
        wait_for(
            lambda: backlog_status(server, plan_id).get("world-bible") == "in_progress",
            message="world-bible in progress",
        )
        assert server.proc is not None
        server.proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught: -SIGTERM is a clean exit here
        assert server.proc.wait(timeout=60) in (0, -signal.SIGTERM), server.logs()[-3000:]
    finally:
        server.kill()

    with db.read() as conn:
        statuses = dict(
            conn.execute(
                select(backlog_items.c.backlog_id, backlog_items.c.status).where(
                    backlog_items.c.plan_id == plan_id
                )
            ).all()
        )
        outcomes = (
            conn.execute(
                select(planner_executions.c.outcome).where(planner_executions.c.backlog_id == "world-bible")
            )
            .scalars()
            .all()
        )
        started_after = conn.execute(
            select(tasks.c.backlog_id).where(
                tasks.c.backlog_id == "iteration-plan", tasks.c.status == "running"
            )
        ).all()
        worker_leases = conn.execute(select(leases.c.name).where(leases.c.name.like("worker:%"))).all()
    assert statuses["world-bible"] == "complete" and outcomes == ["success"], (statuses, outcomes)
    assert statuses["iteration-plan"] == "pending" and started_after == [], (
        "nothing new starts while draining"
    )
    assert worker_leases == [], "a drained worker leaves the cluster: no lease left for a takeover"
    assert "draining" in server.logs() and "engine stopped" in server.logs()

    restarted = ServerProcess(tmp_path / "data", config=CONFIG, port=server.port).start()
    try:
        wait_for(
            lambda: (
                set(backlog_status(restarted, plan_id).values()) == {"complete"}
                and len(backlog_status(restarted, plan_id)) == 6
            ),
            timeout=90,
            message="the plan completing after the restart",
        )
    finally:
        restarted.stop()
        db.dispose()


def test_a_burst_of_stop_signals_still_stops_a_worker_once(tmp_path: Path) -> None:
    """A supervisor that signals a process group again and again must not wedge the worker."""
    worker = ServerProcess(tmp_path / "w", config=CONFIG, role="worker").start(wait=False)
    db = Database(f"sqlite:///{tmp_path / 'w' / 'storyloom.db'}")
    try:

        def beating() -> bool:
            try:
                with db.read() as conn:
                    return (
                        conn.execute(select(leases.c.name).where(leases.c.name.like("worker:%"))).first()
                        is not None
                    )
            except OperationalError:  # the worker has not created the schema yet
                return False

        wait_for(beating, timeout=60, message="the worker beating")
        assert worker.proc is not None
        storm_until = time.monotonic() + 5  # signal on while it stops, as a looping `kill 0` would
        while worker.proc.poll() is None and time.monotonic() < storm_until:
            with contextlib.suppress(ProcessLookupError):
                worker.proc.send_signal(signal.SIGTERM)
        assert worker.proc.wait(timeout=60) == 0, worker.logs()[-3000:]
        assert "engine stopped" in worker.logs()
    finally:
        worker.kill()
        db.dispose()
