"""Phase table, output validation, the attentional gate, the critic and critique budgets."""

from __future__ import annotations

import json

import pytest

from storyloom.domain.critique import (
    CritiqueBudget,
    CritiqueContext,
    CritiqueStatus,
    CritiqueUsage,
    ObligationRef,
    critique,
    initial_status,
    next_status,
)
from storyloom.domain.phases import (
    PHASES,
    ChapterBlueprint,
    IterationPlan,
    Phase,
    ScrollPlan,
    ScrollScene,
    VisionPlan,
    WorldBible,
    attentional_gate,
    hooks_in,
    phase_spec,
    salient_terms_for_scene,
    slugify,
    validate_output,
)


def vision_data(**overrides: object) -> dict[str, object]:
    data: dict[str, object] = {
        "author_summary": "A harbor city where debts outlive their debtors.",
        "book_goals": ["Earn the ending"],
        "core_cast": [
            {
                "name": "Mara Vell",
                "role": "protagonist",
                "track": True,
                "importance": "primary",
                "summary": "A ferrywoman with a debt.",
                "continuity_hooks": [
                    {"slug": "mara-vell-unpaid-debt", "title": "The unpaid debt", "description": "She owes."}
                ],
            }
        ],
        "supporting_cast": [],
        "lore_needs": [
            {
                "title": "Tide Ledger",
                "requirement_slug": "tide-ledger",
                "status": "ready",
                "description": "...",
            }
        ],
        "planning_backlog": ["world bible"],
    }
    data.update(overrides)
    return data


SCENE_PROSE = (
    "## The Bargain at Glass Harbor\n\n"
    "Mara Vell climbed the stair above the Glass Harbor while the tide argued with the pilings. "
    "Ilsen Quill waited under the lamp, holding the ledger like a weapon, and neither spoke first. "
    "When the bell rang the unpaid debt came due and the harbor went quiet.\n"
)


# ---------------------------------------------------------------- the table


def test_phase_table_matches_domain() -> None:
    rows = [(p.phase.value, p.planner_name, p.step_id, p.template_id, p.output_kind) for p in PHASES.values()]
    assert rows == [
        ("vision", "Vision Planner", "vision-plan", "planner.fiction.vision", "json"),
        ("world_bible", "World Bible Manager", "world-bible", "planner.fiction.worldBible", "json"),
        ("iterative", "Iterative Planner", "iterative-plan", "planner.fiction.iterative", "json"),
        (
            "chapter_architect",
            "Chapter Architect",
            "chapter-blueprint",
            "planner.fiction.chapterArchitect",
            "json",
        ),
        ("scroll_refiner", "Scroll Refiner", "scroll-refinement", "planner.fiction.scrollRefiner", "json"),
        ("scene_weaver", "Scene Weaver", "scene-draft", "planner.fiction.sceneWeaver", "markdown"),
    ]
    assert [p.output_model for p in PHASES.values()] == [
        VisionPlan,
        WorldBible,
        IterationPlan,
        ChapterBlueprint,
        ScrollPlan,
        None,
    ]


def test_phase_spec_accepts_names_and_rejects_unknown() -> None:
    assert phase_spec("scene_weaver").phase is Phase.SCENE_WEAVER
    with pytest.raises(ValueError, match="unknown phase 'nope'"):
        phase_spec("nope")


# ---------------------------------------------------------------- validation


def test_valid_vision_parses_and_binds_hooks_to_characters() -> None:
    result = validate_output("vision", json.dumps(vision_data()))
    assert result.ok and result.errors == []
    assert isinstance(result.value, VisionPlan)
    [hook] = hooks_in(result.value)
    assert (hook.slug, hook.character) == ("mara-vell-unpaid-debt", "Mara Vell")
    assert [m.name for m in result.value.tracked()] == ["Mara Vell"]


def test_errors_carry_json_paths() -> None:
    data = vision_data(author_summary="short")
    data["core_cast"] = [{"role": "x"}, {"name": "B", "role": "y", "track": "maybe"}]
    data["lore_needs"] = [{"title": "T", "requirement_slug": "t", "status": "done"}]
    result = validate_output("vision", json.dumps(data))
    assert not result.ok and result.value is None
    assert "core_cast[0].name: field required" in result.errors
    assert "author_summary: string should have at least 10 characters" in result.errors
    assert any(e.startswith("core_cast[1].track: ") for e in result.errors)
    assert any(
        e.startswith("lore_needs[0].status: input should be 'planned', 'ready' or 'missing'")
        for e in result.errors
    )


