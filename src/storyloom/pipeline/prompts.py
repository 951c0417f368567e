"""Planner prompt templates (`templates/<template_id>.md`) and their rendering.

A placeholder is `{name}` with `name` an identifier; `{{` and `}}` are literal braces. Anything else in
braces (the JSON examples in the templates) is left alone, so templates need no escaping.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from storyloom.domain.phases import Phase, phase_spec

TEMPLATE_DIR = Path(__file__).parent / "templates"
_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


class TemplateNotFound(LookupError):
    """No template file for a template id (PlannerHealth reports it as `planner:template-missing`)."""


class PromptRenderError(KeyError):
    """The context lacks values the template needs; `missing` names them all."""

    def __init__(self, missing: list[str], template_id: str | None = None) -> None:
        self.missing = missing
        self.template_id = template_id
        super().__init__(missing)

    def __str__(self) -> str:
        where = f"template {self.template_id}" if self.template_id else "the template"
        return f"{where} needs values for: {', '.join(self.missing)} (add them to the prompt context)"


def template_path(template_id: str, directory: Path | None = None) -> Path:
    return (directory or TEMPLATE_DIR) / f"{template_id}.md"


def load_template(template_id: str, directory: Path | None = None) -> str:
    """The text of a template; raises TemplateNotFound with the path it looked at."""
    path = template_path(template_id, directory)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TemplateNotFound(f"planner template {template_id!r} not found at {path}") from None


def placeholders(template_text: str) -> list[str]:
    """The placeholder names a template uses, in first-use order."""
    names: list[str] = []
    for match in _TOKEN.finditer(template_text):
        name = match.group(1)
        if name and name not in names:
            names.append(name)
    return names


def required_context(phase: str | Phase, directory: Path | None = None) -> list[str]:
    """The context keys a phase's template needs."""
    return placeholders(load_template(phase_spec(phase).template_id, directory))


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return str(value)


def format_value(value: Any) -> str:
    """Strings as they are; lists on one JSON line; objects and models as indented JSON."""
    if value is None:
        return "(none)"
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, BaseModel):
        return value.model_dump_json(indent=2)
    if isinstance(value, list | tuple | set | frozenset):
        return json.dumps(list(value), ensure_ascii=False, default=_jsonable)
    return json.dumps(value, indent=2, ensure_ascii=False, default=_jsonable)


def render_prompt(template_text: str, context: Mapping[str, Any], *, template_id: str | None = None) -> str:
    """Fill `{name}` placeholders from `context`; raises PromptRenderError naming every missing key."""
    missing = [name for name in placeholders(template_text) if name not in context]
    if missing:
        raise PromptRenderError(missing, template_id)

    def substitute(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        return format_value(context[match.group(1)])

    return _TOKEN.sub(substitute, template_text)


def render_phase_prompt(phase: str | Phase, context: Mapping[str, Any], directory: Path | None = None) -> str:
    """Load a phase's template and render it."""
    template_id = phase_spec(phase).template_id
    return render_prompt(load_template(template_id, directory), context, template_id=template_id)


def system_prompt(phase: str | Phase) -> str:
    """The system message of a phase: who the planner is and the reply format it must keep."""
    spec = phase_spec(phase)
    reply = (
        "Reply with one JSON object only, no prose and no code fences, following the shape in the request."
        if spec.output_kind == "json"
        else "Reply with the scene prose in Markdown only."
    )
    return f"You are the {spec.planner_name} of Storyloom, an AI fiction pipeline. {reply}"
