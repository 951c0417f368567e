"""kill -9 soak: plans running with alerts firing, a real `storyloom run` SIGKILLed at seeded random points.

Each round starts a plan (its chapter architect times out once, so `tool:timeout` fires and the item's
completion resolves it) and ingests probe alerts, then waits a seeded random delay and SIGKILLs the whole
process group, and starts it again on the same data. After the last round every plan must complete, no
item may have more than one successful execution, `attempts` must equal the executions recorded, and the
loopback receiver process must have received every alert firing and, once resolved, its resolved notice.

Used by tests/e2e/test_kill_soak.py (a few kill points) and bench/soak.py (`make soak`, 20 points).
"""

from __future__ import annotations

import base64
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select

from storyloom.store.db import Database
from storyloom.store.tables import alerts, backlog_items, planner_executions
from tests.support.receiver_process import ReceiverProcess
from tests.support.server import ServerProcess, free_port, seed_author, wait_for

PROBE = "SoakProbe"
# The alerts the soak causes; each must fire, resolve, and reach the receiver both ways.
CAUSED = ("tool:timeout", PROBE)


@dataclass
class SoakResult:
    seed: int
    kills: int
    kill_delays: list[float] = field(default_factory=list)
    restart_seconds: list[float] = field(default_factory=list)
    plans: dict[str, str] = field(default_factory=dict)  # plan id → status
    items: int = 0
    successes_per_item: Counter[int] = field(default_factory=Counter)  # successes → number of items
    attempts_mismatch: list[str] = field(default_factory=list)
    caused_alerts: dict[str, str] = field(default_factory=dict)  # fingerprint → status, of the CAUSED kinds
    other_alerts: dict[str, str] = field(default_factory=dict)  # alert id → status, anything else that fired
    missing_firing: list[str] = field(default_factory=list)
    missing_resolved: list[str] = field(default_factory=list)
    notifications: int = 0
    unsigned: int = 0
    cut_off: int = 0  # requests whose sender was killed mid-body (not verifiable, sent again after restart)
    settle_seconds: float = 0.0
    total_seconds: float = 0.0

    def problems(self) -> list[str]:
        """Every broken promise, in words; empty when the soak held."""
        found = []
        if incomplete := {p: s for p, s in self.plans.items() if s != "complete"}:
            found.append(f"plans not complete: {incomplete}")
        if twice := {n: c for n, c in self.successes_per_item.items() if n != 1}:
            found.append(f"items by number of successful executions (want all 1): {twice}")
        if self.attempts_mismatch:
            found.append(f"attempts differ from the executions recorded: {self.attempts_mismatch}")
        if unresolved := [fp for fp, s in self.caused_alerts.items() if s != "resolved"]:
            found.append(f"caused alerts not resolved: {unresolved}")
        if not self.caused_alerts:
            found.append("no alert fired")
        if self.missing_firing:
            found.append(f"firing never delivered: {self.missing_firing}")
        if self.missing_resolved:
            found.append(f"resolved notice never delivered: {self.missing_resolved}")
        if self.unsigned:
            found.append(f"{self.unsigned} whole notifications with an invalid signature")
        return found

    def summary(self) -> str:
        delays = ", ".join(f"{d:.2f}" for d in self.kill_delays)
        restarts = sorted(self.restart_seconds)
        median = restarts[len(restarts) // 2] if restarts else 0.0
        return "\n".join(
            [
                f"seed {self.seed}: {self.kills} kill -9 at {delays} s after each restart",
                f"plans: {len(self.plans)}, complete: {sum(s == 'complete' for s in self.plans.values())}",
                f"items: {self.items}, by successful executions: {dict(self.successes_per_item)}",
                f"attempts = executions recorded: {not self.attempts_mismatch}",
                f"caused alerts: {len(self.caused_alerts)}, resolved: "
                f"{sum(s == 'resolved' for s in self.caused_alerts.values())}; other alerts: {self.other_alerts}",
                f"notifications received: {self.notifications}, missing firing: {len(self.missing_firing)}, "
                f"missing resolved: {len(self.missing_resolved)}, bad signatures: {self.unsigned}, "
                f"cut off mid-request by a kill: {self.cut_off}",
                f"restart to ready: median {median:.2f} s, max {max(restarts, default=0.0):.2f} s",
                f"settle after the last kill: {self.settle_seconds:.1f} s, total: {self.total_seconds:.1f} s",
            ]
        )


def soak_config(receiver_url: str) -> dict[str, Any]:
    return {
        "pipeline": {"chapters": 2, "scenes_per_chapter": 1, "retry_backoff": "200ms"},
        "llm": {
            "faults": [
                {"phase": "chapter_architect", "mode": "timeout", "times": 1, "delay": "300ms"},
                {"phase": "*", "mode": "slow", "delay": "150ms"},
            ]
        },
        "alerting": {
            "receivers": [
                {
                    "name": "ops-webhook",
                    "url": receiver_url,
                    "secret_env": "OPS_WEBHOOK_SECRET",
                    "retry": {"schedule": ["0s", "1s", "2s"], "max_age": "10m"},
                }
            ],
            "route": {
                "receiver": "ops-webhook",
                "group_by": ["..."],
                "group_wait": "0s",
                "group_interval": "1s",
                "repeat_interval": "4h",
            },
        },
    }


def _post(server: ServerProcess, path: str, body: Any) -> Any:
    """POST to a server that just came up, again while it still meets a closed socket; returns the JSON."""

    def attempt() -> Any:
        try:
            response = server.post(path, body)
        except httpx.TransportError:
            return None
        response.raise_for_status()
        return response.json()

    return wait_for(attempt, timeout=30, interval=0.1, message=f"POST {path}")


def _settles(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll until `predicate` holds or `timeout` passes; the result's `problems` say what did not settle."""
    try:
        return bool(wait_for(predicate, timeout=timeout, interval=0.5, message="the soak to settle"))
    except AssertionError:
        return False


def run_soak(
    workdir: Path,
    *,
    seed: int,
    kills: int,
    max_delay: float = 2.5,
    probes_per_round: int = 2,
    settle_timeout: float = 180.0,
) -> SoakResult:
    """Run the soak in `workdir` and return what it found (see `SoakResult.problems`)."""
    began = time.monotonic()
    rng = random.Random(seed)
    result = SoakResult(seed=seed, kills=kills)
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    receiver = ReceiverProcess(free_port(), workdir / "received.jsonl", secret=secret).start()
    config = soak_config(receiver.url)
    data = workdir / "data"

    def server_on(port: int | None = None) -> ServerProcess:
        t0 = time.monotonic()
        started = ServerProcess(data, config=config, env={"OPS_WEBHOOK_SECRET": secret}, port=port).start()
        result.restart_seconds.append(time.monotonic() - t0)
        return started

    server = server_on()
    probes: list[dict[str, str]] = []
    try:
        persona_id, agent_id = seed_author(server)
        for round_number in range(kills):
            plan = _post(
                server,
                "/api/fiction/plans",
                {
                    "name": f"Soak {round_number}",
                    "premise": f"Soak round {round_number}: a harbor that forgets its ships.",
                    "persona_id": persona_id,
                    "agent_id": agent_id,
                },
            )
            result.plans[plan["plan_id"]] = "created"
            batch = [
                {"alertname": PROBE, "round": str(round_number), "probe": str(j), "severity": "warning"}
                for j in range(probes_per_round)
            ]
            _post(server, "/api/v2/alerts", [{"labels": labels} for labels in batch])
            probes += batch
            delay = rng.uniform(0.05, max_delay)
            result.kill_delays.append(delay)
            time.sleep(delay)  # the seeded kill point, not a wait for work
            server.kill()
            server.client.close()
            server = server_on(server.port)
        settle = time.monotonic()
        _settles(
            lambda: all(server.get(f"/api/fiction/plans/{p}")["status"] == "complete" for p in result.plans),
            settle_timeout,
        )
        now = datetime.now(UTC).isoformat()
        _post(server, "/api/v2/alerts", [{"labels": labels, "endsAt": now} for labels in probes])
        db = Database(server.env.get("STORYLOOM_DATABASE_URL") or f"sqlite:///{data / 'storyloom.db'}")
        try:
            _settles(lambda: _delivered(db, receiver, result), settle_timeout)
            _count_executions(db, result)
        finally:
            db.dispose()
        result.settle_seconds = time.monotonic() - settle
        for plan_id in result.plans:
            result.plans[plan_id] = server.get(f"/api/fiction/plans/{plan_id}")["status"]
    finally:
        server.stop()
        receiver.stop()
        result.total_seconds = time.monotonic() - began
    return result


def _delivered(db: Database, receiver: ReceiverProcess, result: SoakResult) -> bool:
    """Compare the alerts table with what the receiver got; true once every caused alert went both ways."""
    with db.read() as conn:
        rows = conn.execute(select(alerts.c.fingerprint, alerts.c.alert_id, alerts.c.status)).all()
    received = receiver.received()
    seen = {(a["fingerprint"], a["status"]) for _, a in receiver.alerts()}
    result.notifications = len(received)
    result.unsigned = sum(r["complete"] and not r["signature_valid"] for r in received)
    result.cut_off = sum(not r["complete"] for r in received)
    result.caused_alerts = {r.fingerprint: r.status for r in rows if r.alert_id in CAUSED}
    result.other_alerts = {r.alert_id: r.status for r in rows if r.alert_id not in CAUSED}
    result.missing_firing = [r.fingerprint for r in rows if (r.fingerprint, "firing") not in seen]
    result.missing_resolved = [
        r.fingerprint for r in rows if r.status == "resolved" and (r.fingerprint, "resolved") not in seen
    ]
    settled = all(status == "resolved" for status in result.caused_alerts.values())
    return (
        bool(result.caused_alerts) and settled and not result.missing_firing and not result.missing_resolved
    )


def _count_executions(db: Database, result: SoakResult) -> None:
    with db.read() as conn:
        items = conn.execute(
            select(backlog_items.c.plan_id, backlog_items.c.backlog_id, backlog_items.c.attempts)
        ).all()
        executions = {
            (r.plan_id, r.backlog_id): (r.runs, r.successes)
            for r in conn.execute(
                select(
                    planner_executions.c.plan_id,
                    planner_executions.c.backlog_id,
                    func.count().label("runs"),
                    func.count().filter(planner_executions.c.outcome == "success").label("successes"),
                ).group_by(planner_executions.c.plan_id, planner_executions.c.backlog_id)
            )
        }
    result.items = len(items)
    result.successes_per_item = Counter(executions.get((i.plan_id, i.backlog_id), (0, 0))[1] for i in items)
    result.attempts_mismatch = [
        f"{i.plan_id}/{i.backlog_id}: attempts {i.attempts}, executions {executions.get((i.plan_id, i.backlog_id), (0, 0))[0]}"
        for i in items
        if i.attempts != executions.get((i.plan_id, i.backlog_id), (0, 0))[0]
    ]
