"""Alert storm: N distinct alerts through `POST /api/v2/alerts`, Storyloom against Alertmanager.

For each system in turn (Storyloom on SQLite; Storyloom on PostgreSQL when 127.0.0.1:5432 answers, in a
fresh database dropped after; Alertmanager, Debian's `prometheus-alertmanager`), the same N alerts with
distinct `seq` labels are posted in batches of 200 by one keep-alive client, routed with
`group_by: ['...']` and `group_wait: 0s` to one loopback webhook receiver that records when each alert
arrives. Storyloom runs as `storyloom run` (API, notifier and dispatcher in one process) and signs its
webhooks; every hop is committed before it is acknowledged.

Figures per system: ingest rate (alerts over the time from the first POST to the last acknowledgement),
delivered rate (alerts over the time from the first POST to the last arrival), p50/p95/p99 from the POST
of an alert's batch to its arrival, peak RSS and the RSS the storm added to the idle process; each with
its ratio to Alertmanager.

    .venv/bin/python bench/storm.py --alerts 2000 20000
    .venv/bin/python bench/storm.py --idle-cpu 60      # CPU of an idle `storyloom run` over a minute

Scale-out (`--pg-workers 1 3`): on PostgreSQL, one `storyloom api` that takes the storm and that many
`storyloom worker` processes that route and deliver it, instead of one `storyloom run` (RSS and CPU are
the whole process group's).
"""

from __future__ import annotations

import argparse
import base64
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from alert_latency import (  # noqa: E402
    ALERTMANAGER_ROUTE,
    Arrivals,
    alertmanager,
    alertmanager_binary,
    free_port,
    wait_http,
)

BATCH = 200
TOKEN = "sl_bench_admin_token_0123456789abcdef"
POSTGRES = ("127.0.0.1", 5432)
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class StormResult:
    system: str
    alerts: int
    arrived: int
    ingest_rate: float
    delivered_rate: float
    p50: float
    p95: float
    p99: float
    peak_rss_mb: float
    added_rss_mb: float
    cpu_seconds: float


# --- process metrics ----------------------------------------------------------------------------------


def _tree(pid: int) -> list[int]:
    """The process and its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return found


def rss_mb(pid: int) -> float:
    total = 0
    for member in _tree(pid):
        try:
            total += int(Path(f"/proc/{member}/statm").read_text().split()[1]) * PAGE
        except OSError:
            continue
    return total / 1e6


def cpu_seconds(pid: int) -> float:
    total = 0
    for member in _tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


class PeakRss:
    """Samples a process tree's RSS every 50 ms in a thread; `peak` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.idle = rss_mb(pid)
        self.peak = self.idle
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_mb(self.pid))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb(self.pid))


# --- the storm ----------------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


def storm(
    system: str,
    post: Callable[[list[dict[str, Any]]], None],
    pid: int,
    arrivals: Arrivals,
    count: int,
    timeout: float,
) -> StormResult:
    """Post `count` alerts in batches and wait for them all to arrive (or `timeout`)."""
    prefix = f"{system[:2]}{count}-"
    sent: dict[str, float] = {}
    rss = PeakRss(pid)
    cpu_before = cpu_seconds(pid)
    started = time.perf_counter()
    for first in range(0, count, BATCH):
        seqs = [f"{prefix}{n}" for n in range(first, min(count, first + BATCH))]
        at = time.perf_counter()
        post([{"labels": {"alertname": "storm", "seq": seq}} for seq in seqs])
        sent.update(dict.fromkeys(seqs, at))
    acknowledged = time.perf_counter()
    arrivals.wait_for(list(sent), timeout=timeout)
    rss.stop()
    cpu_used = cpu_seconds(pid) - cpu_before
    times = {s: arrivals.times[s] for s in sent if s in arrivals.times}
    latencies = sorted((times[s] - sent[s]) * 1000 for s in times)
    last = max(times.values()) if times else started
    return StormResult(
        system,
        count,
        len(times),
        count / (acknowledged - started),
        len(times) / (last - started) if times else 0.0,
        _pct(latencies, 0.50),
        _pct(latencies, 0.95),
        _pct(latencies, 0.99),
        rss.peak,
        rss.peak - rss.idle,
        cpu_used,
    )


def _poster(
    base: str, headers: dict[str, str]
) -> tuple[httpx.Client, Callable[[list[dict[str, Any]]], None]]:
    client = httpx.Client(base_url=base, headers=headers, timeout=120.0)

    def post(body: list[dict[str, Any]]) -> None:
        response = client.post("/api/v2/alerts", json=body)
        if response.status_code >= 300:
            raise RuntimeError(f"POST /api/v2/alerts answered {response.status_code}: {response.text[:300]}")

    return client, post


# --- the systems --------------------------------------------------------------------------------------


