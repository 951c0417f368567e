"""`GET /metrics`: Prometheus text format 0.0.4; open unless `metrics_require_token` is set."""

from __future__ import annotations

import threading

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry
from starlette.concurrency import run_in_threadpool

from storyloom.api.auth import bearer, current_actor, runtime
from storyloom.api.openapi import problem_responses
from storyloom.health.metrics import build_registry, render

router = APIRouter(tags=["system"])
_lock = threading.Lock()


def _registry(request: Request) -> CollectorRegistry:
    """One dedicated registry per app (its collector keeps the running execution totals)."""
    state = request.app.state
    with _lock:
        registry: CollectorRegistry | None = getattr(state, "metrics_registry", None)
        if registry is None:
            registry = build_registry(runtime(request))
            state.metrics_registry = registry
    return registry


async def metrics_access(request: Request) -> None:
    """No authentication by default; with `metrics_require_token: true` any valid token (viewer) may scrape.

    The token is read only when required, so the OpenAPI document does not claim one is always needed.
    """
    if runtime(request).config.metrics_require_token:
        await run_in_threadpool(current_actor, request, await bearer(request))


@router.get(
    "/metrics",
    response_class=Response,
    openapi_extra={"security": [{}, {"HTTPBearer": []}]},  # the token is optional (see the description)
    responses={
        200: {"content": {CONTENT_TYPE_PLAIN_0_0_4: {}}, "description": "Prometheus text format"},
        **problem_responses(401, s401="Only with `metrics_require_token: true`: no valid token was sent"),
    },
)
def metrics(request: Request, _: None = Depends(metrics_access)) -> Response:
    """Prometheus metrics (text format 0.0.4).

    Open by default, like other Prometheus exporters: scrape it without a token. With
    `metrics_require_token: true` in the config, any valid token (viewer or above) is required
    (`Authorization: Bearer <token>`), and a scrape without one is answered 401.
    """
    return Response(render(_registry(request)), media_type=CONTENT_TYPE_PLAIN_0_0_4)
