"""Alertmanager-compatible ingest: `POST /api/v2/alerts` takes what Prometheus and amtool send.

Like Alertmanager, a batch with some invalid alerts keeps the valid ones; the answer (422 here, 400 there)
lists each refused alert by index with its reason and says how many were accepted, so nothing is lost
silently.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from storyloom.api.auth import operator, runtime
from storyloom.api.openapi import answers
from storyloom.api.problems import problem, summary, validation_errors
from storyloom.api.schemas.ingest import Ingested
from storyloom.config import LimitsConfig
from storyloom.domain.text import LabelName, Text
from storyloom.runtime import Runtime
from storyloom.services import alerts
from storyloom.services.actors import Actor
from storyloom.services.errors import Invalid

router = APIRouter(prefix="/api/v2", tags=["ingest"])

Loc = list[str | int]


class PostableAlert(BaseModel):
    model_config = ConfigDict(extra="forbid")
    labels: dict[LabelName, Text] = Field(
        description="names follow Prometheus rules ([a-zA-Z_][a-zA-Z0-9_]*); must include alertname "
        "(or alert_id); severity (info, warning, error, critical) defaults to warning"
    )
    annotations: dict[LabelName, Text] = Field(default_factory=dict)
    startsAt: AwareDatetime | None = None
    endsAt: AwareDatetime | None = Field(
        default=None,
        description="at or before now resolves the alert; later, it resolves then unless sent again",
    )
    generatorURL: Text | None = Field(default=None, max_length=2048)


INGEST_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "array", "items": PostableAlert.model_json_schema()}}
        },
    }
}


def _too_long(loc: Loc, what: str, length: int, limit: int, key: str) -> list[dict[str, Any]]:
    if length <= limit:
        return []
    return [{"loc": loc, "msg": f"{what} is {length} characters; the limit is {limit} (limits.{key})"}]


def door_problems(index: int, alert: PostableAlert, limits: LimitsConfig) -> list[dict[str, Any]]:
    """What a schema cannot say: the configurable limits, a name for the alert, a known severity."""
    at: Loc = ["body", index]
    found: list[dict[str, Any]] = []
    if len(alert.labels) > limits.max_labels_per_alert:
        found.append(
            {
                "loc": [*at, "labels"],
                "msg": f"has {len(alert.labels)} labels; the limit is {limits.max_labels_per_alert} "
                "(limits.max_labels_per_alert)",
            }
        )
    for field, names in (("labels", alert.labels), ("annotations", alert.annotations)):
        value_limit, value_key = (
            (limits.max_label_value_length, "max_label_value_length")
            if field == "labels"
            else (limits.max_annotation_value_length, "max_annotation_value_length")
        )
        for name, value in names.items():
            loc: Loc = [*at, field, name]
            found += _too_long(
                loc, "the name", len(name), limits.max_label_name_length, "max_label_name_length"
            )
            found += _too_long(loc, "the value", len(value), value_limit, value_key)
    named = {k: v for k, v in alert.labels.items() if v != ""}
    if not (named.get("alert_id") or named.get("alertname")):
        found.append({"loc": [*at, "labels"], "msg": "needs an alertname (or alert_id) label"})
    severity = named.get("severity")
    if severity is not None and severity not in alerts.SEVERITIES:
        found.append(
            {
                "loc": [*at, "labels", "severity"],
                "msg": f"unknown severity {severity!r}; use {', '.join(alerts.SEVERITIES)}",
            }
        )
    return found


def parse_alerts(
    raw: bytes, limits: LimitsConfig
) -> tuple[list[PostableAlert], list[int], list[dict[str, Any]]]:
    """The valid alerts, the indexes of the refused ones and why; 422 when the body is not a usable array."""
    try:
        items = json.loads(raw)
    except ValueError as exc:
        raise Invalid.field(["body"], f"is not valid JSON ({exc})") from None
    if not isinstance(items, list):
        raise Invalid.field(["body"], "must be a JSON array of alerts")
    if len(items) > limits.max_alerts_per_request:
        raise Invalid.field(
            ["body"],
            f"has {len(items)} alerts; the limit is {limits.max_alerts_per_request} per request "
            "(limits.max_alerts_per_request): send them in smaller batches",
        )
    valid: list[PostableAlert] = []
    refused: list[int] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        try:
            alert = PostableAlert.model_validate(item)
        except ValidationError as exc:
            found = validation_errors(exc.errors(include_input=False), prefix=("body", index))
        else:
            found = door_problems(index, alert, limits)
        if found:
            refused.append(index)
            errors += found
        else:
            valid.append(alert)
    return valid, refused, errors


def _ingest(rt: Runtime, valid: list[PostableAlert]) -> dict[str, Any]:
    posted = [
        alerts.PostedAlert(
            labels=a.labels,
            annotations=a.annotations,
            starts_at=a.startsAt,
            ends_at=a.endsAt,
            generator_url=a.generatorURL,
        )
        for a in valid
    ]
    with rt.db.begin() as conn:
        return alerts.ingest_alerts(conn, posted, rt.clock.now(), rt.config.alerting.resolve_timeout)


@router.post(
    "/alerts",
    openapi_extra=INGEST_BODY,
    responses=answers(Ingested, description="Every alert was valid and stored"),
    summary="Fire or resolve alerts (Alertmanager v2)",
)
async def post_alerts(request: Request, _: Actor = Depends(operator), rt: Runtime = Depends(runtime)) -> Any:
    """Fire or resolve each alert; `endsAt` at or before now resolves it.

    A later `endsAt` (or `alerting.resolve_timeout` from now without one) resolves it then, unless it is
    sent again first, as Alertmanager does.

    200 `{accepted, fired, resolved}` when every alert is valid. When some are not, the valid ones are
    still stored and the answer is a 422 problem whose `errors[].loc` names each refused alert by index
    (`["body", 3, "labels", "v"]`), with `accepted` (how many were stored), `refused` (the indexes),
    `fired` and `resolved`.
    """
    limits = rt.config.limits
    valid, refused, errors = parse_alerts(await request.body(), limits)
    result = (
        await run_in_threadpool(_ingest, rt, valid) if valid else {"accepted": 0, "fired": [], "resolved": []}
    )
    if not errors:
        return result
    return refusal(result, refused, errors)


def refusal(result: dict[str, Any], refused: list[int], errors: list[dict[str, Any]]) -> JSONResponse:
    accepted = result["accepted"]
    return problem(
        422,
        f"{len(refused)} alert(s) refused, {accepted} accepted: {summary(errors)}",
        errors=errors,
        extra={**result, "refused": refused},
    )
