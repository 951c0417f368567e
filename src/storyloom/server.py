"""Start Storyloom's roles in this process: the API (with the console) and/or the worker (engine + loops)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import AsyncIterator
from typing import Any

import structlog
import uvicorn
from fastapi import FastAPI

from storyloom.api.app import create_app
from storyloom.engine.engine import Engine
from storyloom.engine.loops import worker_loops
from storyloom.pipeline.templates_store import seed_templates
from storyloom.runtime import Runtime
from storyloom.store.migrate import upgrade

log = structlog.get_logger(__name__)


def prepare(rt: Runtime) -> None:
    """Migrate the schema and seed the planner templates (safe in every process, every start)."""
    upgrade(rt.db)
    with rt.db.begin() as conn:
        seed_templates(conn, rt.clock.now())


def build(rt: Runtime, *, api: bool, worker: bool) -> tuple[FastAPI | None, Engine | None]:
    engine = Engine(rt, loops=worker_loops()) if worker else None
    app = create_app(rt, engine=engine) if api else None
    if app is not None and engine is not None:

        @contextlib.asynccontextmanager
        async def lifespan(_: FastAPI) -> AsyncIterator[None]:
            await asyncio.to_thread(engine.start)  # DBOS refuses to register queues on a running event loop
            try:
                yield
            finally:
                await asyncio.to_thread(engine.stop, drain=rt.config.cluster.drain_timeout.total_seconds())

        app.router.lifespan_context = lifespan
    return app, engine


def install_sighup(rt: Runtime) -> None:
    def on_hup(*_: Any) -> None:
        problems = rt.reload()
        if problems:
            log.error("SIGHUP reload refused; the last good config stays in force", problems=problems)

    with contextlib.suppress(ValueError):  # not the main thread (tests)
        signal.signal(signal.SIGHUP, on_hup)


def serve_http(app: FastAPI, host: str, port: int) -> None:
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)
    server.run()


LOOPBACK_FOR_WILDCARD = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def self_url(host: str, port: int) -> str:
    """Where this process reaches its own HTTP server: a wildcard bind (0.0.0.0, ::) through loopback."""
    address = LOOPBACK_FOR_WILDCARD.get(host, host)
    return f"http://[{address}]:{port}" if ":" in address else f"http://{address}:{port}"


def port_is_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True