def _split_roles(port: int, config: Path, workers: int) -> list[str]:
    """One shell that starts `storyloom api` and `workers` workers, and ends them all when it is told to."""
    python = shlex.quote(sys.executable)
    roles = [f"{python} -m storyloom api --host 127.0.0.1 --port {port} --config {config} &"]
    roles += [
        f"STORYLOOM_WORKER_ID=storm-w{n} {python} -m storyloom worker --config {config} &"
        for n in range(1, workers + 1)
    ]
    return ["bash", "-c", f"trap 'trap - TERM INT; kill 0' TERM INT; {' '.join(roles)} wait"]


@contextmanager
def storyloom_server(
    receiver_url: str | None,
    database_url: str | None = None,
    profile: Path | None = None,
    workers: int = 0,
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`storyloom run` on a fresh data dir (and database), routed like the Alertmanager peer; under
    `py-spy record` (collapsed stacks, all threads) into `profile` when given; with `workers`, an API
    process and that many worker processes instead."""
    folder = Path(tempfile.mkdtemp())
    port = free_port()
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    config: dict[str, Any] = {"public_url": f"http://127.0.0.1:{port}"}
    if receiver_url is not None:
        config["alerting"] = {
            "receivers": [{"name": "bench", "url": receiver_url, "secret_env": "BENCH_WEBHOOK_SECRET"}],
            "route": ALERTMANAGER_ROUTE,
        }
    (folder / "storyloom.yaml").write_text(yaml.safe_dump(config))
    env = {
        **os.environ,
        "STORYLOOM_DATA_DIR": str(folder),
        "STORYLOOM_ADMIN_TOKEN": TOKEN,
        "BENCH_WEBHOOK_SECRET": secret,
    }
    if database_url:
        env["STORYLOOM_DATABASE_URL"] = database_url
    log = (folder / "server.log").open("ab")
    command = [sys.executable, "-m", "storyloom", "run", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--config", str(folder / "storyloom.yaml")]
    if workers:
        command = _split_roles(port, folder / "storyloom.yaml", workers)
    if profile is not None:
        spy = str(Path(sys.executable).parent / "py-spy")
        command = [spy, "record", "--format", "raw", "-o", str(profile), "--", *command]
    proc = subprocess.Popen(
        command,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=folder,
        start_new_session=bool(workers),  # the shell's `kill 0` ends its own group, not the bench
    )
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_http(f"{base}/readyz", timeout=90)
        except RuntimeError:
            log.flush()
            print((folder / "server.log").read_text(errors="replace")[-3000:], file=sys.stderr)
            raise
        yield base, proc
    finally:
        proc.send_signal(signal.SIGINT if profile is not None else signal.SIGTERM)  # py-spy writes on SIGINT
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        subprocess.run(["rm", "-rf", str(folder)], check=False)


def postgres_reachable() -> bool:
    try:
        with socket.create_connection(POSTGRES, timeout=1):
            return True
    except OSError:
        return False


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """A new database on the local PostgreSQL (user postgres), dropped afterwards."""
    import psycopg

    name = f"storyloom_storm_{os.getpid()}"
    admin = f"host={POSTGRES[0]} port={POSTGRES[1]} user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql+psycopg://postgres@{POSTGRES[0]}:{POSTGRES[1]}/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def run_storyloom(
    system: str,
    count: int,
    timeout: float,
    database_url: str | None = None,
    profile: Path | None = None,
    workers: int = 0,
) -> StormResult:
    arrivals = Arrivals()
    with storyloom_server(arrivals.url, database_url, profile, workers) as (base, proc):
        client, post = _poster(base, {"Authorization": f"Bearer {TOKEN}"})
        with client:
            return storm(system, post, proc.pid, arrivals, count, timeout)


def run_alertmanager(binary: str, count: int, timeout: float) -> StormResult:
    arrivals = Arrivals()
    with alertmanager(binary, arrivals.url) as (base, proc):
        client, post = _poster(base, {})
        with client:
            return storm("alertmanager", post, proc.pid, arrivals, count, timeout)


# --- report -------------------------------------------------------------------------------------------


def _ratio(ours: float, peer: float | None) -> str:
    if peer is None or peer == 0 or ours != ours or peer != peer:
        return ""
    return f" ({ours / peer:.2f}x)"


def report(results: list[StormResult]) -> None:
    peer = next((r for r in results if r.system == "alertmanager"), None)
    for r in results:
        p = peer if peer is not None and r is not peer else None
        print(
            f"{r.system:>20} {r.alerts:>6}: {r.arrived}/{r.alerts} arrived | "
            f"ingest {r.ingest_rate:,.0f}/s{_ratio(r.ingest_rate, p and p.ingest_rate)} | "
            f"delivered {r.delivered_rate:,.0f}/s{_ratio(r.delivered_rate, p and p.delivered_rate)} | "
            f"p50 {r.p50:,.0f} ms{_ratio(r.p50, p and p.p50)} | "
            f"p95 {r.p95:,.0f} ms{_ratio(r.p95, p and p.p95)} | "
            f"p99 {r.p99:,.0f} ms{_ratio(r.p99, p and p.p99)} | "
            f"peak RSS {r.peak_rss_mb:,.0f} MB{_ratio(r.peak_rss_mb, p and p.peak_rss_mb)} | "
            f"storm added {r.added_rss_mb:,.0f} MB{_ratio(r.added_rss_mb, p and p.added_rss_mb)} | "
            f"CPU {r.cpu_seconds:,.1f} s{_ratio(r.cpu_seconds, p and p.cpu_seconds)}"
        )


PROFILE_BUCKETS = (
    ("sqlalchemy", ("(sqlalchemy/",)),
    ("sqlite3 / psycopg driver", ("(sqlite3/", "(psycopg/", "execute (sqlalchemy/engine/default.py")),
    ("pydantic / fastapi / starlette / uvicorn", ("(pydantic", "(fastapi/", "(starlette/", "(uvicorn/")),
    ("httpx / httpcore", ("(httpx/", "(httpcore/")),
    ("json", ("(json/",)),
    ("dbos", ("(dbos/",)),
)
IDLE_FRAMES = ("wait (threading.py", "select (selectors.py", "(concurrent/futures/thread.py", "sleep")


def summarize_profile(path: Path, top: int = 12) -> None:
    """Share of the busy samples (idle waits left out) per library, and the hottest storyloom functions."""
    busy = 0
    buckets: dict[str, int] = {}
    own: dict[str, int] = {}
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        frames = stack.split(";")
        if any(mark in frames[-1] for mark in IDLE_FRAMES):
            continue
        count = int(count_text)
        busy += count
        for name, needles in PROFILE_BUCKETS:
            if any(n in frame for frame in frames for n in needles):
                buckets[name] = buckets.get(name, 0) + count
        ours = [f for f in frames if "(storyloom/" in f]
        if ours:
            own[ours[-1]] = own.get(ours[-1], 0) + count
    print(f"profile {path}: {busy} busy samples")
    for name, count in sorted(buckets.items(), key=lambda kv: -kv[1]):
        print(f"  {100 * count / max(busy, 1):5.1f}%  in {name}")
    print("  innermost storyloom frame:")
    for frame, count in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {100 * count / max(busy, 1):5.1f}%  {frame}")


def idle_cpu(seconds: float) -> None:
    """CPU of an idle `storyloom run` (no receivers, no plans, no alerts) over `seconds`, after a settle."""
    with storyloom_server(None) as (_, proc):
        time.sleep(5)  # past start-up work (migrations, DBOS launch, first passes)
        before, started = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(seconds)
        used, elapsed = cpu_seconds(proc.pid) - before, time.monotonic() - started
    print(
        f"idle storyloom run: {used:.2f} s CPU over {elapsed:.0f} s = {100 * used / elapsed:.2f}% of a core"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--alerts", type=int, nargs="+", default=[2000], help="storm sizes, e.g. 2000 20000")
    parser.add_argument("--systems", nargs="+", default=["sqlite", "postgres", "alertmanager"])
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for every arrival")
    parser.add_argument("--profile", type=Path, help="py-spy the SQLite run: collapsed stacks to this file")
    parser.add_argument("--idle-cpu", type=float, metavar="SECONDS", help="also measure an idle run's CPU")
    parser.add_argument(
        "--pg-workers",
        type=int,
        nargs="+",
        default=[],
        help="also run PostgreSQL as one API and N worker processes, for each N given (e.g. 1 3)",
    )
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    binary = alertmanager_binary()
    for count in args.alerts:
        results: list[StormResult] = []
        if "sqlite" in args.systems:
            results.append(run_storyloom("storyloom-sqlite", count, args.timeout, profile=args.profile))
            if args.profile is not None:
                summarize_profile(args.profile)
        if "postgres" in args.systems:
            if postgres_reachable():
                with fresh_postgres() as url:
                    results.append(run_storyloom("storyloom-postgres", count, args.timeout, url))
            else:
                print("PostgreSQL not reachable on 127.0.0.1:5432 — skipped")
        for workers in args.pg_workers:
            if postgres_reachable():
                with fresh_postgres() as url:
                    name = f"storyloom-pg-{workers}w"
                    results.append(run_storyloom(name, count, args.timeout, url, workers=workers))
        if "alertmanager" in args.systems:
            if binary is not None:
                results.append(run_alertmanager(binary, count, args.timeout))
            else:
                print("alertmanager: not installed (make bench-deps) — peer skipped")
        report(results)
    if args.idle_cpu:
        idle_cpu(args.idle_cpu)
    print(f"load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
