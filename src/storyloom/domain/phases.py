"""The six fiction phases as data: their output models, validation and the attentional gate.

Pure: no I/O. The planner runner renders a phase's template, calls a provider, then asks this module
whether the text is a valid output (`validate_output`); the critic and its budget are `critique.py`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class Phase(StrEnum):
    VISION = "vision"
    WORLD_BIBLE = "world_bible"
    ITERATIVE = "iterative"
    CHAPTER_ARCHITECT = "chapter_architect"
    SCROLL_REFINER = "scroll_refiner"
    SCENE_WEAVER = "scene_weaver"


# --------------------------------------------------------------------------------------------------
# Output models
# --------------------------------------------------------------------------------------------------

_SLUG_STRIP = re.compile(r"[^a-z0-9]+")


def slugify(text: str) -> str:
    """`"The Unpaid Debt!"` → `the-unpaid-debt`; obligations are unique per slug, so slugs are normalized."""
    return _SLUG_STRIP.sub("-", text.casefold()).strip("-")


class _Model(BaseModel):
    # LLMs add keys we do not use (ignored) and write numbers where we expect words (accepted).
    model_config = ConfigDict(extra="ignore", coerce_numbers_to_str=True, str_strip_whitespace=True)


class ContinuityHook(_Model):
    """A promise the story makes about a character; each becomes a persona obligation."""

    slug: str = Field(min_length=1)
    title: str = Field(min_length=1)
    description: str = ""
    character: str | None = None  # the character it binds; filled from the cast member in the vision

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"slug": data, "title": data, "description": data}
        if isinstance(data, Mapping):
            if not data.get("slug") and data.get("title"):
                return {**data, "slug": data["title"]}
            if not data.get("title") and isinstance(data.get("slug"), str):
                return {**data, "title": data["slug"]}
        return data

    @field_validator("slug")
    @classmethod
    def _normalize_slug(cls, value: str) -> str:
        slug = slugify(value)
        if not slug:
            raise ValueError("slug needs at least one letter or digit")
        return slug


class CastMember(_Model):
    name: str = Field(min_length=1)
    role: str = Field(min_length=1)
    track: bool = False
    importance: str = "supporting"
    summary: str = ""
    continuity_hooks: list[ContinuityHook] = Field(default_factory=list)

    @model_validator(mode="after")
    def _bind_hooks(self) -> CastMember:
        for hook in self.continuity_hooks:
            if hook.character is None:
                hook.character = self.name
        return self


class LoreNeed(_Model):
    title: str = Field(min_length=1)
    requirement_slug: str = Field(min_length=1)
    status: Literal["planned", "ready", "missing"] = "planned"
    description: str = ""

    @field_validator("requirement_slug")
    @classmethod
    def _normalize_slug(cls, value: str) -> str:
        slug = slugify(value)
        if not slug:
            raise ValueError("requirement_slug needs at least one letter or digit")
        return slug


class VisionPlan(_Model):
    author_summary: str = Field(min_length=10)
    book_goals: list[str] = Field(default_factory=list)
    core_cast: list[CastMember] = Field(min_length=1)
    supporting_cast: list[CastMember] = Field(default_factory=list)
    lore_needs: list[LoreNeed] = Field(default_factory=list)
    planning_backlog: list[str] = Field(default_factory=list)

    def cast(self) -> list[CastMember]:
        return [*self.core_cast, *self.supporting_cast]

    def tracked(self) -> list[CastMember]:
        return [member for member in self.cast() if member.track]


class WorldBibleEntry(_Model):
    name: str = Field(min_length=1)
    summary: str = ""
    status: str = "active"
    continuity_notes: list[str] = Field(default_factory=list)


class WorldBible(_Model):
    characters: list[WorldBibleEntry]
    locations: list[WorldBibleEntry]
    systems: list[WorldBibleEntry]

    def entries(self) -> list[tuple[str, WorldBibleEntry]]:
        """(category, entry) pairs; the category names the slug `<category>:<name>`."""
        return [
            *(("characters", e) for e in self.characters),
            *(("locations", e) for e in self.locations),
            *(("systems", e) for e in self.systems),
        ]


class IterationPlan(_Model):
    story_adjustments: list[str]
    character_priorities: list[str]
    location_notes: list[str]
    systems_considerations: list[str]
    risks: list[str]


class ChapterBeat(_Model):
    slug: str = Field(min_length=1)
    summary: str = ""
    goal: str = ""
    obstacle: str = ""
    turn: str = ""
    fallout: str = ""
    carry_forward: list[ContinuityHook] = Field(default_factory=list)


class ChapterBlueprint(_Model):
    title: str = Field(min_length=1)
    synopsis: str = Field(min_length=10)
    structure: list[ChapterBeat] = Field(min_length=1)


class ScrollScene(_Model):
    scene_slug: str = Field(min_length=1)
    title: str = Field(min_length=1)
    goal: str = ""
    conflict: str = ""
    turn: str = ""
    fallout: str = ""
    carry_forward: list[ContinuityHook] = Field(default_factory=list)

    def plan_text(self) -> str:
        hooks = " ".join(f"{h.title} {h.description} {h.character or ''}" for h in self.carry_forward)
        return " ".join((self.title, self.goal, self.conflict, self.turn, self.fallout, hooks))


class ScrollSection(_Model):
    section_slug: str = Field(min_length=1)
    title: str = Field(min_length=1)
    summary: str = ""
    transitions: list[str] = Field(default_factory=list)
    scenes: list[ScrollScene] = Field(min_length=1)


class ScrollPlan(_Model):
    scroll_slug: str = Field(min_length=1)
    title: str = Field(min_length=1)
    synopsis: str = ""
    sections: list[ScrollSection] = Field(min_length=1)

    def scenes(self) -> list[tuple[ScrollSection, ScrollScene]]:
        return [(section, scene) for section in self.sections for scene in section.scenes]


# --------------------------------------------------------------------------------------------------
# The phase table
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseSpec:
    phase: Phase
    planner_name: str
    step_id: str
    template_id: str
    output_kind: Literal["json", "markdown"]
    output_model: type[BaseModel] | None


PHASES: dict[Phase, PhaseSpec] = {
    spec.phase: spec
    for spec in (
        PhaseSpec(
            Phase.VISION, "Vision Planner", "vision-plan", "planner.fiction.vision", "json", VisionPlan
        ),
        PhaseSpec(
            Phase.WORLD_BIBLE,
            "World Bible Manager",
            "world-bible",
            "planner.fiction.worldBible",
            "json",
            WorldBible,
        ),
        PhaseSpec(
            Phase.ITERATIVE,
            "Iterative Planner",
            "iterative-plan",
            "planner.fiction.iterative",
            "json",
            IterationPlan,
        ),
        PhaseSpec(
            Phase.CHAPTER_ARCHITECT,
            "Chapter Architect",
            "chapter-blueprint",
            "planner.fiction.chapterArchitect",
            "json",
            ChapterBlueprint,
        ),
        PhaseSpec(
            Phase.SCROLL_REFINER,
            "Scroll Refiner",
            "scroll-refinement",
            "planner.fiction.scrollRefiner",
            "json",
            ScrollPlan,
        ),
        PhaseSpec(
            Phase.SCENE_WEAVER,
            "Scene Weaver",
            "scene-draft",
            "planner.fiction.sceneWeaver",
            "markdown",
            None,
        ),
    )
}


def phase_spec(phase: str | Phase) -> PhaseSpec:
    """The spec of a phase by name; raises ValueError listing the known phases."""
    try:
        return PHASES[Phase(phase)]
    except ValueError:
        known = ", ".join(p.value for p in Phase)
        raise ValueError(f"unknown phase {phase!r}: expected one of {known}") from None


# --------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------

MIN_SCENE_WORDS = 30
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_-]*)[ \t]*\r?\n(.*?)(?:\r?\n)?```", re.DOTALL)


@dataclass(frozen=True)
class ValidationResult:
    ok: bool
    value: BaseModel | str | None
    errors: list[str] = field(default_factory=list)


def estimate_tokens(text: str) -> int:
    """Rough token count: words. Good enough for budgets and offline accounting."""
    return len(text.split())


def strip_fence(raw: str, languages: Iterable[str] = ("json", "")) -> str:
    """The body of the first fenced block in one of `languages` (`""` = no language), else the text."""
    wanted = {lang.casefold() for lang in languages}
    for match in _FENCE.finditer(raw):
        if match.group(1).casefold() in wanted:
            return match.group(2).strip()
    text = raw.strip()
    if text.startswith("```"):  # an opening fence whose closing fence never came (truncated output)
        text = text.partition("\n")[2].strip()
    return text


def _json_path(loc: Sequence[int | str]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "$"


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _format_errors(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors(include_url=False):
        loc = [part for part in err["loc"] if not (isinstance(part, str) and part.startswith("function-"))]
        out.append(f"{_json_path(loc)}: {_lower_first(str(err['msg']))}")
    return out


def validate_output(
    phase: str | Phase, raw_text: str, *, salient_terms: Sequence[str] | None = None
) -> ValidationResult:
    """Parse and check a phase output; never raises. Errors carry JSON paths: `core_cast[0].name: ...`.

    JSON phases accept a ```json fenced block around the object. The Markdown phase needs prose of at
    least MIN_SCENE_WORDS words; with `salient_terms` it also applies the attentional gate.
    """
    try:
        spec = phase_spec(phase)
    except ValueError as exc:
        return ValidationResult(False, None, [f"$: {exc}"])
    if not isinstance(raw_text, str):
        return ValidationResult(False, None, [f"$: expected text, got {type(raw_text).__name__}"])
    try:
        if spec.output_kind == "markdown":
            return _validate_markdown(raw_text, salient_terms)
        assert spec.output_model is not None
        return _validate_json(spec.output_model, raw_text)
    except Exception as exc:  # a validator must report, not crash the runner
        return ValidationResult(False, None, [f"$: could not validate output: {type(exc).__name__}: {exc}"])


def _validate_json(model: type[BaseModel], raw_text: str) -> ValidationResult:
    body = strip_fence(raw_text)
    if not body:
        return ValidationResult(False, None, ["$: empty output, expected a JSON object"])
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        return ValidationResult(False, None, [f"$: invalid JSON: {exc}"])
    if not isinstance(data, dict):
        return ValidationResult(False, None, [f"$: expected a JSON object, got {type(data).__name__}"])
    try:
        return ValidationResult(True, model.model_validate(data), [])
    except ValidationError as exc:
        return ValidationResult(False, None, _format_errors(exc))


def _parses_as_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _validate_markdown(raw_text: str, salient_terms: Sequence[str] | None) -> ValidationResult:
    text = strip_fence(raw_text, ("markdown", "md"))
    if not text:
        return ValidationResult(False, None, ["$: empty output, expected Markdown prose"])
    if text.startswith("{") or (text.startswith("[") and _parses_as_json(text)):
        return ValidationResult(False, None, ["$: expected Markdown prose, got what looks like JSON"])
    errors = []
    words = estimate_tokens(text)
    if words < MIN_SCENE_WORDS:
        errors.append(f"$: scene prose too short: {words} words, need at least {MIN_SCENE_WORDS}")
    if salient_terms:
        missing = attentional_gate(text, salient_terms)
        if missing:
            errors.append(f"$: missing salient terms: {', '.join(missing)}")
    return ValidationResult(not errors, text if not errors else None, errors)


# --------------------------------------------------------------------------------------------------
# Attentional gate
# --------------------------------------------------------------------------------------------------

_EMPHASIS = re.compile(r"[*_`~]")
_SPACES = re.compile(r"\s+")
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})


