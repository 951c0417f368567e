"""Pipeline throughput: N plans on the offline provider (zero latency) through the DBOS engine, on SQLite.

Peer, measured in the same run: the same runner steps called directly in one thread (no DBOS, no queue),
which is the floor the engine's durability and concurrency cost is measured against.

    .venv/bin/python bench/pipeline.py --plans 50
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import func, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storyloom.clock import SystemClock  # noqa: E402
from storyloom.config import parse_config  # noqa: E402
from storyloom.engine.engine import Engine  # noqa: E402
from storyloom.engine.scheduler import Scheduler  # noqa: E402
from storyloom.logs import configure_logging  # noqa: E402
from storyloom.pipeline.dispatcher import ToolDispatcher  # noqa: E402
from storyloom.pipeline.providers import Providers  # noqa: E402
from storyloom.pipeline.runner import OK, PhaseRunner  # noqa: E402
from storyloom.runtime import Runtime  # noqa: E402
from storyloom.server import prepare  # noqa: E402
from storyloom.services.catalog import create_agent, create_persona  # noqa: E402
from storyloom.services.plans import PlanRequest, create_plan  # noqa: E402
from storyloom.store.db import Database  # noqa: E402
from storyloom.store.tables import backlog_items, planner_executions, plans, tasks  # noqa: E402

CONFIG = {
    "pipeline": {"chapters": 3, "scenes_per_chapter": 2, "concurrency": 16, "critique": {"enabled": True}}
}


def _runtime(folder: Path) -> Runtime:
    rt = Runtime(
        config=parse_config(CONFIG), db=Database(f"sqlite:///{folder / 'storyloom.db'}"), clock=SystemClock()
    )
    prepare(rt)
    return rt


def _seed(rt: Runtime, count: int) -> None:
    now = rt.clock.now()
    with rt.db.begin() as conn:
        persona = create_persona(conn, name="Bench Author", kind="author", summary=None, now=now)
        agent = create_agent(
            conn, name="bench", persona_id=persona["id"], provider="offline", model="m", now=now
        )
        for n in range(count):
            create_plan(
                conn,
                PlanRequest(
                    name=f"Bench {n}",
                    premise=f"Premise number {n} about tides and debts.",
                    persona_id=persona["id"],
                    agent_id=agent["id"],
                ),
                default_provider="offline",
                default_model="m",
                max_premise_chars=20_000,
                now=now,
            )


def _incomplete(rt: Runtime) -> int:
    with rt.db.read() as conn:
        return int(
            conn.execute(select(func.count()).select_from(plans).where(plans.c.status != "complete")).scalar()
            or 0
        )


def _figures(rt: Runtime, label: str, elapsed: float, plan_count: int) -> dict[str, float]:
    with rt.db.read() as conn:
        phases = int(conn.execute(select(func.count()).select_from(backlog_items)).scalar() or 0)
        llm_ms = float(conn.execute(select(func.sum(planner_executions.c.latency_ms))).scalar() or 0)
        spans = conn.execute(select(tasks.c.created_at, tasks.c.started_at, tasks.c.finished_at)).all()
    runs = [(f - s).total_seconds() * 1000 for _, s, f in spans if s and f]
    waits = [(s - c).total_seconds() * 1000 for c, s, _ in spans if s]
    overhead = max(sum(runs) - llm_ms, 0.0) / max(len(runs), 1)
    figures = {
        "plans_per_minute": plan_count / elapsed * 60,
        "phases_per_second": phases / elapsed,
        "wall_ms_per_phase": elapsed * 1000 / phases,
        "in_task_ms_beyond_llm": overhead,
        "queue_wait_p50_ms": statistics.median(waits) if waits else 0.0,
    }
    print(
        f"{label:>8}: {plan_count} plans, {phases} phases in {elapsed:.2f}s | "
        + " | ".join(f"{k} {v:.1f}" for k, v in figures.items())
    )
    return figures


def run_engine(count: int, folder: Path) -> dict[str, float]:
    rt = _runtime(folder)
    engine = Engine(rt)
    engine.start()
    try:
        started = time.monotonic()
        _seed(rt, count)
        deadline = started + 600
        while _incomplete(rt) and time.monotonic() < deadline:
            time.sleep(0.1)
        elapsed = time.monotonic() - started
    finally:
        engine.stop()
    return _figures(rt, "dbos", elapsed, count)


def run_direct(count: int, folder: Path) -> dict[str, float]:
    """The peer: the same steps, called in-line, one task at a time."""
    rt = _runtime(folder)
    providers = Providers(lambda: rt.config)
    runner = PhaseRunner(
        rt.db,
        lambda: rt.config,
        rt.clock,
        ToolDispatcher(rt.db, lambda: rt.config, rt.clock, providers),
        "bench",
    )
    queued: list[str] = []
    scheduler = Scheduler(rt, lambda task_id, _provider, _first: queued.append(task_id))
    started = time.monotonic()
    _seed(rt, count)
    while True:
        scheduler.claim_ready(rt.clock.now())
        scheduler.hand_over(rt.clock.now())
        if not queued:
            break
        while queued:
            task_id = queued.pop()
            start = runner.start(task_id)
            if start.skip or start.blocked:
                continue
            outcome = runner.attempt(task_id, 1)
            if outcome.kind == OK:
                runner.complete(task_id, outcome.output)
            else:
                runner.fail(task_id, outcome.error or "failed")
    elapsed = time.monotonic() - started
    return _figures(rt, "direct", elapsed, count)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--plans", type=int, default=50)
    args = parser.parse_args()
    configure_logging(logging.WARNING)
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        direct = run_direct(args.plans, Path(a))
        engine = run_engine(args.plans, Path(b))
    overhead = engine["wall_ms_per_phase"] - direct["wall_ms_per_phase"]
    seconds = args.plans / engine["plans_per_minute"] * 60
    print(
        f"ratio dbos/direct wall per phase: {engine['wall_ms_per_phase'] / direct['wall_ms_per_phase']:.2f}x"
    )
    print(f"engine overhead per phase (dbos wall/phase - direct wall/phase): {overhead:.1f} ms")
    ok = overhead < 20 and seconds < 60
    print(
        f"targets (overhead < 20 ms/phase, {args.plans} plans in {seconds:.1f}s < 60 s): {'met' if ok else 'NOT met'}"
    )


if __name__ == "__main__":
    main()
