"""`storyloom run`, `api` and `worker`: the server roles."""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path
from typing import Any

import typer

from storyloom.cli.base import console, fail
from storyloom.cli.local import load_or_fail, refuse
from storyloom.config import ConfigError
from storyloom.runtime import Runtime
from storyloom.services.tokens import admin_token_problem


def config_option() -> Any:
    return typer.Option(
        None, "--config", envvar="STORYLOOM_CONFIG", help="YAML config file (validate it with `config check`)"
    )


def host_option() -> Any:
    return typer.Option("127.0.0.1", "--host", help="address the HTTP server listens on")


def port_option() -> Any:
    return typer.Option(8700, "--port", min=1, max=65535, help="port the HTTP server listens on")


def _runtime(
    config_path: Path | None, demo: bool, self_url: str | None = None, *, worker_id: str = "local"
) -> Runtime:
    """`worker_id` is the default when STORYLOOM_WORKER_ID is unset: `run` is one process, so "local"
    lets a restart recover its own work at once; each `worker` must be unique in its cluster."""
    from storyloom.logs import configure_logging

    configure_logging()
    problem = admin_token_problem(os.environ)
    if problem:
        fail(problem)
    try:
        rt = Runtime.open(load_or_fail(config_path), config_path=config_path, demo=demo, self_url=self_url)
    except ConfigError as err:  # what the process adds to the file (the demo receiver) cannot work
        refuse(err)
    rt.worker_id = os.environ.get("STORYLOOM_WORKER_ID") or worker_id
    return rt


def register(app: typer.Typer) -> None:
    @app.command("run")
    def run(
        config: Path | None = config_option(),
        host: str = host_option(),
        port: int = port_option(),
        demo: bool = typer.Option(
            False, "--demo", help="seed a demo plan with one injected fault and a demo receiver"
        ),
    ) -> None:
        """API + console + worker in one process."""
        from storyloom.server import build, install_sighup, port_is_free, prepare, self_url, serve_http

        if not port_is_free(host, port):
            fail(f"port {port} on {host} is in use: stop the other process or pass --port")
        rt = _runtime(config, demo, self_url(host, port))
        prepare(rt)
        app, _ = build(rt, api=True, worker=True)
        assert app is not None
        base = rt.config.public_url
        if demo:
            from storyloom.demo import seed_demo

            token = seed_demo(rt)
            console.print(f"Storyloom demo: open {base}/login?token={token}", highlight=False, soft_wrap=True)
        console.print(f"Storyloom console: {base}/", highlight=False)
        install_sighup(rt)
        serve_http(app, host, port)

    @app.command("api")
    def api(
        config: Path | None = config_option(), host: str = host_option(), port: int = port_option()
    ) -> None:
        """The API and console only (run workers separately)."""
        from storyloom.server import build, install_sighup, prepare, self_url, serve_http

        rt = _runtime(config, False, self_url(host, port))
        prepare(rt)
        app, _ = build(rt, api=True, worker=False)
        assert app is not None
        install_sighup(rt)
        serve_http(app, host, port)

    @app.command("worker")
    def worker(
        config: Path | None = config_option(),
        metrics_port: int | None = typer.Option(
            None,
            "--metrics-port",
            envvar="STORYLOOM_METRICS_PORT",
            min=1,
            max=65535,
            help="serve this worker's /metrics (its delivery counters) on this port",
        ),
        metrics_host: str = typer.Option("127.0.0.1", "--metrics-host", help="address /metrics listens on"),
    ) -> None:
        """The engine, scheduler and alerting loops only (many may run against one PostgreSQL).

        Its id is STORYLOOM_WORKER_ID, else host-pid. SIGTERM drains: phases in flight finish (up to
        cluster.drain_timeout), nothing new starts.
        """
        from storyloom.server import build, install_sighup, prepare, serve_metrics

        # SIGTERM/SIGINT are taken by `sigwait` below, never by a handler: a handler that runs again while
        # it holds a lock (a second signal in a burst) would deadlock the main thread. Blocked here, before
        # any thread starts, so that every thread inherits the mask and only the main thread takes them.
        stop_signals = {signal.SIGTERM, signal.SIGINT}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        rt = _runtime(config, False, worker_id=f"{socket.gethostname()}-{os.getpid()}")
        prepare(rt)
        _, engine = build(rt, api=False, worker=True)
        assert engine is not None
        if metrics_port is not None:
            serve_metrics(rt, metrics_host, metrics_port)
        install_sighup(rt)
        engine.start()
        console.print(f"Storyloom worker {rt.worker_id} running", highlight=False)
        signal.sigwait(stop_signals)  # drain: finish what runs, take nothing new; more signals wait blocked
        engine.stop(drain=rt.config.cluster.drain_timeout.total_seconds())
