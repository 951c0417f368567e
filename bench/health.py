"""PlannerHealth and /metrics at scale: 100,000 backlog items, 1,000,000 planner executions and 50,000
alerts in a fresh SQLite file, then p50/p95 of `GET /api/diagnostics/planner` and `GET /metrics`
through the FastAPI TestClient (the whole request: auth, SQL, JSON or text rendering).

    .venv/bin/python bench/health.py                  # full size, 30 timed requests each
    .venv/bin/python bench/health.py --scale 0.1      # a tenth of everything, for a quick look

Seeding writes through the DB-API's executemany in a few transactions (the store's own text formats for
times and JSON), so it takes well under a minute. Also timed: one scheduled evaluation pass
(`health.evaluate.evaluate`), which is what keeps the evaluated alerts current in the background.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from fastapi.testclient import TestClient  # noqa: E402

from storyloom.api.app import create_app  # noqa: E402
from storyloom.clock import FrozenClock  # noqa: E402
from storyloom.config import parse_config  # noqa: E402
from storyloom.domain.alerts import fingerprint  # noqa: E402
from storyloom.health.evaluate import evaluate  # noqa: E402
from storyloom.health.report import planner_health  # noqa: E402
from storyloom.runtime import Runtime  # noqa: E402
from storyloom.server import prepare  # noqa: E402
from storyloom.services.tokens import create_token  # noqa: E402
from storyloom.store.db import Database  # noqa: E402

NOW = datetime(2026, 11, 25, 20, 0, tzinfo=UTC)
PHASES = ("vision", "world_bible", "iterative", "chapter_architect", "scroll_refiner", "scene_weaver")
PLANNERS = (
    "Vision Planner",
    "World Bible Manager",
    "Iterative Planner",
    "Chapter Architect",
    "Scroll Refiner",
    "Scene Weaver",
)
ALERT_IDS = (
    "planner:phase-failed",
    "planner:phase-blocked",
    "tool:failed",
    "backlog:stale",
    "obligation:open",
    "planner:critique-exhausted",
    "backlog:flapping",
    "tool:timeout",
)
SEVERITY = {"planner:phase-failed": "error", "obligation:open": "info"}


def ts(moment: datetime) -> str:
    """The text SQLAlchemy's SQLite DateTime stores (naive UTC)."""
    return moment.astimezone(UTC).replace(tzinfo=None).strftime("%Y-%m-%d %H:%M:%S.%f")


