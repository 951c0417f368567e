"""Query and path parameters: bounded paging, 422 for a parameter the operation does not take or for NUL
in a value (PostgreSQL cannot compare text holding NUL: a lookup would fail instead of finding nothing)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from storyloom.services.errors import Invalid

# Pages count from 1; the cap keeps `(page - 1) * page_size` far inside a 64-bit integer (SQLite's OFFSET).
MAX_PAGE = 1_000_000
# An event id to resume after; past a 64-bit integer SQLite cannot compare it.
MAX_ID = 2**63 - 1

Page = Annotated[int, Query(ge=1, le=MAX_PAGE, description=f"counts from 1; at most {MAX_PAGE}")]

_known: dict[int, frozenset[str]] = {}


def _declared(dependant: Dependant) -> set[str]:
    names = {param.alias for param in dependant.query_params}
    for sub in dependant.dependencies:
        names |= _declared(sub)
    return names


def _query_names(route: APIRoute) -> frozenset[str]:
    names = _known.get(id(route))
    if names is None:
        names = _known[id(route)] = frozenset(_declared(route.dependant))
    return names


def check_parameters(request: Request) -> None:
    """An app-wide dependency: a misspelt or unsupported query parameter is an error, never ignored."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute) or not route.include_in_schema:
        return
    with_nul = [
        [where, name]
        for where, values in (
            ("path", request.path_params.items()),
            ("query", request.query_params.multi_items()),
        )
        for name, value in values
        if "\x00" in str(value)
    ]
    if with_nul:
        raise Invalid(
            "a parameter holds a NUL (\\u0000) character",
            errors=[{"loc": loc, "msg": "must not contain NUL (\\u0000) characters"} for loc in with_nul],
        )
    known = _query_names(route)
    unknown = sorted({name for name in request.query_params if name not in known})
    if unknown:
        accepted = ", ".join(sorted(known)) or "none"
        raise Invalid(
            f"unknown query parameter{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}; "
            f"this operation takes: {accepted}",
            errors=[{"loc": ["query", name], "msg": "unknown query parameter"} for name in unknown],
        )
