"""One planner attempt: the LLM call through the dispatcher, validation, and the critique loop.

It reads and writes no table: `context.py` loads what it needs, `recording.py` writes what it did.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog
from pydantic import BaseModel
from sqlalchemy.exc import StatementError

from storyloom.config import Config
from storyloom.domain import critique as cq
from storyloom.domain import phases as ph
from storyloom.pipeline.dispatcher import DispatchError, PlannerCall, ToolDispatcher
from storyloom.pipeline.llm.base import LLMResponse
from storyloom.pipeline.prompts import system_prompt

log = structlog.get_logger(__name__)

OK, RETRY, BLOCKED, FATAL, CANCELLED = "ok", "retry", "blocked", "fatal", "cancelled"


@dataclass(frozen=True)
class AttemptOutcome:
    kind: str  # ok | retry | blocked | fatal | cancelled
    output: Any = None
    error: str | None = None


def describe_error(exc: BaseException) -> str:
    """`Type: message` of an unexpected error; a database error's driver message, without its SQL and parameters."""
    cause = exc.orig if isinstance(exc, StatementError) and exc.orig is not None else exc
    return f"{type(cause).__name__}: {cause}"[:2000]


def phase_output(result: ph.ValidationResult) -> Any:
    """A validated phase output as the JSON the `complete` step stores."""
    return result.value.model_dump(mode="json") if isinstance(result.value, BaseModel) else result.value


class PlannerAttempt:
    """One attempt: the LLM calls it makes and its critique loop, with what `recording.py` writes of them."""

    def __init__(
        self,
        dispatcher: ToolDispatcher,
        task: Any,
        item: dict[str, Any],
        spec: ph.PhaseSpec,
        attempt: int,
        item_attempt: int,
        started: datetime,
    ) -> None:
        self.dispatcher, self.task, self.item, self.spec = dispatcher, task, item, spec
        self.attempt, self.item_attempt, self.started = attempt, item_attempt, started
        self.prompt_tokens = self.completion_tokens = 0
        self.critique_count = self.critique_tokens = 0
        self.critique_status = cq.CritiqueStatus.IDLE
        self.transcript: list[tuple[str, str]] = []
        self.diagnostics: dict[str, Any] = {}

    def call(self, prompt: str, context: dict[str, Any], cfg: Config) -> LLMResponse:
        self.transcript.append(("user", prompt))
        response = self.dispatcher.call_planner(
            PlannerCall(
                phase=self.spec.phase.value,
                planner_name=self.spec.planner_name,
                prompt=prompt,
                system=system_prompt(self.spec.phase),
                provider=self.item["provider"],
                model=self.item["model"],
                agent_id=self.item["agent_id"],
                persona_id=self.item["persona_id"],
                plan_id=self.item["plan_id"],
                backlog_id=self.item["backlog_id"],
                task_id=self.task["task_id"],
                attempt=self.item_attempt,
                timeout=cfg.pipeline.phase_timeout.total_seconds(),
                context=context,
            )
        )
        self.transcript.append(("assistant", response.text))
        self.prompt_tokens += response.prompt_tokens
        self.completion_tokens += response.completion_tokens
        return response

    def execute(
        self,
        prompt: str,
        context: dict[str, Any],
        cfg: Config,
        usage: cq.CritiqueUsage,
        stopping: threading.Event,
    ) -> AttemptOutcome:
        """Call, validate and critique until the output passes, the budget runs out or a call fails."""
        budget = cq.CritiqueBudget(
            cfg.pipeline.critique.max_total,
            cfg.pipeline.critique.max_per_step,
            cfg.pipeline.critique.max_tokens,
            cfg.pipeline.critique.enabled,
        )
        self.critique_status = cq.initial_status(budget)
        salient = context.get("salient_terms") or None
        try:
            response = self.call(prompt, context, cfg)
            result = ph.validate_output(self.spec.phase, response.text, salient_terms=salient)
            if not result.ok:
                self.diagnostics["validation_errors"] = result.errors
                return AttemptOutcome(RETRY, error="invalid output: " + "; ".join(result.errors[:10]))
            self.diagnostics["output_answer"] = 1  # which assistant answer of the transcript the output is
            while self.critique_status != cq.CritiqueStatus.DISABLED:
                verdict = cq.critique(
                    self.spec.phase,
                    result,
                    cq.CritiqueContext(salient_terms=salient or (), forced_reject=response.critique_reject),
                )
                status = cq.next_status(self.critique_status, budget, usage, tokens=verdict.tokens)
                if status.exhausted:
                    self.critique_status = status
                    self.diagnostics["critique_reasons"] = verdict.reasons
                    break
                self.critique_status = status
                usage = usage.record(verdict.tokens)
                self.critique_count += 1
                self.critique_tokens += verdict.tokens
                if verdict.ok:
                    break
                revision = (
                    f"{prompt}\n\nA critic asked for a revision:\n- "
                    + "\n- ".join(verdict.reasons)
                    + "\nReturn the whole corrected output."
                )
                response = self.call(revision, context, cfg)
                revised = ph.validate_output(self.spec.phase, response.text, salient_terms=salient)
                if revised.ok:
                    result = revised
                    self.diagnostics["output_answer"] = self.critique_count + 1
        except DispatchError as exc:
            return AttemptOutcome(RETRY if exc.retryable else FATAL, error=str(exc))
        except Exception as exc:
            if stopping.is_set():
                raise  # the engine is shutting down under this attempt: not the phase's fault
            log.exception("planner attempt raised", task_id=self.task["task_id"], attempt=self.attempt)
            return AttemptOutcome(RETRY, error=f"unexpected error: {describe_error(exc)}")
        return AttemptOutcome(OK, output=phase_output(result))
