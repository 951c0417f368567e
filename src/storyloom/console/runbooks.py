"""Runbooks (`docs/runbooks/<alert id with ':' → '-'>.md`) rendered for the console."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from markdown_it import MarkdownIt
from markupsafe import Markup

import storyloom

_SAFE_ID = re.compile(r"^[a-z0-9][a-z0-9:_-]{0,79}$")


def runbook_dirs() -> list[Path]:
    """A packaged copy (wheel installs) first, then the repository's `docs/` (editable installs, tests)."""
    package = Path(storyloom.__file__).resolve().parent
    return [package / "docs" / "runbooks", package.parents[1] / "docs" / "runbooks"]


def runbook_path(alert_id: str) -> Path | None:
    """The file for an alert id (`planner:phase-failed` or `planner-phase-failed`), or None."""
    if not _SAFE_ID.match(alert_id):
        return None
    name = alert_id.replace(":", "-") + ".md"
    for folder in runbook_dirs():
        path = folder / name
        if path.is_file():
            return path
    return None


@lru_cache(maxsize=64)
def _render(path: str, mtime: float) -> tuple[str, Markup]:
    text = Path(path).read_text(encoding="utf-8")
    md = MarkdownIt("commonmark", {"html": False, "linkify": False}).enable("table")
    title = next((line[2:].strip() for line in text.splitlines() if line.startswith("# ")), Path(path).stem)
    return title, Markup(md.render(text))


def render_runbook(alert_id: str) -> tuple[str, Markup] | None:
    """(title, HTML) of the runbook, or None for an unknown id. Raw HTML in the Markdown is escaped."""
    path = runbook_path(alert_id)
    if path is None:
        return None
    return _render(str(path), path.stat().st_mtime)
