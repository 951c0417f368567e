"""The FastAPI application: routers, error handling, and the console, over one Runtime."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI
from fastapi.staticfiles import StaticFiles

from storyloom import __version__
from storyloom.api import docs, openapi, problems, security_headers
from storyloom.api.limits import BodyLimit
from storyloom.api.query import check_parameters
from storyloom.api.responses import ReadableJSONResponse
from storyloom.api.routers import acknowledgements as acknowledgement_routes
from storyloom.api.routers import alerts, catalog, config, ingest, plans, routes, silences, system
from storyloom.api.routers import backlog as backlog_routes
from storyloom.api.routers import deliveries as delivery_routes
from storyloom.api.routers import demo as demo_routes
from storyloom.api.routers import drills as drill_routes
from storyloom.api.routers import events as event_routes
from storyloom.api.routers import health as health_routes
from storyloom.api.routers import metrics as metrics_routes
from storyloom.api.routers import obligations as obligation_routes
from storyloom.api.routers import set_aside as set_aside_routes
from storyloom.console import actions as console_actions
from storyloom.console import pages as console_pages
from storyloom.runtime import Runtime

# Every API router, in the order the OpenAPI document lists them. Add new routers here.
ROUTERS = [
    system.router,
    metrics_routes.router,
    health_routes.router,
    catalog.router,
    plans.router,
    backlog_routes.router,
    obligation_routes.router,
    alerts.router,
    acknowledgement_routes.router,
    silences.router,
    routes.router,
    ingest.router,
    delivery_routes.router,
    drill_routes.router,
    demo_routes.router,
    config.router,
    event_routes.router,
    set_aside_routes.router,
    console_actions.router,
    console_pages.router,
]


def create_app(rt: Runtime, *, engine: Any = None) -> FastAPI:
    app = FastAPI(
        title="Storyloom",
        version=__version__,
        description="Operations layer for AI fiction pipelines: plans, backlog, alerts, routing, deliveries.",
        default_response_class=ReadableJSONResponse,
        dependencies=[Depends(check_parameters)],
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = rt
    app.state.engine = engine
    problems.install(app)
    # Outermost last: a crash anywhere (the body cap included) still answers problem+json, and every
    # answer, refusals and crashes too, carries the security headers.
    app.add_middleware(BodyLimit, limit=lambda: rt.config.limits.max_body_bytes)
    app.add_middleware(problems.CatchAll)
    security_headers.install(app)
    for router in ROUTERS:
        app.include_router(router)
    openapi.install(app)
    docs.install(app)
    app.mount("/static", StaticFiles(directory=console_pages.STATIC_DIR), name="static")
    return app


def create_metrics_app(rt: Runtime) -> FastAPI:
    """Only `/metrics`, for a `storyloom worker` (which serves no API): its per-process delivery counters."""
    app = FastAPI(title="Storyloom worker metrics", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.runtime = rt
    problems.install(app)
    app.include_router(metrics_routes.router)
    return app
