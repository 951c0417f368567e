"""The FastAPI application: routers, error handling, and the console, over one Runtime."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from storyloom import __version__
from storyloom.api import problems
from storyloom.api.routers import catalog, plans, system
from storyloom.runtime import Runtime


def create_app(rt: Runtime, *, engine: Any = None) -> FastAPI:
    app = FastAPI(
        title="Storyloom",
        version=__version__,
        description="Operations layer for AI fiction pipelines: plans, backlog, alerts, routing, deliveries.",
    )
    app.state.runtime = rt
    app.state.engine = engine
    problems.install(app)
    for module in (system, catalog, plans):
        app.include_router(module.router)
    return app