def test_nested_scroll_paths() -> None:
    scroll = {
        "scroll_slug": "scroll-1",
        "title": "Scroll 1",
        "synopsis": "...",
        "sections": [{"section_slug": "s1", "title": "One", "scenes": [{"scene_slug": "scene-1-1"}]}],
    }
    result = validate_output("scroll_refiner", json.dumps(scroll))
    assert result.errors == ["sections[0].scenes[0].title: field required"]


@pytest.mark.parametrize(
    "wrapper",
    [
        "```json\n{}\n```",
        "Here is the plan:\n\n```json\n{}\n```\nThanks!",
        "```\n{}\n```",
        "  {}  ",
    ],
)
def test_fenced_json_is_tolerated(wrapper: str) -> None:
    text = wrapper.replace("{}", json.dumps(vision_data()))
    assert validate_output(Phase.VISION, text).ok


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", "$: empty output, expected a JSON object"),
        ('{"author_summary": "abc', "$: invalid JSON"),
        ("[1, 2]", "$: expected a JSON object, got list"),
        ('```json\n{"a": 1', "$: invalid JSON"),
        ("not json at all", "$: invalid JSON"),
    ],
)
def test_bad_json_never_raises(raw: str, expected: str) -> None:
    result = validate_output("world_bible", raw)
    assert not result.ok
    assert result.errors[0].startswith(expected)


def test_garbage_input_never_raises() -> None:
    deep = "[" * 100_000
    assert not validate_output("vision", deep).ok
    assert not validate_output("vision", None).ok  # type: ignore[arg-type]
    assert validate_output("nope", "{}").errors[0].startswith("$: unknown phase")


def test_world_bible_and_iterative_require_their_arrays() -> None:
    result = validate_output("world_bible", json.dumps({"characters": [], "locations": [{"summary": "x"}]}))
    assert set(result.errors) == {"locations[0].name: field required", "systems: field required"}
    result = validate_output("iterative", json.dumps({"story_adjustments": ["a"]}))
    assert "risks: field required" in result.errors and len(result.errors) == 4


def test_chapter_blueprint_synopsis_and_structure() -> None:
    raw = json.dumps({"title": "Ch 1", "synopsis": "too short", "structure": []})
    result = validate_output("chapter_architect", raw)
    assert result.errors == [
        "synopsis: string should have at least 10 characters",
        "structure: list should have at least 1 item after validation, not 0",
    ]


def test_hooks_accept_plain_strings_and_normalize_slugs() -> None:
    data = vision_data()
    data["core_cast"][0]["continuity_hooks"] = ["Owes the Ferryman!", {"title": "The Oath"}]  # type: ignore[index]
    result = validate_output("vision", json.dumps(data))
    assert result.ok, result.errors
    assert [h.slug for h in hooks_in(result.value)] == ["owes-the-ferryman", "the-oath"]  # type: ignore[arg-type]
    assert slugify("  Tide Ledger / v2 ") == "tide-ledger-v2"


def test_markdown_scene_validation() -> None:
    assert validate_output("scene_weaver", SCENE_PROSE).value == SCENE_PROSE.strip()
    fenced = f"```markdown\n{SCENE_PROSE}```"
    assert validate_output("scene_weaver", fenced).ok
    assert validate_output("scene_weaver", "Too short.").errors[0].startswith("$: scene prose too short")
    assert validate_output("scene_weaver", '{"scene": "Mara').errors == [
        "$: expected Markdown prose, got what looks like JSON"
    ]
    gated = validate_output("scene_weaver", SCENE_PROSE, salient_terms=["Mara Vell", "Wren Ashdown"])
    assert gated.errors == ["$: missing salient terms: Wren Ashdown"]


# ---------------------------------------------------------------- attentional gate


def test_attentional_gate_is_case_emphasis_and_whitespace_insensitive() -> None:
    prose = "**MARA** vell walked into the *Glass*\n  Harbor; Ilsen\u2019s lamp was out."
    terms = ["Mara Vell", "the glass harbor", "Ilsen's lamp", "Wren", "", "mara vell"]
    assert attentional_gate(prose, terms) == ["Wren"]


def test_salient_terms_for_scene() -> None:
    scene = ScrollScene(
        scene_slug="scene-1-1", title="The Bargain", goal="Mara Vell wants the ledger", conflict="A storm"
    )
    terms = salient_terms_for_scene(
        scene_title="The Bargain",
        section_title="Part One",
        scroll_title="Scroll 1",
        blueprint_title="Chapter 1: Debts",
        tracked_characters=["Mara Vell", "Ilsen Quill"],
        scene=scene,
    )
    assert terms == ["The Bargain", "Part One", "Scroll 1", "Chapter 1: Debts", "Mara Vell"]
    without_plan = salient_terms_for_scene(scene_title="The Bargain", tracked_characters=["Ilsen Quill"])
    assert without_plan == ["The Bargain", "Ilsen Quill"]


# ---------------------------------------------------------------- critique


