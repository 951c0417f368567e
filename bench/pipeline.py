"""Pipeline throughput.

Default: N plans on the offline provider (zero latency) through the DBOS engine, on SQLite. Peer, measured
in the same run: the same runner steps called directly in one thread (no DBOS, no queue), which is the floor
the engine's durability and concurrency cost is measured against.

    .venv/bin/python bench/pipeline.py --plans 50

Scale-out (`--workers`): for each worker count, a fresh PostgreSQL database on the server of
`--database-url`, that many real `storyloom worker` processes, and N plans whose every LLM call takes
`--llm-latency` (the offline provider's `slow` fault). Prints plans per minute and the ratio to one worker.

    .venv/bin/python bench/pipeline.py --workers 1,2,4 --plans 24 --llm-latency 2s \
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storyloom.clock import SystemClock  # noqa: E402
from storyloom.config import parse_config  # noqa: E402
from storyloom.engine.engine import Engine  # noqa: E402
from storyloom.engine.scheduler import Scheduler  # noqa: E402
from storyloom.logs import configure_logging  # noqa: E402
from storyloom.pipeline.attempt import OK  # noqa: E402
from storyloom.pipeline.dispatcher import ToolDispatcher  # noqa: E402
from storyloom.pipeline.providers import Providers  # noqa: E402
from storyloom.pipeline.runner import PhaseRunner  # noqa: E402
from storyloom.runtime import Runtime  # noqa: E402
from storyloom.server import prepare  # noqa: E402
from storyloom.services.catalog import create_agent, create_persona  # noqa: E402
from storyloom.services.plans import PlanRequest, create_plan  # noqa: E402
from storyloom.store.db import Database, normalize_url  # noqa: E402
from storyloom.store.tables import backlog_items, leases, planner_executions, plans, tasks  # noqa: E402

CONFIG = {
    "pipeline": {"chapters": 3, "scenes_per_chapter": 2, "concurrency": 16, "critique": {"enabled": True}}
}


def _runtime(folder: Path, url: str | None = None, config: dict | None = None) -> Runtime:
    rt = Runtime(
        config=parse_config(config or CONFIG),
        db=Database(url or f"sqlite:///{folder / 'storyloom.db'}"),
        clock=SystemClock(),
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


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def _fresh_database(server_url: str, name: str) -> str:
    admin = create_engine(
        make_url(normalize_url(server_url)).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(normalize_url(server_url)).set(database=name).render_as_string(hide_password=False)


def run_workers(
    workers: int, count: int, server_url: str, latency: str, concurrency: int, folder: Path
) -> float:
    """Plans per minute with `workers` real worker processes on a fresh PostgreSQL database."""
    url = _fresh_database(server_url, f"storyloom_bench_w{workers}_{os.getpid()}")
    config = {
        "pipeline": {"chapters": 1, "scenes_per_chapter": 1, "concurrency": concurrency},
        "llm": {"faults": [{"phase": "*", "mode": "slow", "delay": latency}]},
    }
    config_path = folder / f"workers-{workers}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    rt = _runtime(folder, url, config)
    env = {**os.environ, "STORYLOOM_DATABASE_URL": url, "STORYLOOM_DATA_DIR": str(folder)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "storyloom", "worker", "--config", str(config_path)],
            env={**env, "STORYLOOM_WORKER_ID": f"bench-{n}"},
            stdout=subprocess.DEVNULL,
            stderr=(folder / f"worker-{workers}-{n}.log").open("w"),
        )
        for n in range(workers)
    ]
    try:

        def beating() -> bool:
            with rt.db.read() as conn:
                return (
                    conn.execute(
                        select(func.count()).select_from(leases).where(leases.c.name.like("worker:%"))
                    ).scalar()
                    == workers
                )

        _wait(beating, 120, f"{workers} workers to start")
        started = time.monotonic()
        _seed(rt, count)
        _wait(lambda: not _incomplete(rt), 1800, f"{count} plans on {workers} workers")
        elapsed = time.monotonic() - started
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=60)
        rt.db.dispose()
        _drop(server_url, url)
    per_minute = count / elapsed * 60
    print(f"{workers} worker(s): {count} plans in {elapsed:.1f}s = {per_minute:.1f} plans/min", flush=True)
    return per_minute


def _drop(server_url: str, url: str) -> None:
    admin = create_engine(
        make_url(normalize_url(server_url)).set(database="postgres"), isolation_level="AUTOCOMMIT"
    )
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


def scale_out(args: argparse.Namespace) -> None:
    counts = [int(n) for n in args.workers.split(",")]
    print(
        f"scale-out: {args.plans} plans, {args.llm_latency} per LLM call, concurrency {args.concurrency} per worker",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as folder:
        rates = {
            n: run_workers(n, args.plans, args.database_url, args.llm_latency, args.concurrency, Path(folder))
            for n in counts
        }
    for n, rate in rates.items():
        print(f"{n} worker(s): {rate / rates[counts[0]]:.2f}x the plans per minute of {counts[0]} worker(s)")
    if 1 in rates and 4 in rates:
        ratio = rates[4] / rates[1]
        print(f"target (4 workers >= 3.0x one worker): {ratio:.2f}x {'met' if ratio >= 3.0 else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--plans", type=int, default=50)
    parser.add_argument("--workers", help="scale-out mode: worker counts to compare, e.g. 1,2,4")
    parser.add_argument("--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument(
        "--llm-latency", default="2s", help="scale-out mode: each LLM call's simulated latency"
    )
    parser.add_argument(
        "--concurrency", type=int, default=4, help="scale-out mode: phases at once per worker"
    )
    args = parser.parse_args()
    configure_logging(logging.WARNING)
    if args.workers:
        scale_out(args)
        return
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
