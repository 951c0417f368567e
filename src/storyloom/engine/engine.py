"""The worker role: DBOS (durable phases), the scheduler, and the alerting loops, started and stopped together."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
import structlog
from dbos import DBOS, DBOSConfig, SetEnqueueOptions, SetWorkflowID
from dbos._queue import QueueRateLimit

from storyloom import __version__
from storyloom.config import data_dir
from storyloom.engine import health_schedule, workflows
from storyloom.engine.scheduler import Scheduler
from storyloom.engine.takeover import runs_phases
from storyloom.pipeline.dispatcher import ToolDispatcher
from storyloom.pipeline.providers import PROVIDER_NAMES, Providers
from storyloom.pipeline.runner import PhaseRunner
from storyloom.runtime import Runtime
from storyloom.store.db import is_sqlite

log = structlog.get_logger(__name__)

# DBOS queue priorities (lower runs first): a resumed item's task, then every other task.
FIRST, NORMAL = 1, 2


class Loop(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


def dbos_limiter(rate: float) -> QueueRateLimit:
    """`rate` starts per second as DBOS counts them, whole starts per period: 0.5 → 1 per 2 s, 2.5 → 2 per 0.8 s."""
    starts = max(1, math.floor(rate))
    return QueueRateLimit(limit=starts, period=starts / rate)


def system_database_url(rt: Runtime) -> str:
    """DBOS keeps its own system database: a sibling SQLite file, or the same PostgreSQL server."""
    if is_sqlite(rt.db.url):
        database = rt.db.engine.url.database
        folder = Path(database).parent if database and database != ":memory:" else data_dir()
        return f"sqlite:///{(folder / 'dbos-system.db').resolve()}"
    return rt.db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def sqlite_system_engine(url: str) -> sa.Engine:
    """DBOS's SQLite engine, plus WAL and synchronous=NORMAL: its default rollback journal fsyncs every step."""
    engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = "IMMEDIATE"
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "busy_timeout=30000", "foreign_keys=ON"):
            dbapi_conn.execute(f"PRAGMA {pragma}")

    return engine


class Engine:
    """Owns DBOS and the background loops of one worker process."""

    def __init__(self, rt: Runtime, *, loops: list[Callable[[Runtime], Loop]] | None = None) -> None:
        self.rt = rt
        self.providers = Providers(lambda: rt.config)
        self.dispatcher = ToolDispatcher(rt.db, lambda: rt.config, rt.clock, self.providers)
        self.runner = PhaseRunner(rt.db, lambda: rt.config, rt.clock, self.dispatcher, rt.worker_id)
        self.scheduler = Scheduler(rt, self.enqueue, recover=self.recover)
        # Idle, the scheduler polls only for other processes' work and its heartbeat: one pass per beat.
        self.scheduler.max_idle_interval = max(1.0, rt.config.cluster.heartbeat_every.total_seconds())
        self.health_schedule = health_schedule.HealthSchedule(rt)
        self._loop_factories = loops or []
        self._loops: list[Loop] = []
        self._queues: dict[str, Any] = {}
        self._queue_lock = threading.Lock()
        self._running = False
        self._system_engine: sa.Engine | None = None

    def start(self) -> None:
        workflows.bind(self.runner)
        health_schedule.bind(self.rt)
        system_url = system_database_url(self.rt)
        self._system_engine = sqlite_system_engine(system_url) if system_url.startswith("sqlite") else None
        DBOS(
            config=DBOSConfig(
                name="storyloom",
                system_database_url=system_url,
                system_database_engine=self._system_engine,
                executor_id=self.rt.worker_id,
                application_version=__version__,
                log_level="WARNING",
                console_log_level="WARNING",
                scheduler_polling_interval_sec=1.0,
            )
        )
        DBOS.launch()
        self._running = True
        self.scheduler.start()
        self.health_schedule.start()
        for factory in self._loop_factories:
            loop = factory(self.rt)
            loop.start()
            self._loops.append(loop)
        log.info("engine started", worker_id=self.rt.worker_id)

    def queue(self, provider: str) -> Any:
        """One DBOS queue per provider, bounded by `pipeline.concurrency` and the provider's rate limit."""
        with self._queue_lock:
            queue = self._queues.get(provider)
            if queue is None:
                pipeline = self.rt.config.pipeline
                limit = pipeline.provider_rate_limits.get(provider)
                queue = DBOS.register_queue(
                    f"phases-{provider}",
                    worker_concurrency=pipeline.concurrency,
                    polling_interval_sec=0.05,
                    limiter=dbos_limiter(limit) if limit else None,
                )
                self._queues[provider] = queue
            return queue

    def enqueue(self, task_id: str, provider: str, first: bool = False) -> None:
        """Hand a task to DBOS; the workflow id is the task id, so enqueueing twice runs it once.

        DBOS dequeues by ascending priority, then age: `first` (a resumed item) goes ahead of the rest.
        """
        with SetWorkflowID(task_id), SetEnqueueOptions(priority=FIRST if first else NORMAL):
            self.queue(provider).enqueue(workflows.run_task, task_id)

    def recover(self, executor_id: str) -> list[str]:
        """Hand a silent worker's pending DBOS workflows back (queued ones return to their queue).

        Queues are registered lazily (an idle queue still polls), so the taker first serves every provider's
        queue: whatever it hands back can run here even if no other worker serves that queue yet.
        """
        for provider in PROVIDER_NAMES:
            self.queue(provider)
        return [handle.workflow_id for handle in DBOS._recover_pending_workflows([executor_id])]

    def ready(self) -> bool:
        return self._running

    def stop(self, drain: float = 0) -> None:
        """Stop; with `drain` seconds, first let the phases in flight finish while taking nothing new.

        Draining keeps the heartbeat going (the phases are still ours), stops the loops (the delivery
        dispatcher finishes the sends it has started), and lets DBOS stop dequeuing and wait for its active
        workflows. What is still running after `drain` is handed over: the lease expires at once.
        """
        self._running = False
        self.scheduler.draining = True
        for loop in reversed(self._loops):
            loop.stop()
        self.health_schedule.stop()
        drain = drain if drain > 0 and runs_phases(self.rt, self.rt.worker_id) else 0
        if drain:
            log.info("draining: finishing the phases in flight, taking nothing new", seconds=drain)
        DBOS.destroy(workflow_completion_timeout_sec=math.ceil(drain))
        self.runner.stopping.set()  # from here a step's error comes from the teardown, not from its phase
        self.scheduler.stop()
        self.dispatcher.close()
        if self._system_engine is not None:
            self._system_engine.dispose()
        log.info("engine stopped")
