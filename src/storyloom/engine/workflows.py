"""DBOS workflows: a backlog item's run reads like the process it drives; side effects sit in steps.

A crash mid-phase resumes at the step that was running: earlier steps are not re-run, and each step is
idempotent by `task_id`, so re-running the interrupted one is harmless.

A step that raises something unexpected (a bug, a database error) fails its item: the step records a
`StepFailed` (plain text, so DBOS can store it and replay it after a crash), and the workflow runs the
`fail` step, which DBOS retries with backoff. If even that cannot be recorded, the workflow logs
`phase failure not recorded` and ends in error; the item stays `in_progress` for `backlog:stale`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import structlog
from dbos import DBOS
from dbos._error import DBOSMaxStepRetriesExceeded

from storyloom import signals
from storyloom.pipeline.runner import (
    BLOCKED,
    CANCELLED,
    FATAL,
    OK,
    AttemptOutcome,
    PhaseRunner,
    TaskStart,
    describe_error,
)

log = structlog.get_logger(__name__)
T = TypeVar("T")

# DBOS retries of the `fail` step: five tries, waiting 0.5, 1, 2 and 4 s between them.
FAIL_TRIES, FAIL_FIRST_WAIT = 5, 0.5


class StepFailed(Exception):
    """A phase step raised an unexpected error; carries only text, so DBOS records and replays it as is."""


_runner: PhaseRunner | None = None


def bind(runner: PhaseRunner) -> None:
    """Give the workflows their runner (one per process, set before DBOS launches)."""
    global _runner
    _runner = runner


def runner() -> PhaseRunner:
    if _runner is None:
        raise RuntimeError("the engine is not started: no PhaseRunner is bound")
    return _runner


def _guarded(step: str, task_id: str, body: Callable[[], T]) -> T:
    """Run a step's body; an unexpected error becomes a `StepFailed` naming the step (logged with its traceback)."""
    try:
        return body()
    except Exception as exc:
        if runner().stopping.is_set():
            raise  # the engine is shutting down under this step: not the phase's fault
        log.exception("phase step raised", step=step, task_id=task_id)
        raise StepFailed(f"{step} step raised {describe_error(exc)}") from None


@DBOS.step(name="storyloom.phase.start")
def start_step(task_id: str) -> tuple[TaskStart, int, float]:
    def body() -> tuple[TaskStart, int, float]:
        cfg = runner().config().pipeline
        return runner().start(task_id), cfg.max_phase_attempts, cfg.retry_backoff.total_seconds()

    return _guarded("start", task_id, body)


@DBOS.step(name="storyloom.phase.attempt")
def attempt_step(task_id: str, attempt: int) -> AttemptOutcome:
    return _guarded("attempt", task_id, lambda: runner().attempt(task_id, attempt))


@DBOS.step(name="storyloom.phase.complete")
def complete_step(task_id: str, output: Any) -> list[str]:
    return _guarded("complete", task_id, lambda: runner().complete(task_id, output))


@DBOS.step(name="storyloom.phase.block")
def block_step(task_id: str, reason: str) -> None:
    _guarded("block", task_id, lambda: runner().block(task_id, reason))


@DBOS.step(
    name="storyloom.phase.fail",
    retries_allowed=True,
    max_attempts=FAIL_TRIES,
    interval_seconds=FAIL_FIRST_WAIT,
    backoff_rate=2.0,
)
def fail_step(task_id: str, error: str) -> None:
    try:
        _guarded("fail", task_id, lambda: runner().fail(task_id, error))
    except StepFailed as exc:
        status = DBOS.step_status
        log.warning(
            "recording a phase failure failed",
            task_id=task_id,
            try_number=(status.current_attempt or 0) + 1 if status else 1,
            tries=status.max_attempts if status else 1,
            error=str(exc),
        )
        raise


def _fail(task_id: str, error: str) -> str:
    try:
        fail_step(task_id, error)
    except Exception as exc:
        last = exc.errors[-1] if isinstance(exc, DBOSMaxStepRetriesExceeded) and exc.errors else exc
        log.error(
            "phase failure not recorded: the item stays in_progress until backlog:stale or a resume",
            task_id=task_id,
            phase_error=error[:500],
            cause=str(last),
        )
        raise
    return "failed"


@DBOS.workflow(name="storyloom.run_task")
def run_task(task_id: str) -> str:
    """Run one task of a backlog item: start, attempt up to N times, then complete, block or fail.

    A step that raises fails the item at once (its error is in `last_error`).
    """
    try:
        return _run(task_id)
    except StepFailed as exc:
        return _fail(task_id, str(exc))
    finally:
        signals.wake(signals.SCHEDULER_CHANNEL)  # its end may make items ready and frees a concurrency slot


def _run(task_id: str) -> str:
    start, max_attempts, backoff = start_step(task_id)
    if start.skip:
        return start.skip
    if start.blocked:
        return "blocked"
    for attempt in range(1, max_attempts + 1):
        outcome = attempt_step(task_id, attempt)
        if outcome.kind == CANCELLED:
            return "cancelled"
        if outcome.kind == OK:
            complete_step(task_id, outcome.output)
            return "complete"
        if outcome.kind == BLOCKED:
            block_step(task_id, outcome.error or "blocked")
            return "blocked"
        if outcome.kind == FATAL or attempt == max_attempts:
            return _fail(task_id, outcome.error or "failed")
        DBOS.sleep(backoff * attempt)
    return "failed"
