"""The running process's shared parts: config (reloadable), database, clock."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from storyloom.alerting.setup import AlertingRuntime, build_alerting
from storyloom.clock import Clock, system_clock
from storyloom.config import Config, ConfigError, database_url, load_config
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
    ) -> Runtime:
        return cls(
            config=config, db=Database(database_url(config)), config_path=config_path, clock=clock, demo=demo
        )

    def wake_scheduler(self) -> None:
        """New or resumed work: wake this process's scheduler now (others poll)."""
        from storyloom import signals

        signals.wake("scheduler")

    def reload(self) -> list[str]:
        """Re-read the config file; on error keep the last good config and return the problems."""
        if self.config_path is None:
            return ["(file): no config file was given at start, so there is nothing to reload"]
        try:
            new = load_config(self.config_path)
        except ConfigError as err:
            log.warning("config reload refused; keeping the last good config", problems=err.problems)
            return err.problems
        if self.demo or new.demo_receiver:
            from storyloom.demo import with_demo_receiver

            new = with_demo_receiver(new, inject_fault=self.demo)
        alerting = build_alerting(new, os.environ)
        with self._lock:
            self.config = new
            self.alerting = alerting
        log.info("config reloaded", path=str(self.config_path))
        return []
