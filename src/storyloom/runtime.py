"""The running process's shared parts: config (reloadable), database, clock."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from storyloom.alerting.setup import AlertingRuntime, build_alerting
from storyloom.clock import Clock, system_clock
from storyloom.config import DEFAULT_PUBLIC_URL, Config, ConfigError, database_url, load_config
from storyloom.store.db import Database

log = structlog.get_logger(__name__)


@dataclass
class Runtime:
    """Shared by the API, the engine and the loops of one process; `config` and `alerting` swap on reload."""

    config: Config
    db: Database
    config_path: Path | None = None
    clock: Clock = system_clock
    demo: bool = False
    self_url: str | None = None
    admin_login_token: str | None = None
    worker_id: str = "local"
    alerting: AlertingRuntime = field(init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.alerting = build_alerting(self.config, os.environ)

    @classmethod
    def open(
        cls,
        config: Config,
        *,
        config_path: Path | None = None,
        clock: Clock = system_clock,
        demo: bool = False,
        self_url: str | None = None,
    ) -> Runtime:
        """`self_url`: where this process serves HTTP, as it reaches itself (None for a worker)."""
        return cls(
            config=as_served(config, demo=demo, self_url=self_url),
            db=Database(
                database_url(config),
                pool_size=config.database.pool_size,
                statement_timeout_ms=int(config.database.statement_timeout.total_seconds() * 1000),
            ),
            config_path=config_path,
            clock=clock,
            demo=demo,
            self_url=self_url,
        )

    def reload(self) -> list[str]:
        """Re-read the config file; on error keep the last good config and return the problems."""
        if self.config_path is None:
            return ["(file): no config file was given at start, so there is nothing to reload"]
        try:
            new = as_served(load_config(self.config_path), demo=self.demo, self_url=self.self_url)
            alerting = build_alerting(new, os.environ)
        except ConfigError as err:
            log.warning("config reload refused; keeping the last good config", problems=err.problems)
            return err.problems
        with self._lock:
            self.config = new
            self.alerting = alerting
        log.info("config reloaded", path=str(self.config_path))
        return []


def as_served(config: Config, *, demo: bool, self_url: str | None) -> Config:
    """The file's config plus what the process adds, at start and on every reload.

    A `public_url` left at its default becomes this process's own URL; the demo receiver, an endpoint of
    this process, is reached at `self_url`, so the process delivers to itself whatever `public_url` says.
    """
    if self_url and config.public_url == DEFAULT_PUBLIC_URL:
        config = config.model_copy(update={"public_url": self_url})
    if demo or config.demo_receiver:
        from storyloom.demo import with_demo_receiver

        config = with_demo_receiver(config, server_url=self_url or config.public_url, inject_fault=demo)
    return config
