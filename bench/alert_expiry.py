"""Alert expiry: what the sweep costs idle, and how long it takes to resolve N expired alerts.

N alerts are posted through the ingest service (as `POST /api/v2/alerts` stores them) with an `endsAt`
one second ahead; an injected clock then moves two seconds on and the sweep resolves them, pass after
pass, each pass one transaction of at most `BATCH` alerts (one UPDATE, then their history, outbox rows and
audit events in one statement each). The idle figure is a pass with nothing due (a read only), which
every worker makes at most once a second.

    .venv/bin/python bench/alert_expiry.py --alerts 2000 20000 --batch 1000 20000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storyloom.alerting.expiry import BATCH, AlertExpiry  # noqa: E402
from storyloom.clock import FrozenClock  # noqa: E402
from storyloom.config import parse_config  # noqa: E402
from storyloom.runtime import Runtime  # noqa: E402
from storyloom.services.alerts import PostedAlert, ingest_alerts  # noqa: E402
from storyloom.store.db import Database  # noqa: E402
from storyloom.store.migrate import upgrade  # noqa: E402

POST_BATCH = 200  # alerts per ingest request, as a storm sends them


def measure(alerts: int, folder: Path, idle_passes: int, batch: int) -> None:
    db = Database(f"sqlite:///{folder / f'expiry-{alerts}-{batch}.db'}")
    upgrade(db)
    clock = FrozenClock()
    rt = Runtime(config=parse_config({}), db=db, clock=clock)
    sweep = AlertExpiry(rt, batch=batch)
    idle = []
    for _ in range(idle_passes):
        started = time.perf_counter()
        sweep.sweep()
        idle.append(time.perf_counter() - started)
    for start in range(0, alerts, POST_BATCH):
        batch = [
            PostedAlert(
                labels={"alertname": "Bench", "n": str(n)}, ends_at=clock.now() + timedelta(seconds=1)
            )
            for n in range(start, min(alerts, start + POST_BATCH))
        ]
        ingest_alerts(db, batch, clock.now())
    clock.advance(timedelta(seconds=2))
    started = time.perf_counter()
    passes = []
    resolved = 0
    while resolved < alerts:
        started_pass = time.perf_counter()
        done = len(sweep.sweep())
        passes.append(time.perf_counter() - started_pass)
        assert done, f"resolved {resolved} of {alerts}, then nothing"
        resolved += done
    took = time.perf_counter() - started
    print(
        f"{alerts} expired alerts resolved in {len(passes)} passes of <= {sweep.batch}: {took * 1000:.0f} ms "
        f"({alerts / took:,.0f}/s), longest pass (write lock held) {max(passes) * 1000:.0f} ms; "
        f"idle pass p50 {statistics.median(idle) * 1e6:.0f} µs over {idle_passes}"
    )
    db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--idle-passes", type=int, default=500)
    parser.add_argument(
        "--batch", type=int, nargs="+", default=[BATCH], help="alerts per pass (several: compare)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="storyloom-expiry-") as folder:
        for alerts in args.alerts:
            for batch in args.batch:
                measure(alerts, Path(folder), args.idle_passes, batch)


if __name__ == "__main__":
    main()
