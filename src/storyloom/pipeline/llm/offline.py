"""A deterministic provider: a whole plan runs with no network, and faults can be injected from config.

Output depends only on (premise, plan name, phase, chapter/scene numbers): the same plan always gets
the same story, whatever the model name. Every normal output validates against its phase's schema.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from storyloom.domain.faults import FaultSpec
from storyloom.domain.phases import Phase, estimate_tokens, slugify
from storyloom.pipeline.llm.base import LLMRequest, LLMResponse, LLMTimeout, LLMUnavailable


class InjectedBug(RuntimeError):
    """The offline `raise` fault: an unexpected error (not a provider error), as a bug in a step would raise."""


# --------------------------------------------------------------------------------------------------
# The deterministic story
# --------------------------------------------------------------------------------------------------

_FIRST = (
    "Mara",
    "Ilsen",
    "Tobiah",
    "Wren",
    "Cassia",
    "Oren",
    "Liesel",
    "Dov",
    "Anouk",
    "Perrin",
    "Sefa",
    "Jory",
)
_LAST = ("Vell", "Ashdown", "Quill", "Marrow", "Stroud", "Calloway", "Fenn", "Ardent", "Loam", "Thresh")
_ROLES = ("protagonist", "rival", "mentor", "confidant", "antagonist")
_SUPPORT_ROLES = ("ferryman", "archivist", "smuggler", "magistrate", "healer")
_PLACES = (
    "The Glass Harbor",
    "Saltmarsh Archive",
    "Lantern Quarter",
    "Ironwood Reach",
    "The Drowned Observatory",
    "Cinder Market",
    "Gullwing Stair",
)
_SYSTEMS = ("Tide Ledger", "Guild of Cartographers", "Bell-Court Law", "Ember Tithe", "Lamplighter Oath")
_MOTIFS = (
    ("unpaid-debt", "The unpaid debt", "{name} owes a debt that someone will come to collect."),
    ("broken-oath", "The broken oath", "{name} swore an oath and broke it; the break must surface."),
    ("hidden-letter", "The hidden letter", "{name} hides a letter whose contents change an alliance."),
    ("lost-sibling", "The lost sibling", "{name} is still searching for a sibling presumed dead."),
    ("stolen-map", "The stolen map", "{name} carries a stolen map and the thief's guilt."),
)
_NOUNS = ("Bargain", "Reckoning", "Crossing", "Vigil", "Wager", "Tide", "Ledger", "Lantern", "Accord")


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


@dataclass(frozen=True)
class _Member:
    name: str
    role: str
    track: bool
    importance: str
    summary: str
    hooks: tuple[tuple[str, str, str], ...]  # (slug, title, description)

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "track": self.track,
            "importance": self.importance,
            "summary": self.summary,
            "continuity_hooks": [{"slug": s, "title": t, "description": d} for s, t, d in self.hooks],
        }


@dataclass(frozen=True)
class _World:
    premise: str
    plan_name: str
    core: tuple[_Member, ...]
    supporting: tuple[_Member, ...]
    places: tuple[str, ...]
    systems: tuple[str, ...]

    @property
    def tracked(self) -> list[_Member]:
        return [m for m in (*self.core, *self.supporting) if m.track]


def _world(premise: str, plan_name: str) -> _World:
    rng = _rng(premise, plan_name, "world")
    names = [
        f"{first} {last}" for first, last in zip(rng.sample(_FIRST, 5), rng.sample(_LAST, 5), strict=True)
    ]
    core_count = rng.choice((2, 3))
    roles = rng.sample(_ROLES, core_count)
    core = []
    for i in range(core_count):
        name = names[i]
        track = i < 2 or rng.random() < 0.5
        hooks: tuple[tuple[str, str, str], ...] = ()
        if track:
            motifs = rng.sample(_MOTIFS, rng.choice((1, 2)))
            hooks = tuple(
                (f"{slugify(name)}-{slug}", f"{name}: {title.lower()}", text.format(name=name))
                for slug, title, text in motifs
            )
        summary = f"{name}, the {roles[i]}, is pulled into the story because {premise or 'the tide turns'}."
        core.append(_Member(name, roles[i], track, "primary" if i == 0 else "secondary", summary, hooks))
    supporting = tuple(
        _Member(name, role, False, "minor", f"{name} is a {role} who knows more than they say.", ())
        for name, role in zip(names[core_count:], rng.sample(_SUPPORT_ROLES, 5 - core_count), strict=False)
    )[: rng.choice((1, 2))]
    places = tuple(rng.sample(_PLACES, rng.choice((2, 3))))
    systems = tuple(rng.sample(_SYSTEMS, 2))
    return _World(premise, plan_name, tuple(core), supporting, places, systems)


def _vision(world: _World, lore_status: str) -> dict[str, Any]:
    lead = world.core[0]
    return {
        "author_summary": (
            f"{world.plan_name}: {world.premise or 'an untold story'}. Told close to {lead.name}, "
            f"it moves through {', '.join(world.places)}."
        ),
        "book_goals": [
            f"Make {lead.name}'s choice in the final chapter feel earned.",
            f"Keep the rules of the {world.systems[0]} consistent and costly.",
        ],
        "core_cast": [m.as_json() for m in world.core],
        "supporting_cast": [m.as_json() for m in world.supporting],
        "lore_needs": [
            {
                "title": system,
                "requirement_slug": slugify(system),
                "status": lore_status,
                "description": f"How the {system} works, what it costs and who enforces it.",
            }
            for system in world.systems
        ],
        "planning_backlog": [
            "Draft the world bible from the core cast and places.",
            "Plan chapters around the open continuity hooks.",
        ],
    }


def _world_bible(world: _World) -> dict[str, Any]:
    return {
        "characters": [
            {
                "name": m.name,
                "summary": m.summary,
                "status": "active",
                "continuity_notes": [title for _, title, _ in m.hooks] or [f"{m.name} is a {m.role}."],
            }
            for m in (*world.core, *world.supporting)
        ],
        "locations": [
            {
                "name": place,
                "summary": f"{place} is where the story's debts come due.",
                "status": "active",
                "continuity_notes": [f"{place} floods at the spring tide."],
            }
            for place in world.places
        ],
        "systems": [
            {
                "name": system,
                "summary": f"The {system} binds anyone who invokes it.",
                "status": "active",
                "continuity_notes": [f"Breaking the {system} leaves a visible mark."],
            }
            for system in world.systems
        ],
    }


def _iterative(world: _World, chapters: int) -> dict[str, Any]:
    names = [m.name for m in world.tracked]
    return {
        "story_adjustments": [f"Spread the story across {chapters} chapters, each ending on a turn."],
        "character_priorities": [
            f"Give {name} a decision in every chapter they appear in." for name in names
        ],
        "location_notes": [f"Return to {world.places[0]} for the climax."],
        "systems_considerations": [f"Show the cost of the {world.systems[0]} before it is used to escape."],
        "risks": ["The middle chapter may stall if no hook pays off."],
    }


def _chapter(world: _World, n: int) -> dict[str, Any]:
    rng = _rng(world.premise, world.plan_name, "chapter", n)
    place = rng.choice(world.places)
    lead, foil = rng.sample(world.tracked, 2)
    noun = rng.choice(_NOUNS)
    hook_slug, hook_title, hook_text = (lead.hooks or foil.hooks)[0]
    return {
        "title": f"Chapter {n}: The {place.removeprefix('The ')} {noun}",
        "synopsis": f"In {place}, {lead.name} and {foil.name} collide over the {noun.lower()}.",
        "structure": [
            {
                "slug": f"chapter-{n}-opening",
                "summary": f"{lead.name} arrives in {place}.",
                "goal": f"{lead.name} wants the {noun.lower()} settled.",
                "obstacle": f"{foil.name} holds the other half of it.",
                "turn": "A witness changes sides.",
                "fallout": "Nobody leaves with what they came for.",
                "carry_forward": [{"slug": hook_slug, "title": hook_title, "description": hook_text}],
            },
            {
                "slug": f"chapter-{n}-turn",
                "summary": f"{foil.name} forces the question.",
                "goal": f"{foil.name} wants the truth out.",
                "obstacle": f"The {world.systems[0]} forbids it.",
                "turn": f"{lead.name} pays the price.",
                "fallout": "The next chapter opens on the debt.",
                "carry_forward": [],
            },
        ],
    }


def _scroll(world: _World, n: int, scenes_per_chapter: int) -> dict[str, Any]:
    chapter = _chapter(world, n)
    rng = _rng(world.premise, world.plan_name, "scroll", n)
    tracked = world.tracked
    nouns = rng.sample(_NOUNS, len(_NOUNS))  # stable per scene, whatever the scene count
    scenes = []
    for m in range(1, scenes_per_chapter + 1):
        lead = tracked[(n + m) % len(tracked)]
        foil = tracked[(n + m + 1) % len(tracked)]
        place = world.places[(n + m) % len(world.places)]
        noun = nouns[(m - 1) % len(nouns)]
        carry: list[dict[str, Any]] = []
        if m == scenes_per_chapter:
            carry.append(
                {
                    "slug": f"{slugify(lead.name)}-chapter-{n}-promise",
                    "title": f"{lead.name}'s promise in chapter {n}",
                    "description": f"{lead.name} promised {foil.name} an answer before the next tide.",
                    "character": lead.name,
                }
            )
        scenes.append(
            {
                "scene_slug": f"scene-{n}-{m}",
                "title": f"The {noun} at {place.removeprefix('The ')}",
                "goal": f"{lead.name} needs {foil.name} to keep the {noun.lower()} quiet.",
                "conflict": f"{foil.name} has already told someone.",
                "turn": f"The {world.systems[m % len(world.systems)]} is invoked.",
                "fallout": f"{lead.name} owes more than before.",
                "carry_forward": carry,
            }
        )
    short = chapter["title"].split(": ", 1)[-1]
    return {
        "scroll_slug": f"scroll-{n}",
        "title": f"Scroll {n}: {short}",
        "synopsis": chapter["synopsis"],
        "sections": [
            {
                "section_slug": f"scroll-{n}-section-1",
                "title": f"{short}, Part One",
                "summary": f"The scenes of chapter {n} in order.",
                "transitions": ["Cut on the turn; open the next scene mid-conversation."],
                "scenes": scenes,
            }
        ],
    }


def _scene_terms(world: _World, n: int, m: int, scenes_per_chapter: int) -> list[str]:
    """The salient terms of a scene of the deterministic scroll (when the caller passes none)."""
    scroll = _scroll(world, n, max(scenes_per_chapter, m))
    section = scroll["sections"][0]
    scene = section["scenes"][m - 1]
    plan = json.dumps(scene)
    names = [t.name for t in world.tracked if t.name in plan]
    return [scene["title"], section["title"], scroll["title"], _chapter(world, n)["title"], *names]


def _obligation_titles(value: Any) -> list[str]:
    out = []
    for item in value or ():
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, Mapping):
            out.append(str(item.get("title") or item.get("slug") or ""))
        else:
            out.append(str(getattr(item, "title", "") or getattr(item, "slug", "")))
    return [t for t in out if t]


def _scene(world: _World, n: int, m: int, terms: Sequence[str], obligations: Sequence[str]) -> str:
    rng = _rng(world.premise, world.plan_name, "scene", n, m)
    title = terms[0] if terms else f"Scene {n}.{m}"
    names = [t.name for t in world.tracked]
    place = rng.choice(world.places)
    lines = [f"## {title}", ""]
    lines.append(
        f"Rain came sideways off {place} as {names[0]} climbed the last stair, counting debts under "
        f"their breath. {names[1]} was already waiting, coat dark with salt, a lamp turned low."
    )
    lines.append("")
    for term in terms:
        lines.append(rng.choice(_SENTENCES).format(term=term))
    if obligations:
        lines.append("")
        for title_text in obligations:
            lines.append(
                f"Neither of them could put off {title_text} any longer; it sat between them like a blade."
            )
    lines.append("")
    lines.append(
        f'"Then we settle it tonight," {names[0]} said, and {names[1]} nodded, because the tide would not '
        "wait for either of them."
    )
    return "\n".join(lines) + "\n"


_SENTENCES = (
    "Everything tonight turned on {term}, and both of them knew it.",
    "The name {term} hung in the air longer than either wanted.",
    "Somewhere below, {term} waited like a held breath.",
    "It was {term} that finally broke the silence.",
)


# --------------------------------------------------------------------------------------------------
# The provider
# --------------------------------------------------------------------------------------------------

_NUMBERS = re.compile(r"(?:chapter|scroll|scene)-(\d+)(?:-(\d+))?")


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


class OfflineProvider:
    """Deterministic, schema-valid output for every phase, with config-driven fault injection."""

    name = "offline"

    def __init__(
        self,
        faults: Sequence[FaultSpec] = (),
        *,
        sleep: Callable[[float], None] = time.sleep,
        lore_status: Literal["planned", "ready", "missing"] = "ready",
        scenes_per_chapter: int = 2,
        chapters: int = 3,
    ) -> None:
        self.faults = list(faults)
        self.sleep = sleep
        self.lore_status = lore_status
        self.scenes_per_chapter = scenes_per_chapter
        self.chapters = chapters

    def fault_for(self, request: LLMRequest) -> FaultSpec | None:
        """The first configured fault that applies to this call."""
        return next(
            (fault for fault in self.faults if fault.applies_to(str(request.phase), request.attempt)), None
        )

    def complete(self, request: LLMRequest) -> LLMResponse:
        started = time.monotonic()
        fault = self.fault_for(request)
        where = f"{request.phase} {request.backlog_id or '-'} attempt {request.attempt}"
        critique_reject = False
        if fault is not None:
            delay = fault.delay.total_seconds()
            if fault.mode == "fail":
                raise LLMUnavailable(f"injected fault: {where} failed")
            if fault.mode == "raise":
                raise InjectedBug(f"injected fault: {where} raised")
            if fault.mode == "timeout":
                waited = min(delay, request.timeout)
                self.sleep(waited)
                raise LLMTimeout(f"injected fault: {where} timed out after {waited:g}s")
            if fault.mode == "slow":
                self.sleep(delay)
            critique_reject = fault.mode == "critique_reject"
        text = self.generate(request)
        if fault is not None and fault.mode == "malformed":
            text = _malform(text, request.phase)
        return LLMResponse(
            text=text,
            prompt_tokens=estimate_tokens(f"{request.system} {request.prompt}"),
            completion_tokens=estimate_tokens(text),
            model=request.model or "offline",
            provider=self.name,
            latency_ms=(time.monotonic() - started) * 1000,
            raw_finish_reason="stop",
            critique_reject=critique_reject,
        )

    def generate(self, request: LLMRequest) -> str:
        """The normal (fault-free) output of a call."""
        ctx = request.context
        premise = str(ctx.get("premise") or "")
        plan_name = str(ctx.get("plan_name") or request.plan_id or "Untitled")
        world = _world(premise, plan_name)
        found = _NUMBERS.search(request.backlog_id or "")
        chapter = _int(ctx.get("chapter_number"), _int(found.group(1), 1) if found else 1)
        scene = _int(ctx.get("scene_number"), _int(found.group(2), 1) if found and found.group(2) else 1)
        per_chapter = max(1, _int(ctx.get("scenes_per_chapter"), self.scenes_per_chapter))
        phase = Phase(request.phase)
        data: dict[str, Any]
        if phase is Phase.VISION:
            data = _vision(world, str(ctx.get("offline_lore_status") or self.lore_status))
        elif phase is Phase.WORLD_BIBLE:
            data = _world_bible(world)
        elif phase is Phase.ITERATIVE:
            data = _iterative(world, max(1, _int(ctx.get("chapters"), self.chapters)))
        elif phase is Phase.CHAPTER_ARCHITECT:
            data = _chapter(world, chapter)
        elif phase is Phase.SCROLL_REFINER:
            data = _scroll(world, chapter, per_chapter)
        else:
            raw_terms = ctx.get("salient_terms")
            terms = (
                [str(t) for t in raw_terms]
                if isinstance(raw_terms, list | tuple)
                else _scene_terms(world, chapter, scene, per_chapter)
            )
            return _scene(world, chapter, scene, terms, _obligation_titles(ctx.get("open_obligations")))
        return json.dumps(data, indent=2, ensure_ascii=False)


def _malform(text: str, phase: str) -> str:
    """Output that fails validation the way real models fail: truncated JSON."""
    if phase == Phase.SCENE_WEAVER:
        return '{"scene": "' + text[:40]
    return text[: max(1, len(text) // 2)]
