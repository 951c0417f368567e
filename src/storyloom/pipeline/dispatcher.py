"""The tool dispatcher: the one code path of every planner and tool call.

It validates arguments against the tool's parameters, fills provider and model from the agent, enforces
quotas and timeouts, records a tool execution log with secrets redacted, and publishes `tool:*` alerts
(and `planner:provider-unavailable` when one provider fails for several plans at once).
"""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, func, insert, select, update

from storyloom.alerting.publish import AlertSignal, fire, resolve_matching
from storyloom.clock import Clock
from storyloom.config import Config, QuotaConfig
from storyloom.domain.catalog import (
    PLANNER_PROVIDER_UNAVAILABLE,
    TOOL_FAILED,
    TOOL_QUOTA_EXCEEDED,
    TOOL_TIMEOUT,
)
from storyloom.logs import redact, redact_text
from storyloom.pipeline.llm.base import (
    LLMError,
    LLMRequest,
    LLMResponse,
    LLMTimeout,
    LLMUnavailable,
    Provider,
)
from storyloom.store.db import Database
from storyloom.store.tables import agents, planner_executions, tasks, tool_executions

log = structlog.get_logger(__name__)

PROVIDER_OUTAGE_WINDOW = timedelta(minutes=5)
PROVIDER_OUTAGE_PLANS = 2


class DispatchError(Exception):
    """A call that did not produce a usable response; `retryable` tells the runner whether to try again."""

    def __init__(self, message: str, *, kind: str, retryable: bool) -> None:
        super().__init__(message)
        self.kind = kind  # invalid-arguments | failed | timeout | quota
        self.retryable = retryable


@dataclass(frozen=True)
class Param:
    type: type
    required: bool = False
    default: Any = None


@dataclass(frozen=True)
class ToolSpec:
    name: str
    params: dict[str, Param]


PLANNER_GENERATE = ToolSpec(
    "planner.generate",
    {
        "phase": Param(str, required=True),
        "prompt": Param(str, required=True),
        "system": Param(str, default=""),
        "provider": Param(str),
        "model": Param(str),
        "max_tokens": Param(int),
        "timeout": Param(float, default=600.0),
        "context": Param(dict, default=None),
    },
)


def validate_arguments(spec: ToolSpec, args: Mapping[str, Any]) -> dict[str, Any]:
    """Unknown → error, missing required → error, defaults applied, scalar types coerced (see `_coerce`)."""
    unknown = sorted(set(args) - set(spec.params))
    if unknown:
        raise DispatchError(
            f"{spec.name}: unknown argument(s) {', '.join(unknown)}",
            kind="invalid-arguments",
            retryable=False,
        )
    out: dict[str, Any] = {}
    for name, param in spec.params.items():
        value = args.get(name)
        if value is None:
            if param.required:
                raise DispatchError(
                    f"{spec.name}: missing required argument {name}",
                    kind="invalid-arguments",
                    retryable=False,
                )
            out[name] = param.default
            continue
        try:
            out[name] = _coerce(value, param.type)
        except (TypeError, ValueError):
            raise DispatchError(
                f"{spec.name}: argument {name} must be {param.type.__name__}",
                kind="invalid-arguments",
                retryable=False,
            ) from None
    return out


def _coerce(value: Any, expected: type) -> Any:
    """`value` as `expected` where nothing is lost ("30" → 30.0, 256.0 → 256, 4 → "4"); else TypeError/ValueError.

    A bool is not a number, and containers never become strings (str(list) would be a garbled prompt).
    """
    if isinstance(value, bool) and expected is not bool:
        raise TypeError(f"{value!r} is a bool")
    if isinstance(value, expected):
        return value
    if expected is dict and isinstance(value, Mapping):
        return dict(value)
    if not isinstance(value, str | int | float):
        raise TypeError(f"cannot convert {type(value).__name__}")
    if expected is int and isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{value!r} is not a whole number")
    if expected in (str, int, float):
        return expected(value)
    raise TypeError(f"cannot convert {type(value).__name__} to {expected.__name__}")


@dataclass(frozen=True)
class PlannerCall:
    phase: str
    planner_name: str
    prompt: str
    system: str
    provider: str | None
    model: str | None
    agent_id: str
    persona_id: str
    plan_id: str
    backlog_id: str
    task_id: str
    attempt: int
    timeout: float
    context: dict[str, Any] = field(default_factory=dict)