def normalized(text: str) -> str:
    return _SPACES.sub(" ", _EMPHASIS.sub("", text.translate(_QUOTES))).casefold().strip()


def _unique(terms: Iterable[str | None]) -> list[str]:
    seen: set[str] = set()
    out = []
    for term in terms:
        if not term or not term.strip():
            continue
        key = normalized(term)
        if key and key not in seen:
            seen.add(key)
            out.append(term.strip())
    return out


def attentional_gate(markdown: str, salient_terms: Iterable[str]) -> list[str]:
    """The salient terms the prose never mentions (case-, emphasis- and whitespace-insensitive)."""
    text = normalized(markdown)
    return [term for term in _unique(salient_terms) if normalized(term) not in text]


def salient_terms_for_scene(
    *,
    scene_title: str,
    section_title: str | None = None,
    scroll_title: str | None = None,
    blueprint_title: str | None = None,
    tracked_characters: Iterable[str] = (),
    scene: ScrollScene | None = None,
) -> list[str]:
    """Terms a scene's prose must mention: its titles and the tracked characters present in the scene.

    With `scene` (the scroll's plan for it) only tracked characters its plan mentions count; without it,
    every name given counts (the caller already chose the characters present).
    """
    names = list(tracked_characters)
    if scene is not None:
        plan = normalized(scene.plan_text())
        names = [name for name in names if normalized(name) in plan]
    return _unique([scene_title, section_title, scroll_title, blueprint_title, *names])


def hooks_in(value: BaseModel) -> list[ContinuityHook]:
    """Every continuity hook an output emits (cast hooks, carry_forward of beats and scenes)."""
    if isinstance(value, VisionPlan):
        return [hook for member in value.cast() for hook in member.continuity_hooks]
    if isinstance(value, ChapterBlueprint):
        return [hook for beat in value.structure for hook in beat.carry_forward]
    if isinstance(value, ScrollPlan):
        return [hook for _, scene in value.scenes() for hook in scene.carry_forward]
    return []
