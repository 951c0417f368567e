from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storyloom.domain.matchers import (
    EXPECTED_FORMS,
    Matcher,
    MatchType,
    as_matchers,
    matches_all,
    parse_matcher,
    parse_matchers,
)


@pytest.mark.parametrize(
    ("text", "op", "value"),
    [
        ('severity="error"', MatchType.EQUAL, "error"),
        ('severity!="error"', MatchType.NOT_EQUAL, "error"),
        ('severity=~"error|critical"', MatchType.REGEX, "error|critical"),
        ('severity!~"info|warning"', MatchType.NOT_REGEX, "info|warning"),
    ],
)
def test_each_operator_parses(text: str, op: MatchType, value: str) -> None:
    assert parse_matcher(text) == Matcher("severity", op, value)


@pytest.mark.parametrize(
    ("text", "value", "expected"),
    [
        ('severity="error"', "error", True),
        ('severity="error"', "warning", False),
        ('severity!="error"', "warning", True),
        ('severity!="error"', "error", False),
        ('severity=~"error|critical"', "critical", True),
        ('severity=~"error|critical"', "warning", False),
        ('severity!~"error|critical"', "warning", True),
        ('severity!~"error|critical"', "error", False),
    ],
)
def test_each_operator_matches(text: str, value: str, expected: bool) -> None:
    assert parse_matcher(text).matches({"severity": value}) is expected


def test_colon_in_quoted_and_unquoted_values() -> None:
    quoted = parse_matcher('alert_id="planner:phase-failed"')
    unquoted = parse_matcher("alert_id=planner:phase-failed")
    assert quoted == unquoted == Matcher("alert_id", MatchType.EQUAL, "planner:phase-failed")
    assert quoted.matches({"alert_id": "planner:phase-failed"})
    assert not quoted.matches({"alert_id": "planner:phase-blocked"})


def test_unquoted_value_and_spaces_around_operator() -> None:
    assert parse_matcher("severity=error") == Matcher("severity", MatchType.EQUAL, "error")
    assert parse_matcher('  severity =~ "err.*"  ') == Matcher("severity", MatchType.REGEX, "err.*")
    assert parse_matcher("severity=~error|critical").matches({"severity": "critical"})


def test_escaped_quotes_backslashes_and_newlines_in_values() -> None:
    assert parse_matcher(r'title="say \"hi\""').value == 'say "hi"'
    assert parse_matcher(r'path="C:\\tmp"').value == "C:\\tmp"
    assert parse_matcher(r'text="a\nb"').value == "a\nb"


def test_spurious_escape_is_kept_so_regexes_need_no_double_escaping() -> None:
    matcher = parse_matcher(r'host=~"a\.b"')
    assert matcher.value == r"a\.b"
    assert matcher.matches({"host": "a.b"})
    assert not matcher.matches({"host": "axb"})


def test_regex_is_fully_anchored() -> None:
    matcher = parse_matcher('alert_id=~"planner"')
    assert not matcher.matches({"alert_id": "planner:phase-failed"})
    assert not matcher.matches({"alert_id": "x-planner"})
    assert not matcher.matches({"alert_id": "planner\n"})
    assert matcher.matches({"alert_id": "planner"})
    assert parse_matcher('a=~"x|y"').matches({"a": "y"})  # alternation stays inside the anchors
    assert not parse_matcher('a=~"x|y"').matches({"a": "xy"})


def test_missing_label_matches_as_empty_string() -> None:
    assert parse_matcher('plan_id=""').matches({})
    assert parse_matcher('plan_id=~".*"').matches({})
    assert parse_matcher('plan_id!="p1"').matches({})
    assert not parse_matcher('plan_id="p1"').matches({})
    assert not parse_matcher('plan_id=~".+"').matches({})


