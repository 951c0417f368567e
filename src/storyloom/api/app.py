"""The FastAPI application: routers, error handling, and the console, over one Runtime."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from storyloom import __version__
from storyloom.api import problems
from storyloom.api.routers import catalog, plans, system
from storyloom.runtime import Runtime

# Every API router, in the order the OpenAPI document lists them. Add new routers here.
ROUTERS = [
    system.router,
    catalog.router,
    plans.router,
]


def create_app(rt: Runtime, *, engine: Any = None) -> FastAPI:
    app = FastAPI(
        title="Storyloom",
        version=__version__,
        description="Operations layer for AI fiction pipelines: plans, backlog, alerts, routing, deliveries.",
    )
    app.state.runtime = rt
    app.state.engine = engine
    problems.install(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
