"""Stored values an older version may have written, made fit to show: the pure half of tolerant reads.

A row can hold what today's input validation refuses: a lone surrogate or a NUL in a text (no UTF-8
response can carry the first), a label map whose values are not strings, JSON of another shape. A read
must still answer, so each helper returns the value repaired for display together with the problems it
found (`<field>: <what is wrong>`); the caller shows the row and marks it unreadable.
"""

from __future__ import annotations

import json
import re
from typing import Any

REPLACEMENT = "\ufffd"
_UNSHOWABLE = re.compile("[\x00\ud800-\udfff]")
_KINDS = {
    dict: "an object",
    list: "a list",
    str: "text",
    bool: "a boolean",
    int: "a number",
    float: "a number",
}


def kind_of(value: object) -> str:
    return "null" if value is None else _KINDS.get(type(value), type(value).__name__)


def showable(text: str) -> str:
    """`text` with lone surrogates and NUL as U+FFFD (the same object when there is none)."""
    return _UNSHOWABLE.sub(REPLACEMENT, text) if _UNSHOWABLE.search(text) else text


def readable_text(value: object, where: str) -> tuple[str, list[str]]:
    """A stored text fit to show: lone surrogates and NUL become U+FFFD, anything else its JSON text."""
    if not isinstance(value, str):
        shown = json.dumps(value, default=str)  # ASCII-only: whatever it holds is escaped
        return shown, [f"{where}: stored as {kind_of(value)}, not text"]
    shown = showable(value)
    return shown, [] if shown is value else [f"{where}: holds a lone surrogate or NUL"]


def readable_map(value: object, where: str) -> tuple[dict[str, str], list[str]]:
    """A stored label or annotation map as text → text (an empty map when it is no object at all)."""
    if not isinstance(value, dict):
        return {}, [f"{where}: stored as {kind_of(value)}, not an object"]
    shown: dict[str, str] = {}
    problems: list[str] = []
    for key, item in value.items():
        name, key_problems = readable_text(key, where)
        text, item_problems = readable_text(item, f"{where}.{name}")
        shown[name] = text
        problems += key_problems + item_problems
    return shown, problems


def readable_json(value: Any, where: str) -> tuple[Any, list[str]]:
    """Any stored JSON with every text in it (keys too) fit to show; the shape is kept."""
    if isinstance(value, str):
        return readable_text(value, where)
    if isinstance(value, list):
        items = [readable_json(item, f"{where}.{i}") for i, item in enumerate(value)]
        return [v for v, _ in items], [p for _, ps in items for p in ps]
    if isinstance(value, dict):
        shown: dict[str, Any] = {}
        problems: list[str] = []
        for key, item in value.items():
            name, key_problems = readable_text(key, where)
            shown[name], item_problems = readable_json(item, f"{where}.{name}")
            problems += key_problems + item_problems
        return shown, problems
    return value, []


def readable_list(value: object, where: str) -> tuple[list[str], list[str]]:
    """A stored list of texts (fingerprints, matchers) fit to show (empty when it is no list at all)."""
    if not isinstance(value, list):
        return [], [f"{where}: stored as {kind_of(value)}, not a list"]
    items = [readable_text(item, f"{where}.{i}") for i, item in enumerate(value)]
    return [v for v, _ in items], [p for _, ps in items for p in ps]
