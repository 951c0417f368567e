"""Alertmanager label matchers: `label="v"`, `label!="v"`, `label=~"re"`, `label!~"re"`.

Values may hold any character (`alert_id="planner:phase-failed"`). Quoted values understand `\\"`, `\\\\` and
`\\n`; any other backslash is kept literally so regexes like `"a\\.b"` need no double escaping (Alertmanager's
classic parser does the same). Unquoted values follow Alertmanager's UTF-8 matcher lexer: they stop at
whitespace and at the reserved characters ``{}!=~,\\"'` ``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

EXPECTED_FORMS = 'expected label="value", label!="value", label=~"regex" or label!~"regex"'

_NAME = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*")
_RESERVED = frozenset("{}!=~,\\\"'`")


class MatchType(StrEnum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


@dataclass(frozen=True)
class Matcher:
    """One label condition; equality and hashing ignore the compiled regex."""

    name: str
    op: MatchType
    value: str
    _regex: re.Pattern[str] | None = field(default=None, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "op", MatchType(self.op))
        if self.op in (MatchType.REGEX, MatchType.NOT_REGEX):
            try:
                # Anchored as `^(?:re)$` in Alertmanager; fullmatch, since `$` matches before a final \n.
                compiled = re.compile(f"(?:{self.value})")
            except re.error as exc:
                raise ValueError(f"invalid regex in matcher {str(self)!r}: {exc.msg}") from None
            object.__setattr__(self, "_regex", compiled)

    def matches_value(self, value: str) -> bool:
        if self.op is MatchType.EQUAL:
            return value == self.value
        if self.op is MatchType.NOT_EQUAL:
            return value != self.value
        assert self._regex is not None
        hit = self._regex.fullmatch(value) is not None
        return hit if self.op is MatchType.REGEX else not hit

    def matches(self, labels: Mapping[str, str]) -> bool:
        """A missing label matches as the empty string, as in Alertmanager."""
        return self.matches_value(labels.get(self.name, ""))

    def __str__(self) -> str:
        return f"{self.name}{self.op.value}{quote(self.value)}"


def quote(value: str) -> str:
    """Quote a value so that `parse_matcher` reads it back unchanged."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _read_quoted(text: str, start: int) -> tuple[str, int] | None:
    """Read a double-quoted value starting after its opening quote; None if it is never closed."""
    out: list[str] = []
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "n":
                out.append("\n")
            elif nxt in ('"', "\\"):
                out.append(nxt)
            else:
                out.append("\\" + nxt)
            i += 2
            continue
        if ch == '"':
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    return None


def _read_unquoted(text: str, start: int) -> tuple[str, int]:
    i = start
    while i < len(text) and not text[i].isspace() and text[i] not in _RESERVED:
        i += 1
    return text[start:i], i


def _parse_at(text: str, pos: int) -> tuple[Matcher, int]:
    """Parse one matcher at `pos`; return it and the index just after its value."""
    head = _NAME.match(text, pos)
    if head is None:
        raise ValueError(EXPECTED_FORMS)
    name, op = head.group(1), head.group(2)
    i = head.end()
    if i < len(text) and text[i] == '"':
        read = _read_quoted(text, i + 1)
        if read is None:
            raise ValueError(f"the value has no closing quote; {EXPECTED_FORMS}")
        value, end = read
    else:
        value, end = _read_unquoted(text, i)
        if not value:
            if end < len(text) and not text[end].isspace() and text[end] != ",":
                raise ValueError(EXPECTED_FORMS)
            raise ValueError(f'missing value (write "" for an empty one); {EXPECTED_FORMS}')
    return Matcher(name, MatchType(op), value), end


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher; ValueError says what to write instead."""
    try:
        matcher, end = _parse_at(text, 0)
    except ValueError as exc:
        if str(exc).startswith("invalid regex"):
            raise
        raise ValueError(f"invalid matcher {text!r}: {exc}") from None
    if text[end:].strip():
        raise ValueError(f"invalid matcher {text!r}: unexpected {text[end:].strip()!r}; {EXPECTED_FORMS}")
    return matcher


def parse_matchers(text: str) -> tuple[Matcher, ...]:
    """Parse `{a="1", b=~"x|y"}` or `a="1",b=~"x|y"` (the amtool / silence form); braces are optional."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    out: list[Matcher] = []
    pos = 0
    while body[pos:].strip():
        try:
            matcher, pos = _parse_at(body, pos)
        except ValueError as exc:
            if str(exc).startswith("invalid regex"):
                raise
            raise ValueError(f"invalid matchers {text!r}: {exc}") from None
        out.append(matcher)
        rest = body[pos:].lstrip()
        if rest.startswith(","):
            pos = len(body) - len(rest) + 1
        elif rest:
            raise ValueError(f"invalid matchers {text!r}: expected ',' before {rest!r}")
    return tuple(out)


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """True when every matcher matches; an empty list matches everything."""
    return all(m.matches(labels) for m in matchers)


def as_matchers(items: Iterable[Matcher | str]) -> tuple[Matcher, ...]:
    """Accept parsed matchers or their text (config and API lists)."""
    return tuple(m if isinstance(m, Matcher) else parse_matcher(m) for m in items)
