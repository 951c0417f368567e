"""The critic and its budget: whether a valid phase output is accepted, and how much critique is left.

Pure: no I/O. `critique` judges one output; `next_status` keeps the critique budget honest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from pydantic import BaseModel

from storyloom.domain.phases import (
    Phase,
    ValidationResult,
    attentional_gate,
    estimate_tokens,
    hooks_in,
    normalized,
    phase_spec,
    slugify,
    validate_output,
)

# --------------------------------------------------------------------------------------------------
# Critique
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObligationRef:
    """An open obligation the critic may require the output to address."""

    slug: str
    title: str = ""
    character: str | None = None


@dataclass(frozen=True)
class CritiqueContext:
    salient_terms: Sequence[str] = ()
    open_obligations: Sequence[ObligationRef] = ()
    require_obligations: bool = False
    forced_reject: bool = False  # the provider flagged the output (offline `critique_reject` fault)
    forced_reason: str = "critic rejected the output (injected critique_reject fault)"


@dataclass(frozen=True)
class CritiqueVerdict:
    ok: bool
    reasons: list[str]
    tokens: int


def _addressed(obligation: ObligationRef, text: str, slugs: set[str]) -> bool:
    if slugify(obligation.slug) in slugs:
        return True
    candidates = [obligation.title, obligation.slug, obligation.slug.replace("-", " ")]
    return any(c and normalized(c) in text for c in candidates)


def critique(
    phase: str | Phase, value: ValidationResult | BaseModel | str, context: CritiqueContext | None = None
) -> CritiqueVerdict:
    """Rule-based critic: schema valid, salient terms present, open obligations addressed when required.

    `value` may be a ValidationResult, a parsed model, or raw text (validated here). `tokens` counts the
    words the critic read, which is what the critique token budget is charged.
    """
    ctx = context or CritiqueContext()
    if isinstance(value, ValidationResult):
        result = value
    elif isinstance(value, str):
        result = validate_output(phase, value)
    else:
        spec = phase_spec(phase)
        if spec.output_model is not None and isinstance(value, spec.output_model):
            result = ValidationResult(True, value, [])
        else:
            expected = spec.output_model.__name__ if spec.output_model else "Markdown text"
            result = ValidationResult(False, None, [f"$: expected {expected}, got {type(value).__name__}"])
    parsed = result.value
    if isinstance(parsed, BaseModel):
        text = parsed.model_dump_json()
    elif isinstance(parsed, str):
        text = parsed
    else:
        text = value if isinstance(value, str) else ""
    reasons = [f"schema: {error}" for error in result.errors]
    if result.ok:
        missing = attentional_gate(text, ctx.salient_terms)
        if missing:
            reasons.append(f"salient terms missing: {', '.join(missing)}")
        if ctx.require_obligations and ctx.open_obligations:
            slugs = {hook.slug for hook in hooks_in(parsed)} if isinstance(parsed, BaseModel) else set()
            plain = normalized(text)
            unaddressed = [o.slug for o in ctx.open_obligations if not _addressed(o, plain, slugs)]
            if unaddressed:
                reasons.append(f"open obligations not addressed: {', '.join(unaddressed)}")
    if ctx.forced_reject:
        reasons.append(ctx.forced_reason)
    return CritiqueVerdict(ok=not reasons, reasons=reasons, tokens=estimate_tokens(text))


# --------------------------------------------------------------------------------------------------
# Critique budget
# --------------------------------------------------------------------------------------------------


class CritiqueStatus(StrEnum):
    DISABLED = "disabled"
    IDLE = "idle"
    USED = "used"
    COUNT_EXHAUSTED = "count-exhausted"
    TOKEN_EXHAUSTED = "token-exhausted"

    @property
    def exhausted(self) -> bool:
        return self in (CritiqueStatus.COUNT_EXHAUSTED, CritiqueStatus.TOKEN_EXHAUSTED)

    @property
    def budget_label(self) -> str | None:
        """The `budget` label of `planner:critique-exhausted` (`count` | `token`), else None."""
        return {CritiqueStatus.COUNT_EXHAUSTED: "count", CritiqueStatus.TOKEN_EXHAUSTED: "token"}.get(self)


@dataclass(frozen=True)
class CritiqueBudget:
    max_total: int
    max_per_step: int
    max_tokens: int
    enabled: bool = True


@dataclass(frozen=True)
class CritiqueUsage:
    """Critiques spent so far: `total` and `tokens` across the plan, `step` within the current step."""

    total: int = 0
    step: int = 0
    tokens: int = 0

    def record(self, tokens: int) -> CritiqueUsage:
        return CritiqueUsage(self.total + 1, self.step + 1, self.tokens + max(tokens, 0))

    def new_step(self) -> CritiqueUsage:
        return CritiqueUsage(self.total, 0, self.tokens)


def initial_status(budget: CritiqueBudget) -> CritiqueStatus:
    return CritiqueStatus.IDLE if budget.enabled else CritiqueStatus.DISABLED


def next_status(
    current: CritiqueStatus,
    budget: CritiqueBudget,
    usage: CritiqueUsage,
    *,
    requested: bool = True,
    tokens: int = 0,
) -> CritiqueStatus:
    """The execution's critique status after asking for one more critique (`requested`) of ~`tokens`.

    `used` means the critique may run (then record it in `usage`); an exhausted status means it may not,
    and it sticks for the rest of the execution. `usage` is what was spent before this request.
    """
    if current is CritiqueStatus.DISABLED or not budget.enabled:
        return CritiqueStatus.DISABLED
    if current.exhausted or not requested:
        return current
    if usage.total >= budget.max_total or usage.step >= budget.max_per_step:
        return CritiqueStatus.COUNT_EXHAUSTED
    if usage.tokens >= budget.max_tokens or usage.tokens + max(tokens, 0) > budget.max_tokens:
        return CritiqueStatus.TOKEN_EXHAUSTED
    return CritiqueStatus.USED
