"""`GET /metrics`: Prometheus text format 0.0.4 (CONTRACTS §9); open unless `metrics_require_token` is set."""

from __future__ import annotations

import threading

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry

from storyloom.api.auth import bearer, current_actor, runtime
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


def metrics_access(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> None:
    """No authentication by default; with `metrics_require_token: true` any valid token (viewer) may scrape."""
    if runtime(request).config.metrics_require_token:
        current_actor(request, credentials)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_PLAIN_0_0_4: {}}, "description": "Prometheus text format"}},
)
def metrics(request: Request, _: None = Depends(metrics_access)) -> Response:
    """Prometheus metrics (text format 0.0.4).

    Open by default; with `metrics_require_token: true` any valid token (viewer) may scrape.
    """
    return Response(render(_registry(request)), media_type=CONTENT_TYPE_PLAIN_0_0_4)
