"""DBOS workflows: a backlog item's run reads like the process it drives; side effects sit in steps.

A crash mid-phase resumes at the step that was running: earlier steps are not re-run, and each step is
idempotent by `task_id`, so re-running the interrupted one is harmless.
"""

from __future__ import annotations

from typing import Any

from dbos import DBOS

from storyloom.pipeline.runner import BLOCKED, CANCELLED, FATAL, OK, AttemptOutcome, PhaseRunner, TaskStart

_runner: PhaseRunner | None = None


def bind(runner: PhaseRunner) -> None:
    """Give the workflows their runner (one per process, set before DBOS launches)."""
    global _runner
    _runner = runner


def runner() -> PhaseRunner:
    if _runner is None:
        raise RuntimeError("the engine is not started: no PhaseRunner is bound")
    return _runner


@DBOS.step(name="storyloom.phase.start")
def start_step(task_id: str) -> tuple[TaskStart, int, float]:
    cfg = runner().config().pipeline
    return runner().start(task_id), cfg.max_phase_attempts, cfg.retry_backoff.total_seconds()


@DBOS.step(name="storyloom.phase.attempt")
def attempt_step(task_id: str, attempt: int) -> AttemptOutcome:
    return runner().attempt(task_id, attempt)


@DBOS.step(name="storyloom.phase.complete")
def complete_step(task_id: str, output: Any) -> list[str]:
    return runner().complete(task_id, output)


@DBOS.step(name="storyloom.phase.block")
def block_step(task_id: str, reason: str) -> None:
    runner().block(task_id, reason)


@DBOS.step(name="storyloom.phase.fail")
def fail_step(task_id: str, error: str) -> None:
    runner().fail(task_id, error)


@DBOS.workflow(name="storyloom.run_task")
def run_task(task_id: str) -> str:
    """Run one task of a backlog item: start, attempt up to N times, then complete, block or fail."""
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
            fail_step(task_id, outcome.error or "failed")
            return "failed"
        DBOS.sleep(backoff * attempt)
    return "failed"
