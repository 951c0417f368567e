"""The OpenAPI document declares every error status each operation can answer, each as problem+json.

Some statuses follow from what an operation is, and are added here so that no router can forget them:
every operation may answer 413 (the body cap), 422 (an invalid or unknown parameter) and 500; one that
takes a bearer token also 401, 403 and 429 (failed tokens are rate limited per client); one with a path
parameter also 404; one with a JSON body also 400 (bytes that are not UTF-8 JSON). A router declares the
rest (409, a 404 without a path parameter...) with `problem_responses(...)`, and its success body's type
with `answers(...)`.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from storyloom.api.problems import PROBLEM, REQUEST_ID_HEADER, Problem

DESCRIPTIONS = {
    400: "The body is not readable as UTF-8 JSON",
    401: "No token, or an invalid or revoked one",
    403: "The token's role may not do this (or the console's CSRF check failed)",
    404: "Not found",
    409: "Conflicts with the current state",
    413: "The body is larger than `limits.max_body_bytes`",
    422: "Invalid input: a body field or a query parameter (an unknown one too), named in `errors[].loc`",
    429: "Too many failed tokens or logins from this client: wait `Retry-After` seconds",
    500: "An unexpected error; the server log has it under the `X-Request-ID` (also `request_id` here)",
}
EVERY_OPERATION = (413, 422, 500)
WITH_TOKEN = (401, 403, 429)
_HEADERS: dict[int, dict[str, Any]] = {
    429: {"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}},
    500: {REQUEST_ID_HEADER: {"description": "the id in the server log", "schema": {"type": "string"}}},
}
_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}


def problem_responses(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: these statuses as problem+json (descriptions by `s404="..."`)."""
    return {
        status: {"description": descriptions.get(f"s{status}", DESCRIPTIONS[status]), "model": Problem}
        for status in statuses
    }


def answers(
    model: Any, *statuses: int, status: int = 200, description: str | None = None, **descriptions: str
) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: its `status` body is a `model` (api/schemas), the `statuses` problem+json.

    Only the document changes: the route still returns what its service built, rendered as before.
    """
    success: dict[str, Any] = {"model": model}
    if description:
        success["description"] = description
    return {status: success, **problem_responses(*statuses, **descriptions)}


def _declared(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema of a model given with `answers()`, without the untyped one FastAPI read from the return
    annotation (`dict[str, Any]`) and merged into it."""
    if "$ref" in schema:
        return {"$ref": schema["$ref"]}
    items = schema.get("items", {})
    if schema.get("type") == "array" and "$ref" in items:
        return {"type": "array", "items": {"$ref": items["$ref"]}}
    return schema


def _statuses(operation: dict[str, Any]) -> set[int]:
    """Read from the operation itself: a bearer security requirement means a token, `in: path` a 404."""
    statuses = set(EVERY_OPERATION)
    if operation.get("security"):
        statuses.update(WITH_TOKEN)
    if any(p.get("in") == "path" for p in operation.get("parameters", [])):
        statuses.add(404)
    if "requestBody" in operation:
        statuses.add(400)
    return statuses


def _declare(operation: dict[str, Any], statuses: set[int]) -> None:
    responses = operation.setdefault("responses", {})
    for status in statuses:
        responses.setdefault(str(status), {"description": DESCRIPTIONS[status]})
    for code, response in responses.items():
        if code.startswith("2"):
            for content in response.get("content", {}).values():
                if "schema" in content:
                    content["schema"] = _declared(content["schema"])
        if code.isdigit() and int(code) in DESCRIPTIONS:
            response["content"] = {PROBLEM: {"schema": _PROBLEM_REF}}
            if int(code) in _HEADERS:
                response["headers"] = _HEADERS[int(code)]
            if response.get("description") == "Validation Error":
                response["description"] = DESCRIPTIONS[422]


def _summarize(operation: dict[str, Any], path: str, method: str) -> None:
    """A summary FastAPI made from the function's name ("List Alerts") gives way to the docstring's first line."""
    suffix = re.sub(r"\W", "_", path) + f"_{method}"
    name = operation.get("operationId", "").removesuffix(suffix)
    generated = name.replace("_", " ").title()
    description = operation.get("description", "")
    if description and operation.get("summary") == generated:
        operation["summary"] = description.split("\n", 1)[0].rstrip(".")


def _schemas() -> dict[str, Any]:
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    defs = schema.pop("$defs", {})
    return {**defs, "Problem": schema}


def install(app: FastAPI) -> None:
    """Replace `app.openapi` with one that adds the problem responses (built once, then cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes
            )
            for path, item in document["paths"].items():
                for method, operation in item.items():
                    _declare(operation, _statuses(operation))
                    _summarize(operation, path, method)
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            schemas.update(_schemas())
            for unused in ("HTTPValidationError", "ValidationError"):
                schemas.pop(unused, None)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
