"""The offline provider: deterministic, schema-valid for every phase, and its injected faults."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from storyloom.domain.critique import CritiqueContext, critique
from storyloom.domain.phases import (
    ChapterBlueprint,
    LoreNeed,
    Phase,
    ScrollPlan,
    VisionPlan,
    WorldBible,
    attentional_gate,
    hooks_in,
    salient_terms_for_scene,
    validate_output,
)
from storyloom.pipeline.llm.base import LLMError, LLMRequest, LLMTimeout, LLMUnavailable, Provider
from storyloom.pipeline.llm.offline import FaultSpec, InjectedBug, OfflineProvider

PLAN = {"premise": "a cartographer maps a city that rewrites itself", "plan_name": "Paper Tides"}
BACKLOG = {
    Phase.VISION: "vision-plan",
    Phase.WORLD_BIBLE: "world-bible",
    Phase.ITERATIVE: "iteration-plan",
    Phase.CHAPTER_ARCHITECT: "chapter-2",
    Phase.SCROLL_REFINER: "scroll-2",
    Phase.SCENE_WEAVER: "scene-2-1",
}


class FakeSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def req(phase: Phase | str, attempt: int = 1, timeout: float = 60.0, **context: Any) -> LLMRequest:
    phase = Phase(phase)
    return LLMRequest(
        phase=phase.value,
        prompt="prompt words here",
        system="system",
        model="any-model",
        backlog_id=BACKLOG[phase],
        attempt=attempt,
        timeout=timeout,
        context={**PLAN, **context},
    )


def run(provider: OfflineProvider, phase: Phase, **context: Any) -> Any:
    result = validate_output(phase, provider.complete(req(phase, **context)).text)
    assert result.ok, (phase, result.errors)
    return result.value


def test_is_a_provider() -> None:
    assert isinstance(OfflineProvider(), Provider)


@pytest.mark.parametrize("phase", list(Phase))
def test_every_phase_validates_and_is_deterministic(phase: Phase) -> None:
    first = OfflineProvider().complete(req(phase))
    again = OfflineProvider().complete(req(phase))
    assert first.text == again.text
    assert validate_output(phase, first.text).ok
    assert first.completion_tokens == len(first.text.split()) > 0
    assert first.prompt_tokens == 4
    assert (first.provider, first.model, first.raw_finish_reason) == ("offline", "any-model", "stop")
    assert first.critique_reject is False


def test_output_depends_on_premise_plan_and_numbers() -> None:
    provider = OfflineProvider()
    base = provider.complete(req(Phase.VISION)).text
    assert provider.complete(req(Phase.VISION, premise="a lighthouse keeper")).text != base
    assert provider.complete(req(Phase.VISION, plan_name="Other")).text != base
    chapter_2 = provider.complete(req(Phase.CHAPTER_ARCHITECT)).text
    assert provider.complete(req(Phase.CHAPTER_ARCHITECT, chapter_number=3)).text != chapter_2
    # the model name plays no part
    assert provider.complete(LLMRequest(**{**req(Phase.VISION).__dict__, "model": "m2"})).text == base


def test_vision_shape() -> None:
    vision = run(OfflineProvider(), Phase.VISION)
    assert isinstance(vision, VisionPlan)
    assert 2 <= len(vision.core_cast) <= 3
    tracked = vision.tracked()
    assert len(tracked) >= 2
    for member in tracked:
        assert 1 <= len(member.continuity_hooks) <= 2
        for hook in member.continuity_hooks:
            assert hook.slug.startswith(member.name.lower().replace(" ", "-"))
            assert hook.character == member.name
    assert vision.supporting_cast and not any(m.track for m in vision.supporting_cast)
    assert vision.lore_needs and {need.status for need in vision.lore_needs} == {"ready"}


def test_lore_status_can_be_set() -> None:
    vision = run(OfflineProvider(lore_status="planned"), Phase.VISION)
    assert {need.status for need in vision.lore_needs} == {"planned"}
    vision = run(OfflineProvider(), Phase.VISION, offline_lore_status="missing")
    assert all(isinstance(n, LoreNeed) and n.status == "missing" for n in vision.lore_needs)


def test_world_bible_has_the_vision_cast() -> None:
    provider = OfflineProvider()
    vision = run(provider, Phase.VISION)
    bible = run(provider, Phase.WORLD_BIBLE)
    assert isinstance(bible, WorldBible)
    assert [c.name for c in bible.characters] == [m.name for m in vision.cast()]
    assert bible.locations and bible.systems


def test_chapter_scroll_and_scene_fit_together() -> None:
    provider = OfflineProvider()
    vision = run(provider, Phase.VISION)
    blueprint = run(provider, Phase.CHAPTER_ARCHITECT)
    assert isinstance(blueprint, ChapterBlueprint) and blueprint.title.startswith("Chapter 2:")
    scroll = run(provider, Phase.SCROLL_REFINER, scenes_per_chapter=3)
    assert isinstance(scroll, ScrollPlan) and scroll.scroll_slug == "scroll-2"
    assert len(scroll.sections) == 1
    assert [s.scene_slug for _, s in scroll.scenes()] == ["scene-2-1", "scene-2-2", "scene-2-3"]
    assert len(run(provider, Phase.SCROLL_REFINER).sections[0].scenes) == 2  # default
    new_hooks = hooks_in(scroll)
    assert new_hooks and all(h.character in {m.name for m in vision.tracked()} for h in new_hooks)

    section, scene = scroll.scenes()[0]
    terms = salient_terms_for_scene(
        scene_title=scene.title,
        section_title=section.title,
        scroll_title=scroll.title,
        blueprint_title=blueprint.title,
        tracked_characters=[m.name for m in vision.tracked()],
        scene=scene,
    )
    assert len(terms) >= 5  # four titles and at least one character
    obligations = [{"slug": "x-debt", "title": "the ferryman's toll"}]
    text = provider.complete(req(Phase.SCENE_WEAVER, salient_terms=terms, open_obligations=obligations)).text
    assert attentional_gate(text, terms) == []
    assert "the ferryman's toll" in text
    # without terms in the context it still mentions its own scroll's titles
    default_text = provider.complete(req(Phase.SCENE_WEAVER, scenes_per_chapter=3)).text
    assert attentional_gate(default_text, terms) == []


def test_numbers_come_from_the_backlog_id_when_context_lacks_them() -> None:
    provider = OfflineProvider()
    request = LLMRequest(phase="scroll_refiner", prompt="p", backlog_id="scroll-3", context=dict(PLAN))
    assert validate_output("scroll_refiner", provider.complete(request).text).value.scroll_slug == "scroll-3"  # type: ignore[union-attr]


# ---------------------------------------------------------------- faults


def test_fault_spec_parses_config_values() -> None:
    spec = FaultSpec.model_validate({"phase": "scroll_refiner", "mode": "slow", "times": 3, "delay": "200ms"})
    assert spec.delay == timedelta(milliseconds=200)
    assert FaultSpec(mode="fail").phase == "*"
    with pytest.raises(ValidationError, match="unknown phase"):
        FaultSpec(phase="scrolls", mode="fail")
    with pytest.raises(ValidationError):
        FaultSpec.model_validate({"mode": "explode"})


def test_fail_applies_for_the_first_times_attempts() -> None:
    provider = OfflineProvider([FaultSpec(phase="scroll_refiner", mode="fail", times=2)])
    for attempt in (1, 2):
        with pytest.raises(LLMUnavailable, match="injected fault: scroll_refiner scroll-2 attempt"):
            provider.complete(req(Phase.SCROLL_REFINER, attempt=attempt))
    assert validate_output("scroll_refiner", provider.complete(req(Phase.SCROLL_REFINER, attempt=3)).text).ok
    # other phases are untouched
    assert provider.complete(req(Phase.VISION)).text


def test_raise_is_an_unexpected_error_not_a_provider_error() -> None:
    provider = OfflineProvider([FaultSpec(phase="vision", mode="raise", times=1)])
    with pytest.raises(InjectedBug, match=r"injected fault: vision .* attempt 1 raised") as info:
        provider.complete(req(Phase.VISION, attempt=1))
    assert not isinstance(info.value, LLMError)
    assert provider.complete(req(Phase.VISION, attempt=2)).text


def test_fault_without_times_applies_to_every_attempt_and_star_to_every_phase() -> None:
    provider = OfflineProvider([FaultSpec(phase="*", mode="fail")])
    for phase in Phase:
        with pytest.raises(LLMUnavailable) as info:
            provider.complete(req(phase, attempt=99))
        assert info.value.retryable


def test_first_matching_fault_wins() -> None:
    provider = OfflineProvider(
        [FaultSpec(phase="vision", mode="fail", times=1), FaultSpec(phase="*", mode="critique_reject")]
    )
    with pytest.raises(LLMUnavailable):
        provider.complete(req(Phase.VISION, attempt=1))
    assert provider.complete(req(Phase.VISION, attempt=2)).critique_reject


def test_timeout_sleeps_at_most_the_request_timeout() -> None:
    sleep = FakeSleep()
    provider = OfflineProvider(
        [FaultSpec(phase="vision", mode="timeout", delay=timedelta(seconds=30))], sleep=sleep
    )
    with pytest.raises(LLMTimeout, match="timed out after 2s"):
        provider.complete(req(Phase.VISION, timeout=2.0))
    with pytest.raises(LLMTimeout):
        provider.complete(req(Phase.VISION, timeout=90.0))
    assert sleep.calls == [2.0, 30.0]


def test_slow_sleeps_then_answers_normally() -> None:
    sleep = FakeSleep()
    spec = FaultSpec.model_validate({"phase": "world_bible", "mode": "slow", "delay": "1500ms", "times": 1})
    provider = OfflineProvider([spec], sleep=sleep)
    slow = provider.complete(req(Phase.WORLD_BIBLE, attempt=1))
    fast = provider.complete(req(Phase.WORLD_BIBLE, attempt=2))
    assert sleep.calls == [1.5]
    assert slow.text == fast.text and validate_output("world_bible", slow.text).ok


@pytest.mark.parametrize("phase", list(Phase))
def test_malformed_output_fails_validation(phase: Phase) -> None:
    provider = OfflineProvider([FaultSpec(phase="*", mode="malformed", times=1)])
    bad = validate_output(phase, provider.complete(req(phase, attempt=1)).text)
    assert not bad.ok and bad.errors[0].startswith("$:")
    assert validate_output(phase, provider.complete(req(phase, attempt=2)).text).ok


def test_critique_reject_marks_the_response_for_the_critic() -> None:
    provider = OfflineProvider([FaultSpec(phase="chapter_architect", mode="critique_reject", times=1)])
    response = provider.complete(req(Phase.CHAPTER_ARCHITECT, attempt=1))
    assert response.critique_reject
    assert validate_output("chapter_architect", response.text).ok
    verdict = critique(
        "chapter_architect", response.text, CritiqueContext(forced_reject=response.critique_reject)
    )
    assert not verdict.ok
    assert not provider.complete(req(Phase.CHAPTER_ARCHITECT, attempt=2)).critique_reject


def test_times_zero_never_applies() -> None:
    provider = OfflineProvider([FaultSpec(mode="fail", times=0)])
    assert provider.complete(req(Phase.VISION, attempt=1)).text


# ---------------------------------------------------------------- errors cross process boundaries


def test_errors_and_responses_survive_pickling() -> None:
    """DBOS records step results and exceptions by pickling them."""
    import pickle

    from storyloom.pipeline.llm.base import LLMBadResponse, LLMRateLimited

    limited = pickle.loads(pickle.dumps(LLMRateLimited("slow down", retry_after=2.5)))
    assert (str(limited), limited.retry_after, limited.status_code, limited.retryable) == (
        "slow down",
        2.5,
        429,
        True,
    )
    bad = pickle.loads(pickle.dumps(LLMBadResponse("nope", status_code=401)))
    assert (bad.status_code, bad.retryable) == (401, False)
    response = OfflineProvider().complete(req(Phase.VISION))
    assert pickle.loads(pickle.dumps(response)) == response


# ---------------------------------------------------------------- prompt templates


def test_every_phase_has_a_seeded_template() -> None:
    from storyloom.domain.phases import PHASES
    from storyloom.pipeline.prompts import load_template, required_context, template_path

    for spec in PHASES.values():
        assert template_path(spec.template_id).name == f"{spec.template_id}.md"
        assert load_template(spec.template_id).strip()
        assert "plan_name" in required_context(spec.phase)


def test_render_prompt_reports_every_missing_placeholder() -> None:
    from storyloom.pipeline.prompts import PromptRenderError, render_phase_prompt, render_prompt

    with pytest.raises(PromptRenderError) as info:
        render_phase_prompt("vision", {"premise": "x"})
    assert info.value.missing == ["plan_name", "project_title"]
    assert str(info.value) == (
        "template planner.fiction.vision needs values for: plan_name, project_title"
        " (add them to the prompt context)"
    )
    text = render_prompt(
        'A {a} {{literal}} {"json": 1} {b} {c} {d} {e}',
        {"a": "x", "b": ["t1", "t2"], "c": None, "d": True, "e": {"k": 1}},
    )
    assert text == 'A x {literal} {"json": 1} ["t1", "t2"] (none) true {\n  "k": 1\n}'


def test_missing_template_is_reported() -> None:
    from pathlib import Path

    from storyloom.pipeline.prompts import TemplateNotFound, load_template

    with pytest.raises(TemplateNotFound, match=r"planner\.fiction\.vision"):
        load_template("planner.fiction.vision", Path("/nonexistent"))
