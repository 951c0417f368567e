"""Text that may enter storage: valid UTF-8 without NUL, checked before any length or pattern rule.

JSON can carry a lone surrogate (`"\\ud800"`) that Python keeps in a `str` but no UTF-8 encoder, database
driver or JSON renderer downstream can handle; and PostgreSQL refuses NUL in text. Every body model takes
its strings as `Text` (with its own `Field` limits), label names as `LabelName`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, StringConstraints
from pydantic_core import PydanticCustomError

LABEL_NAME_PATTERN = r"^[a-zA-Z_][a-zA-Z0-9_]*$"


def valid_text(value: Any) -> Any:
    """Refuse a string that is not valid UTF-8 or holds NUL; anything else goes on to the type check."""
    if not isinstance(value, str):
        return value
    if "\x00" in value:
        raise PydanticCustomError("text_nul", "must not contain NUL (\\u0000) characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise PydanticCustomError(
            "text_utf8",
            "must be valid UTF-8: a lone surrogate at character {position}",
            {"position": exc.start},
        ) from None
    return value


def escaped(value: Any) -> Any:
    """`value` (at any depth) with NUL and lone surrogates written out as `\\u0000` / `\\ud800`: storable
    and renderable, for what is kept or echoed as received rather than refused (an error's `loc`, a
    demo inbox body)."""
    if isinstance(value, str):
        return value.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, list | tuple):
        return [escaped(v) for v in value]
    if isinstance(value, dict):
        return {escaped(k): escaped(v) for k, v in value.items()}
    return value


Text = Annotated[str, BeforeValidator(valid_text)]
LabelName = Annotated[
    str,
    BeforeValidator(valid_text),
    StringConstraints(pattern=LABEL_NAME_PATTERN),
]