@pytest.mark.parametrize("text", ['sev=="x"', '="x"', 'sev~"x"', 'sev "x"', "sev", '1sev="x"', 'a-b="x"', ""])
def test_bad_syntax_says_what_to_write(text: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_matcher(text)
    assert str(err.value).startswith(f"invalid matcher {text!r}: ")
    assert EXPECTED_FORMS in str(err.value)


def test_bad_syntax_exact_message() -> None:
    with pytest.raises(ValueError) as err:
        parse_matcher('sev=="x"')
    assert str(err.value) == (
        "invalid matcher 'sev==\"x\"': "
        'expected label="value", label!="value", label=~"regex" or label!~"regex"'
    )


def test_unclosed_quote_missing_value_and_trailing_text_are_named() -> None:
    with pytest.raises(ValueError, match="no closing quote"):
        parse_matcher('a="x')
    with pytest.raises(ValueError, match='missing value \\(write "" for an empty one\\)'):
        parse_matcher("a=")
    with pytest.raises(ValueError, match="unexpected 'b'"):
        parse_matcher('a="x" b')


def test_bad_regex_reports_the_regex_error() -> None:
    with pytest.raises(ValueError, match=r"^invalid regex in matcher 'a=~\"\(\"': missing \)"):
        parse_matcher('a=~"("')
    with pytest.raises(ValueError, match="invalid regex"):
        Matcher("a", MatchType.NOT_REGEX, "[")


def test_matchers_are_frozen_and_hashable() -> None:
    a = parse_matcher('a=~"x|y"')
    b = parse_matcher('a =~ "x|y"')
    assert a == b and hash(a) == hash(b)
    assert len({a, b, parse_matcher('a="x"')}) == 2
    with pytest.raises(AttributeError):
        a.value = "z"  # type: ignore[misc]


def test_matches_all_needs_every_matcher_and_empty_list_matches_everything() -> None:
    matchers = as_matchers(['severity=~"error|critical"', 'plan_id="p1"'])
    assert matches_all(matchers, {"severity": "error", "plan_id": "p1"})
    assert not matches_all(matchers, {"severity": "error", "plan_id": "p2"})
    assert matches_all((), {"anything": "x"})


def test_parse_matchers_list_form() -> None:
    assert parse_matchers('{alert_id="planner:phase-failed", severity=~"a,b"}') == (
        Matcher("alert_id", MatchType.EQUAL, "planner:phase-failed"),
        Matcher("severity", MatchType.REGEX, "a,b"),
    )
    assert parse_matchers("a=1,b!=2") == (
        Matcher("a", MatchType.EQUAL, "1"),
        Matcher("b", MatchType.NOT_EQUAL, "2"),
    )
    with pytest.raises(ValueError, match="expected ','"):
        parse_matchers('a="1" b="2"')


label_names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,20}", fullmatch=True)
plain_values = st.text(st.characters(codec="utf-8"), max_size=30)


@given(label_names, st.sampled_from([MatchType.EQUAL, MatchType.NOT_EQUAL]), plain_values)
def test_str_round_trips_for_any_value(name: str, op: MatchType, value: str) -> None:
    matcher = Matcher(name, op, value)
    assert parse_matcher(str(matcher)) == matcher
    assert parse_matchers(f"{{{matcher},{matcher}}}") == (matcher, matcher)


@given(
    label_names, st.sampled_from([MatchType.REGEX, MatchType.NOT_REGEX]), st.from_regex(r"[a-z.:|*\\-]{0,12}")
)
def test_str_round_trips_for_regexes(name: str, op: MatchType, pattern: str) -> None:
    try:
        matcher = Matcher(name, op, pattern)
    except ValueError:
        return  # not a valid regex; covered by test_bad_regex_reports_the_regex_error
    assert parse_matcher(str(matcher)) == matcher


@given(plain_values)
def test_equal_matcher_matches_exactly_its_value(value: str) -> None:
    matcher = Matcher("k", MatchType.EQUAL, value)
    assert matcher.matches({"k": value})
    assert not matcher.matches({"k": value + "x"})