def batched(rows: Iterator[tuple[Any, ...]], size: int = 50_000) -> Iterator[list[tuple[Any, ...]]]:
    batch: list[tuple[Any, ...]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def insert(cur: Any, table: str, columns: str, rows: Iterator[tuple[Any, ...]]) -> int:
    marks = ",".join("?" * len(columns.split(",")))
    total = 0
    for batch in batched(rows):
        cur.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", batch)
        total += len(batch)
    return total


def seed(
    rt: Runtime,
    *,
    plans: int,
    items_per_plan: int,
    waiting: int,
    executions: int,
    alerts: int,
    rng: random.Random,
) -> None:
    raw = rt.db.engine.raw_connection()
    try:
        cur = raw.cursor()
        cur.execute("BEGIN")
        now = ts(NOW)
        cur.execute(
            "INSERT INTO personas (id, name, kind, created_at) VALUES ('persona-b', 'Bench Author', "
            "'author', ?)",
            (now,),
        )
        cur.execute(
            "INSERT INTO agents (id, name, persona_id, provider, model, created_at) VALUES "
            "('agent-b', 'bench', 'persona-b', 'offline', 'm', ?)",
            (now,),
        )
        insert(
            cur,
            "projects",
            "id,title,created_at",
            ((f"project-{p}", f"Bench {p}", now) for p in range(plans)),
        )

        def plan_status(p: int) -> str:
            return "in_progress" if p % 10 < 8 else ("complete" if p % 10 == 8 else "archived")

        insert(
            cur,
            "plans",
            "id,project_id,name,premise,persona_id,agent_id,branch_slug,provider,model,status,"
            "settings,created_at,updated_at",
            (
                (
                    f"plan-{p}",
                    f"project-{p}",
                    f"Bench {p}",
                    "A premise.",
                    "persona-b",
                    "agent-b",
                    "main",
                    "offline",
                    "m",
                    plan_status(p),
                    "{}",
                    ts(NOW - timedelta(days=3)),
                    ts(NOW - timedelta(minutes=p % 600)),
                )
                for p in range(plans)
            ),
        )

        items: list[tuple[Any, ...]] = []
        task_rows: list[tuple[Any, ...]] = []
        for p in range(plans):
            running = plan_status(p) == "in_progress"
            # a running plan: its items complete up to one frontier item, then `waiting` items whose input is
            # not complete yet (phases add most items only once their producer completed: 0-2 in practice)
            done = items_per_plan - 1 - rng.randint(0, 2 * waiting) if running else items_per_plan
            created = NOW - timedelta(days=2, minutes=p % 1000)
            for i in range(items_per_plan):
                backlog_id = f"item-{i}"
                inputs = json.dumps([f"item-{i - 1}"] if i else [])
                task_id, ready_at, updated, last_error = None, None, created, None
                status = "complete" if i < done else "pending"
                if i == done and running:
                    roll = rng.random()
                    if roll < 0.5:
                        status, task_id = "in_progress", f"task-{p}-{i}"
                        updated = NOW - timedelta(minutes=rng.randrange(1, 200))
                        task_rows.append((task_id, f"plan-{p}", backlog_id, "running"))
                    elif roll < 0.6:
                        status, last_error = "blocked", "lore gate: requirements not ready: harbor-law"
                        task_id = f"task-{p}-{i}"
                        task_rows.append((task_id, f"plan-{p}", backlog_id, "blocked"))
                    elif roll < 0.65:
                        status, task_id, last_error = "failed", f"task-{p}-{i}", "phase failed"
                        task_rows.append((task_id, f"plan-{p}", backlog_id, "failed"))
                    elif roll < 0.97:  # claimed by the scheduler: stamped ready, queued task
                        ready_at = NOW - timedelta(seconds=rng.randrange(1, 1200))
                        task_id = f"task-{p}-{i}"
                        task_rows.append((task_id, f"plan-{p}", backlog_id, "queued"))
                    # else: ready but not yet claimed (no ready_at): found through its inputs
                if status == "complete":
                    task_id = f"task-{p}-{i}"
                    task_rows.append((task_id, f"plan-{p}", backlog_id, "succeeded"))
                items.append(
                    (
                        f"plan-{p}",
                        backlog_id,
                        f"Item {i}",
                        PHASES[min(i, 5)],
                        status,
                        inputs,
                        "[]",
                        "agent-b",
                        "persona-b",
                        "offline",
                        "m",
                        task_id,
                        1,
                        last_error,
                        "main",
                        ts(ready_at) if ready_at else None,
                        0,
                        ts(created),
                        ts(updated),
                    )
                )
        insert(
            cur,
            "backlog_items",
            "plan_id,backlog_id,description,phase,status,inputs,outputs,agent_id,"
            "persona_id,provider,model,task_id,attempts,last_error,branch_slug,ready_at,priority,created_at,"
            "updated_at",
            iter(items),
        )
        insert(
            cur,
            "tasks",
            "task_id,plan_id,backlog_id,agent_id,provider,model,status,reason,attempt,created_at",
            ((t, pl, b, "agent-b", "offline", "m", s, "schedule", 1, now) for t, pl, b, s in task_rows),
        )

        span = timedelta(days=30).total_seconds()

        def executions_rows() -> Iterator[tuple[Any, ...]]:
            for n in range(executions):
                finished = NOW - timedelta(seconds=span * (1 - n / executions))
                phase = rng.randrange(6)
                roll = rng.random()
                outcome = (
                    "success"
                    if roll < 0.92
                    else "partial"
                    if roll < 0.95
                    else "failed"
                    if roll < 0.99
                    else "cancelled"
                )
                latency = min(rng.lognormvariate(math.log(20_000), 0.8), 900_000.0)
                critique = rng.choice(("idle", "used", "used", "used", "count-exhausted", "disabled"))
                yield (
                    f"plan-{n % plans}",
                    f"item-{n % items_per_plan}",
                    f"exec-task-{n}",
                    1,
                    PLANNERS[phase],
                    PHASES[phase],
                    outcome,
                    latency,
                    rng.randrange(500, 3000),
                    rng.randrange(100, 2000),
                    critique,
                    rng.randrange(3),
                    rng.randrange(400),
                    "offline",
                    "m",
                    "agent-b",
                    "persona-b",
                    "timeout" if outcome == "failed" else None,
                    "{}",
                    ts(finished - timedelta(milliseconds=latency)),
                    ts(finished),
                )

        insert(
            cur,
            "planner_executions",
            "plan_id,backlog_id,task_id,attempt,planner_name,phase,outcome,latency_ms,"
            "prompt_tokens,completion_tokens,critique_status,critique_count,critique_tokens,provider,model,"
            "agent_id,persona_id,error,diagnostics,started_at,finished_at",
            executions_rows(),
        )
        insert(
            cur,
            "transcripts",
            "task_id,attempt,role,content,created_at",
            (
                (f"exec-task-{n}", 1, role, f"{role} text of execution {n} " * 40, now)
                for n in range(max(0, executions - 20_000), executions)
                for role in ("user", "assistant")
            ),
        )

        firing = alerts // 25

        def alert_rows() -> Iterator[tuple[Any, ...]]:
            for n in range(alerts):
                alert_id = ALERT_IDS[n % len(ALERT_IDS)]
                severity = SEVERITY.get(alert_id, "warning")
                labels = {
                    "alert_id": alert_id,
                    "severity": severity,
                    "source": "planner_runner",
                    "plan_id": f"plan-{n % plans}",
                    "backlog_id": f"item-{n % items_per_plan}",
                    "task_id": f"t-{n}",
                }
                fp = fingerprint({k: v for k, v in labels.items() if k != "severity"})
                status = "firing" if n < firing else "resolved"
                started = NOW - timedelta(minutes=n % 5000)
                yield (
                    fp,
                    alert_id,
                    status,
                    severity,
                    alert_id,
                    f"bench alert {n}",
                    json.dumps(labels),
                    "{}",
                    "planner_runner",
                    labels["plan_id"],
                    ts(started),
                    None if status == "firing" else ts(started + timedelta(minutes=5)),
                    ts(started),
                    ts(started),
                )

        alert_list = list(alert_rows())
        insert(
            cur,
            "alerts",
            "fingerprint,alert_id,status,severity,title,description,labels,annotations,source,"
            "plan_id,starts_at,ends_at,generated_at,updated_at",
            iter(alert_list),
        )
        insert(
            cur,
            "aggregation_groups",
            "group_key,route_id,receiver,group_labels,first_alert_at,last_firing,last_resolved",
            ((f"g-{r}", "0", r, "{}", now, "[]", "[]") for r in ("ops", "pager")),
        )
        insert(
            cur,
            "group_members",
            "group_key,fingerprint,added_at",
            ((f"g-{'ops' if n % 3 else 'pager'}", row[0], now) for n, row in enumerate(alert_list[:firing])),
        )

        def event_rows() -> Iterator[tuple[Any, ...]]:
            for n in range(200_000):
                kind = "fiction.backlog.telemetry" if n % 4 else "fiction.backlog.action"
                plan = f"plan-{n % plans}"
                payload = {
                    "plan_id": plan,
                    "backlog_id": f"item-{n % items_per_plan}",
                    "status": "complete",
                    "previous_status": "in_progress",
                    "reason": "phase-complete",
                    "action": "resume",
                }
                yield (
                    kind,
                    plan,
                    payload["backlog_id"],
                    json.dumps(payload),
                    ts(NOW - timedelta(seconds=200_000 - n)),
                )

        insert(cur, "workflow_events", "kind,plan_id,backlog_id,payload,created_at", event_rows())

        def delivery_rows() -> Iterator[tuple[Any, ...]]:
            for n in range(20_000):
                status = "delivered" if n % 50 else rng.choice(("dead", "pending", "failed"))
                created = NOW - timedelta(seconds=n * 20)
                yield (
                    f"d-{n}",
                    f"w-{n}",
                    "ops" if n % 3 else "pager",
                    "webhook",
                    f"g-{n % 7}",
                    status,
                    "firing",
                    "[]",
                    "{}",
                    1,
                    ts(created),
                    rng.uniform(5, 400) if status == "delivered" else None,
                )

        insert(
            cur,
            "deliveries",
            "id,webhook_id,receiver,receiver_type,group_key,status,alert_status,fingerprints,"
            "notification,attempts,created_at,latency_ms",
            delivery_rows(),
        )
        insert(
            cur,
            "world_bible_entries",
            "plan_id,slug,category,name,version,active,content,created_at",
            (
                (
                    f"plan-{p}",
                    f"characters:{c}",
                    "characters",
                    c,
                    1,
                    1,
                    "{}",
                    ts(NOW - timedelta(hours=p % 12)),
                )
                for p in range(plans)
                for c in ("Ada", "Bram", "Cole")
            ),
        )
        cur.execute("COMMIT")
        cur.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        raw.close()


def timed(call: Callable[[], Any], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        out.append((time.perf_counter() - started) * 1000)
    return out


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every row count (default 1)")
    parser.add_argument("--runs", type=int, default=30, help="timed requests per endpoint (default 30)")
    parser.add_argument(
        "--waiting",
        type=int,
        default=2,
        help="average pending items per running plan still waiting on an incomplete input (default 2)",
    )
    parser.add_argument("--keep", help="seed into this file instead of a temporary one")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    folder = Path(tempfile.mkdtemp(prefix="storyloom-bench-health-"))
    path = Path(args.keep) if args.keep else folder / "storyloom.db"
    plans = max(10, int(1000 * args.scale))
    sizes = {
        "waiting": args.waiting,
        "plans": plans,
        "items_per_plan": 100,
        "executions": int(1_000_000 * args.scale),
        "alerts": int(50_000 * args.scale),
    }
    rt = Runtime(config=parse_config({}), db=Database(f"sqlite:///{path}"), clock=FrozenClock(NOW))
    prepare(rt)
    started = time.perf_counter()
    seed(rt, rng=random.Random(7), **sizes)
    print(
        f"seeded {plans * 100:,} backlog items, {sizes['executions']:,} executions, {sizes['alerts']:,} alerts "
        f"in {time.perf_counter() - started:.1f}s ({path.stat().st_size / 1e6:.0f} MB)"
    )

    with rt.db.begin() as conn:
        token, _ = create_token(conn, name="bench", role="viewer", agent_ids=[], now=NOW)
    client = TestClient(create_app(rt))
    headers = {"Authorization": f"Bearer {token}"}

    def report() -> None:
        response = client.get("/api/diagnostics/planner", headers=headers)
        assert response.status_code == 200, response.text

    def metrics() -> None:
        response = client.get("/metrics")
        assert response.status_code == 200, response.text

    evaluation = timed(lambda: evaluate(rt), 1)[0]
    evaluations = timed(lambda: evaluate(rt), 5)
    os.sync()  # let the seeding's writes reach the disk before timing reads
    for _ in range(3):  # warm-up: first connections, statement caches, the running execution totals
        report()
    report_ms = timed(report, args.runs)
    cpu_started = time.process_time()
    direct_ms = timed(lambda: planner_health(rt), args.runs)
    direct_cpu = (time.process_time() - cpu_started) * 1000 / args.runs
    cold_metrics = timed(metrics, 1)[0]  # first scrape aggregates every execution once
    metrics_ms = timed(metrics, args.runs)
    body = client.get("/api/diagnostics/planner", headers=headers).json()
    print(
        f"report status {body['status']}, {len(body['alerts'])} alerts shown, "
        f"{body['telemetry']['total_executions']:,} executions, queue {body['slo']['queue']}"
    )
    print(
        f"GET /api/diagnostics/planner  p50 {pct(report_ms, 0.5):6.1f} ms  p95 {pct(report_ms, 0.95):6.1f} ms  "
        f"(n={args.runs}, mean {statistics.mean(report_ms):.1f})"
    )
    print(
        f"GET /metrics                  p50 {pct(metrics_ms, 0.5):6.1f} ms  p95 {pct(metrics_ms, 0.95):6.1f} ms  "
        f"(n={args.runs}; first scrape {cold_metrics:.0f} ms)"
    )
    print(
        f"  planner_health(rt) alone    p50 {pct(direct_ms, 0.5):6.1f} ms  p95 {pct(direct_ms, 0.95):6.1f} ms  "
        f"(CPU {direct_cpu:.1f} ms per report; load average {os.getloadavg()[0]:.2f})"
    )
    print(f"health evaluation pass        first {evaluation:.0f} ms, then p50 {pct(evaluations, 0.5):.0f} ms")
    target = pct(report_ms, 0.95) < 100
    print(f"target p95 < 100 ms for the report: {'met' if target else 'MISSED'}")


if __name__ == "__main__":
    main()