def test_critique_passes_good_output_and_counts_tokens() -> None:
    verdict = critique("scene_weaver", SCENE_PROSE, CritiqueContext(salient_terms=["Mara Vell"]))
    assert verdict.ok and verdict.reasons == []
    assert verdict.tokens == len(SCENE_PROSE.split())


def test_critique_reports_schema_terms_and_obligations() -> None:
    bad = critique("vision", '{"author_summary": "x"}')
    assert not bad.ok and all(r.startswith("schema: ") for r in bad.reasons)

    ctx = CritiqueContext(
        salient_terms=["Mara Vell", "Wren Ashdown"],
        open_obligations=[
            ObligationRef("mara-vell-unpaid-debt", "The unpaid debt"),
            ObligationRef("lost-map"),
        ],
        require_obligations=True,
    )
    verdict = critique("scene_weaver", validate_output("scene_weaver", SCENE_PROSE), ctx)
    assert verdict.reasons == [
        "salient terms missing: Wren Ashdown",
        "open obligations not addressed: lost-map",
    ]
    not_required = critique(
        "scene_weaver", SCENE_PROSE, CritiqueContext(open_obligations=ctx.open_obligations)
    )
    assert not_required.ok


def test_critique_counts_hook_slugs_as_addressed() -> None:
    plan = VisionPlan.model_validate(vision_data())
    ctx = CritiqueContext(open_obligations=[ObligationRef("mara-vell-unpaid-debt")], require_obligations=True)
    assert critique("vision", plan, ctx).ok
    assert not critique("world_bible", plan).ok  # a vision is not a world bible


def test_critique_forced_reject() -> None:
    verdict = critique("scene_weaver", SCENE_PROSE, CritiqueContext(forced_reject=True))
    assert not verdict.ok and "critique_reject" in verdict.reasons[0]


# ---------------------------------------------------------------- critique budget

BUDGET = CritiqueBudget(max_total=3, max_per_step=2, max_tokens=100)


def test_disabled_budget_stays_disabled() -> None:
    off = CritiqueBudget(3, 2, 100, enabled=False)
    assert initial_status(off) is CritiqueStatus.DISABLED
    assert next_status(CritiqueStatus.IDLE, off, CritiqueUsage()) is CritiqueStatus.DISABLED
    assert next_status(CritiqueStatus.DISABLED, BUDGET, CritiqueUsage()) is CritiqueStatus.DISABLED


def test_idle_until_requested_then_used() -> None:
    status = initial_status(BUDGET)
    assert status is CritiqueStatus.IDLE
    assert next_status(status, BUDGET, CritiqueUsage(), requested=False) is CritiqueStatus.IDLE
    assert next_status(status, BUDGET, CritiqueUsage(), tokens=40) is CritiqueStatus.USED


def test_per_step_and_total_counts_exhaust() -> None:
    usage = CritiqueUsage()
    status = initial_status(BUDGET)
    for _ in range(2):
        status = next_status(status, BUDGET, usage, tokens=10)
        assert status is CritiqueStatus.USED
        usage = usage.record(10)
    assert (usage.total, usage.step, usage.tokens) == (2, 2, 20)
    status = next_status(status, BUDGET, usage, tokens=10)
    assert status is CritiqueStatus.COUNT_EXHAUSTED and status.budget_label == "count"
    # sticky within the execution
    assert next_status(status, BUDGET, usage.new_step()) is CritiqueStatus.COUNT_EXHAUSTED
    # a new step gets its per-step allowance back until the plan total runs out
    usage = usage.new_step()
    assert next_status(CritiqueStatus.IDLE, BUDGET, usage) is CritiqueStatus.USED
    usage = usage.record(10)
    assert next_status(CritiqueStatus.USED, BUDGET, usage) is CritiqueStatus.COUNT_EXHAUSTED


def test_token_budget_exhausts() -> None:
    usage = CritiqueUsage(total=1, step=1, tokens=90)
    assert next_status(CritiqueStatus.USED, BUDGET, usage, tokens=10) is CritiqueStatus.USED
    status = next_status(CritiqueStatus.USED, BUDGET, usage, tokens=11)
    assert status is CritiqueStatus.TOKEN_EXHAUSTED and status.budget_label == "token"
    spent = CritiqueUsage(total=1, step=0, tokens=100)
    assert next_status(CritiqueStatus.IDLE, BUDGET, spent) is CritiqueStatus.TOKEN_EXHAUSTED
    assert CritiqueStatus.USED.budget_label is None and not CritiqueStatus.USED.exhausted


def test_status_values_match_contract() -> None:
    assert [s.value for s in CritiqueStatus] == [
        "disabled",
        "idle",
        "used",
        "count-exhausted",
        "token-exhausted",
    ]