class ToolDispatcher:
    def __init__(
        self, db: Database, config: Callable[[], Config], clock: Clock, providers: Callable[[str], Provider]
    ) -> None:
        self.db = db
        self.config = config
        self.clock = clock
        self.providers = providers
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="llm")

    def call_planner(self, call: PlannerCall) -> LLMResponse:
        """Run one planner LLM call through the dispatcher; raises DispatchError on any failure."""
        args = validate_arguments(
            PLANNER_GENERATE,
            {
                "phase": call.phase,
                "prompt": call.prompt,
                "system": call.system,
                "provider": call.provider,
                "model": call.model,
                "timeout": call.timeout,
                "context": call.context,
            },
        )
        started = self.clock.now()
        t0 = time.monotonic()
        with self.db.read() as conn:
            provider_name, model = self._defaults(conn, call, args)
            refusal = self._quota_refusal(conn, call)
        request = LLMRequest(
            phase=call.phase,
            prompt=args["prompt"],
            system=args["system"],
            model=model,
            provider=provider_name,
            plan_id=call.plan_id,
            backlog_id=call.backlog_id,
            attempt=call.attempt,
            max_tokens=args["max_tokens"],
            timeout=args["timeout"],
            context=args["context"] or {},
        )
        logged_request = {
            "tool": PLANNER_GENERATE.name,
            "phase": call.phase,
            "provider": provider_name,
            "model": model,
            "attempt": call.attempt,
            "prompt_chars": len(call.prompt),
        }
        if refusal is not None:
            outcome, message = refusal
            self._record(
                call,
                started,
                t0,
                logged_request,
                None,
                message,
                quota=outcome,
                provider=provider_name,
                model=model,
            )
            raise DispatchError(message, kind="quota", retryable=False)
        try:
            response = self._complete(provider_name, request)
        except LLMError as exc:
            kind = "timeout" if isinstance(exc, LLMTimeout) else "failed"
            message = redact_text(f"{provider_name}/{model}: {exc}")
            self._record(
                call,
                started,
                t0,
                logged_request,
                None,
                message,
                failure=kind,
                unavailable=isinstance(exc, LLMUnavailable),
                provider=provider_name,
                model=model,
            )
            raise DispatchError(message, kind=kind, retryable=exc.retryable) from exc
        self._record(
            call,
            started,
            t0,
            logged_request,
            {
                "chars": len(response.text),
                "prompt_tokens": response.prompt_tokens,
                "completion_tokens": response.completion_tokens,
                "finish_reason": response.raw_finish_reason,
            },
            None,
            provider=provider_name,
            model=model,
        )
        return response

    def _complete(self, provider_name: str, request: LLMRequest) -> LLMResponse:
        provider = self.providers(provider_name)
        future = self._pool.submit(provider.complete, request)
        try:
            return future.result(timeout=request.timeout + 1.0)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise LLMTimeout(f"no answer within {request.timeout:g}s (dispatcher timeout)") from None

    def _defaults(self, conn: Connection, call: PlannerCall, args: dict[str, Any]) -> tuple[str, str]:
        agent = conn.execute(
            select(agents.c.provider, agents.c.model).where(agents.c.id == call.agent_id)
        ).first()
        cfg = self.config()
        provider = args["provider"] or (agent.provider if agent else None) or cfg.llm.provider
        model = args["model"] or (agent.model if agent else None) or cfg.llm.model
        return provider, model

    def _quota_refusal(self, conn: Connection, call: PlannerCall) -> tuple[str, str] | None:
        """(task outcome `throttled`|`rejected`, message) when a planner or persona quota refuses the call."""
        quotas = self.config().pipeline.quotas
        checks: list[tuple[str, QuotaConfig, Any]] = [
            (
                f"planner {call.planner_name}",
                quotas.per_planner.get(call.planner_name) or QuotaConfig(),
                planner_executions.c.planner_name == call.planner_name,
            ),
            (
                f"persona {call.persona_id}",
                quotas.per_persona,
                planner_executions.c.persona_id == call.persona_id,
            ),
        ]
        for scope, quota, where in checks:
            if quota.max_iterations is not None or quota.max_tokens is not None:
                count, used = conn.execute(
                    select(
                        func.count(),
                        func.coalesce(
                            func.sum(
                                planner_executions.c.prompt_tokens + planner_executions.c.completion_tokens
                            ),
                            0,
                        ),
                    ).where(planner_executions.c.plan_id == call.plan_id, where)
                ).one()
                if quota.max_iterations is not None and count >= quota.max_iterations:
                    return (
                        "rejected",
                        f"quota: {scope} reached max_iterations {quota.max_iterations} on this plan",
                    )
                if quota.max_tokens is not None and used >= quota.max_tokens:
                    return (
                        "rejected",
                        f"quota: {scope} used {used} of max_tokens {quota.max_tokens} on this plan",
                    )
            if quota.max_queued_jobs is not None and scope.startswith("persona"):
                queued = (
                    conn.execute(
                        select(func.count())
                        .select_from(tasks)
                        .where(tasks.c.status.in_(("queued", "running")), tasks.c.plan_id == call.plan_id)
                    ).scalar()
                    or 0
                )
                if queued > quota.max_queued_jobs:
                    return (
                        "throttled",
                        f"quota: {scope} has {queued} queued jobs (max_queued_jobs {quota.max_queued_jobs})",
                    )
        return None

    def _record(
        self,
        call: PlannerCall,
        started: datetime,
        t0: float,
        request: dict[str, Any],
        response: dict[str, Any] | None,
        error: str | None,
        *,
        failure: str | None = None,
        quota: str | None = None,
        unavailable: bool = False,
        provider: str | None = None,
        model: str | None = None,
    ) -> None:
        now = self.clock.now()
        labels = {
            "tool": PLANNER_GENERATE.name,
            "plan_id": call.plan_id,
            "backlog_id": call.backlog_id,
            "task_id": call.task_id,
            "phase": call.phase,
            "agent_id": call.agent_id,
            "persona_id": call.persona_id,
            "provider": provider,
            "model": model,
        }
        with self.db.begin() as conn:
            conn.execute(
                insert(tool_executions).values(
                    tool=PLANNER_GENERATE.name,
                    agent_id=call.agent_id,
                    plan_id=call.plan_id,
                    backlog_id=call.backlog_id,
                    task_id=call.task_id,
                    started_at=started,
                    duration_ms=(time.monotonic() - t0) * 1000,
                    success=error is None,
                    request=redact(request),
                    response=redact(response),
                    error=redact(error),
                )
            )
            if quota is not None:
                conn.execute(update(tasks).where(tasks.c.task_id == call.task_id).values(status=quota))
                fire(
                    conn,
                    AlertSignal(TOOL_QUOTA_EXCEEDED, {**labels, "quota": quota}, error or "quota"),
                    now,
                )
            elif failure is not None:
                alert_id = TOOL_TIMEOUT if failure == "timeout" else TOOL_FAILED
                fire(conn, AlertSignal(alert_id, labels, error or failure), now)
                if unavailable and provider:
                    self._provider_outage(conn, provider, now)
            elif provider:
                resolve_matching(
                    conn,
                    PLANNER_PROVIDER_UNAVAILABLE,
                    now,
                    "the provider answered again",
                    provider=provider,
                )

    def _provider_outage(self, conn: Connection, provider: str, now: datetime) -> None:
        """Several plans failing on one provider at once is an outage, not a phase problem."""
        since = now - PROVIDER_OUTAGE_WINDOW
        failing_plans = (
            conn.execute(
                select(func.count(func.distinct(tool_executions.c.plan_id))).where(
                    tool_executions.c.success.is_(False),
                    tool_executions.c.started_at >= since,
                    tool_executions.c.request["provider"].as_string() == provider,
                )
            ).scalar()
            or 0
        )
        if failing_plans >= PROVIDER_OUTAGE_PLANS:
            fire(
                conn,
                AlertSignal(
                    PLANNER_PROVIDER_UNAVAILABLE,
                    {"provider": provider},
                    f"provider {provider} failed for {failing_plans} plans within "
                    f"{int(PROVIDER_OUTAGE_WINDOW.total_seconds() // 60)} minutes",
                ),
                now,
            )

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
