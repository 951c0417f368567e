"""The scheduled health evaluation as a DBOS scheduled workflow, every `health.evaluate_every`.

DBOS keeps the schedule in its system database and every worker's DBOS scheduler fires it under one
workflow id per tick (`sched-storyloom-health-<time>`), so each tick runs once across all workers, and a
worker that dies mid-pass has it recovered like any workflow. A worker writes the schedule when it starts
and when a reload changes `evaluate_every` (`HealthSchedule`); the pass itself is `health.evaluate`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import structlog
from dbos import DBOS

from storyloom.background import BackgroundLoop
from storyloom.domain.durations import cron_every, format_duration
from storyloom.health.evaluate import scheduled_pass
from storyloom.runtime import Runtime

log = structlog.get_logger(__name__)

SCHEDULE_NAME = "storyloom-health"

_rt: Runtime | None = None


def bind(rt: Runtime) -> None:
    """Give the scheduled workflow its runtime (one per process, set before DBOS launches)."""
    global _rt
    _rt = rt


@DBOS.workflow(name="storyloom.health.scheduled")
def scheduled_evaluation(scheduled_at: datetime, _context: Any) -> None:
    evaluation_step()


@DBOS.step(name="storyloom.health.evaluate")
def evaluation_step() -> int:
    if _rt is None:
        raise RuntimeError("the engine is not started: no runtime is bound for the health evaluation")
    result = scheduled_pass(_rt, _rt.worker_id)
    return len(result.fired) + len(result.resolved)


def apply_schedule(every: timedelta) -> str | None:
    """Create or replace the schedule when it does not fire every `every` yet; returns the new cron, if any."""
    cron = cron_every(every)
    current = DBOS.get_schedule(SCHEDULE_NAME)
    if current is not None and current["schedule"] == cron:
        return None
    DBOS.apply_schedules(
        [{"schedule_name": SCHEDULE_NAME, "workflow_fn": scheduled_evaluation, "schedule": cron}]
    )
    return cron


class HealthSchedule(BackgroundLoop):
    """Keeps the DBOS schedule in line with this process's config: at start and after each reload."""

    thread_name = "storyloom-health-schedule"

    def __init__(self, rt: Runtime, poll_interval: float = 1.0) -> None:
        self.rt = rt
        self.poll_interval = poll_interval
        self._applied: timedelta | None = None  # only this process's own changes are written: no tug of war
        super().__init__()

    def run_pass(self) -> bool:
        every = self.rt.config.health.evaluate_every
        if every != self._applied:
            cron = apply_schedule(every)
            if cron is not None:
                log.info("health evaluation scheduled", every=format_duration(every), cron=cron)
            self._applied = every
        return False

    def interval(self) -> float:
        return self.poll_interval
