"""The config loader never fails with anything but `<yaml.path>: <message>` lines, whatever the file holds:
random YAML trees, and random values at every key the config knows (hypothesis)."""

from __future__ import annotations

import re
import tempfile
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from storyloom.config import Config, ConfigError, load_config
from storyloom.runtime import load_checked_config

PROBLEM = re.compile(r"^[^\s].*?: \S.*$")
ENV = {"LOADER_TEST_SECRET": "whsec_bG9hZGVyLXRlc3Qtc2VjcmV0LTAxMjM0NTY3"}

BASE: dict[str, Any] = {
    "llm": {"faults": [{"phase": "scroll_refiner", "mode": "fail", "times": 1}]},
    "pipeline": {"quotas": {"per_planner": {"vision": {"max_iterations": 2}}}},
    "alerting": {
        "receivers": [
            {"name": "ops", "url": "http://127.0.0.1:9000/ops", "secret_env": "LOADER_TEST_SECRET"},
            {"name": "pager", "url": "http://10.0.0.7/pager"},
        ],
        "route": {"receiver": "ops", "routes": [{"matchers": ['severity="error"'], "receiver": "pager"}]},
        "inhibit_rules": [{"source_matchers": ["a=b"], "target_matchers": ["c=d"], "equal": ["plan_id"]}],
        "slo_thresholds": [{"matchers": ['severity="error"'], "threshold": "30m"}],
    },
}


def _inner_model(annotation: Any) -> tuple[str, type[BaseModel]] | None:
    """('model' | 'list' | 'dict', the model) when a field holds a model, a list of them or a dict of them."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "model", annotation
    if origin in (typing.Union, types.UnionType):
        return next((found for arg in args if (found := _inner_model(arg))), None)
    if origin is list and args and (found := _inner_model(args[0])) and found[0] == "model":
        return "list", found[1]
    if origin is dict and len(args) == 2 and (found := _inner_model(args[1])) and found[0] == "model":
        return "dict", found[1]
    return None


def known_paths(
    model: type[BaseModel], prefix: tuple[str | int, ...] = (), depth: int = 0
) -> Iterator[tuple[str | int, ...]]:
    """Every key path of the config model (lists at index 0, dicts under the key "vision")."""
    for name, field in model.model_fields.items():
        path = (*prefix, field.alias or name)
        yield path
        inner = _inner_model(field.annotation)
        if inner is None or depth > 3:
            continue
        kind, sub = inner
        sub_prefix = {"model": path, "list": (*path, 0), "dict": (*path, "vision")}[kind]
        yield from known_paths(sub, sub_prefix, depth + 1)


PATHS = sorted(set(known_paths(Config)), key=str)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=10**15, max_value=10**40),
    st.floats(),
    st.text(max_size=20),
    st.from_regex(r"\A-?[0-9]{1,30}(\.[0-9]{1,3})?(ms|s|m|h|d|w)?\Z"),
    st.sampled_from(["0s", "0", "-1s", "1e3s", "99999999999999999999999s", "5m", "http://169.254.169.254/"]),
    st.sampled_from(['a="b"', 'a=~"("', "a", "whsec_", "ops", "pager", "...", "\x00", "line\nbreak"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
trees = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from([*Config.model_fields, "x"]) | st.text(max_size=6), inner, max_size=4
        )
    ),
    max_leaves=12,
)


def set_at(data: Any, path: tuple[str | int, ...], value: Any) -> Any:
    """`data` with `value` at `path`, creating (or replacing with) mappings and lists on the way."""
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(head, int):
        items = list(data) if isinstance(data, list) and data else [{}]
        items[0] = set_at(items[0], rest, value)
        return items
    mapping = dict(data) if isinstance(data, dict) else {}
    mapping[head] = set_at(mapping.get(head), rest, value)
    return mapping


def assert_ok_or_problem_lines(document: Any) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "storyloom.yaml"
        path.write_text(yaml.safe_dump(document, allow_unicode=True))
        try:
            config = load_checked_config(path, env=ENV)
        except ConfigError as err:
            assert err.problems, "a refused config names at least one problem"
            for problem in err.problems:
                assert problem.isprintable() and PROBLEM.match(problem), repr(problem)
        else:
            assert isinstance(config, Config)


def test_the_base_config_is_valid_and_every_path_is_known() -> None:
    assert_ok_or_problem_lines(BASE)
    assert isinstance(load_config(None), Config)
    for expected in [
        ("health", "evaluate_every"),
        ("alerting", "receivers", 0, "retry", "max_age"),
        ("alerting", "route", "routes", 0, "continue"),
        ("pipeline", "quotas", "per_planner", "vision", "max_tokens"),
        ("llm", "faults", 0, "delay"),
    ]:
        assert expected in PATHS


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), value=values)
def test_any_value_at_a_known_key_is_ok_or_a_problem_line(path: tuple[str | int, ...], value: Any) -> None:
    assert_ok_or_problem_lines(set_at(BASE, path, value))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=trees)
def test_any_yaml_tree_is_ok_or_a_problem_line(document: Any) -> None:
    assert_ok_or_problem_lines(document)


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (
            ("health", "evaluate_every"),
            "99999999999999999999999s",
            "health.evaluate_every: duration '99999999999999999999999s' is too long",
        ),
        (("health", "stale_in_progress"), "0s", "health.stale_in_progress: must be longer than 0s"),
        (
            ("health", "obligation_aging"),
            "400d",
            "health.obligation_aging: 400d is too long: the most is 365d",
        ),
        (("pipeline", "phase_timeout"), "0s", "pipeline.phase_timeout: must be longer than 0s"),
        (("llm", "timeout"), 0, "llm.timeout: must be longer than 0s"),
        (("llm", "faults", 0, "delay"), "1e400", "llm.faults[0].delay: invalid duration '1e400'"),
        (
            ("alerting", "receivers", 0, "timeout"),
            "0s",
            "alerting.receivers[0].timeout: must be longer than 0s",
        ),
        (
            ("alerting", "receivers", 0, "retry", "max_age"),
            "0s",
            "alerting.receivers[0].retry.max_age: must be longer than 0s",
        ),
        (
            ("alerting", "route", "repeat_interval"),
            "0s",
            "alerting.route.repeat_interval: must be longer than 0s",
        ),
        (
            ("alerting", "slo_thresholds", 0, "threshold"),
            "0s",
            "alerting.slo_thresholds[0].threshold: must be longer than 0s",
        ),
        (
            ("pipeline", "provider_rate_limits"),
            {"openai": float("inf")},
            "pipeline.provider_rate_limits.openai: Input should be a finite number",
        ),
        (
            ("alerting", "receivers", 0, "url"),
            "http://a\nb/",
            "alerting.receivers[0].url: url http://a\\nb/ is refused",
        ),
    ],
)
def test_nonsense_is_refused_with_its_yaml_path(
    path: tuple[str | int, ...], value: Any, expected: str
) -> None:
    with pytest.raises(ConfigError) as refused, tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "storyloom.yaml"
        file.write_text(yaml.safe_dump(set_at(BASE, path, value)))
        load_checked_config(file, env=ENV)
    assert any(problem.startswith(expected) for problem in refused.value.problems), refused.value.problems
