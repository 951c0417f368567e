"""The tool dispatcher's argument validation (DOMAIN "Tool dispatcher"): unknown → error, missing required →
error, defaults applied, types coerced only where nothing is lost."""

from __future__ import annotations

from typing import Any

import pytest

from storyloom.pipeline.dispatcher import PLANNER_GENERATE, DispatchError, validate_arguments

REQUIRED = {"phase": "vision", "prompt": "Write the vision."}


def _invalid(args: dict[str, Any]) -> DispatchError:
    with pytest.raises(DispatchError) as caught:
        validate_arguments(PLANNER_GENERATE, args)
    assert caught.value.kind == "invalid-arguments" and caught.value.retryable is False
    return caught.value


def test_an_unknown_argument_is_an_error_naming_it() -> None:
    error = _invalid({**REQUIRED, "temperature": 0.2, "api_base": "x"})
    assert str(error) == "planner.generate: unknown argument(s) api_base, temperature"


@pytest.mark.parametrize("missing", ["phase", "prompt"])
def test_a_missing_required_argument_is_an_error_naming_it(missing: str) -> None:
    args = {k: v for k, v in REQUIRED.items() if k != missing}
    assert str(_invalid(args)) == f"planner.generate: missing required argument {missing}"


def test_a_required_argument_given_as_none_is_missing() -> None:
    assert "missing required argument prompt" in str(_invalid({**REQUIRED, "prompt": None}))


def test_defaults_fill_what_is_not_given() -> None:
    assert validate_arguments(PLANNER_GENERATE, REQUIRED) == {
        **REQUIRED,
        "system": "",
        "provider": None,
        "model": None,
        "max_tokens": None,
        "timeout": 600.0,
        "context": None,
    }


@pytest.mark.parametrize(
    ("name", "given", "expected"),
    [
        ("timeout", "30", 30.0),
        ("timeout", 30, 30.0),
        ("max_tokens", "256", 256),
        ("max_tokens", 256.0, 256),
        ("model", 4, "4"),
        ("context", {"premise": "p"}, {"premise": "p"}),
    ],
)
def test_scalar_types_are_coerced(name: str, given: Any, expected: Any) -> None:
    value = validate_arguments(PLANNER_GENERATE, {**REQUIRED, name: given})[name]
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize(
    ("name", "given"),
    [
        ("timeout", "soon"),
        ("max_tokens", "12.5"),
        ("max_tokens", 12.5),  # int(12.5) would silently drop half a token budget
        ("max_tokens", True),  # a bool is not a count
        ("prompt", ["Write", "the vision"]),  # str(list) would send "['Write', ...]" as the prompt
        ("system", {"role": "critic"}),
        ("context", "premise=p"),
        ("context", [("premise", "p")]),
    ],
)
def test_values_that_cannot_be_converted_without_loss_are_errors(name: str, given: Any) -> None:
    message = str(_invalid({**REQUIRED, name: given}))
    assert message.startswith(f"planner.generate: argument {name} must be ")
