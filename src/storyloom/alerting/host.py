"""What the alerting loops need from the process that runs them (the Runtime provides it).

A protocol rather than the Runtime itself keeps alerting below the process wiring: the loops read the
current alerting config, the database and the clock, and nothing else.
"""

from __future__ import annotations

from typing import Protocol

from storyloom.alerting.setup import AlertingRuntime
from storyloom.clock import Clock
from storyloom.store.db import Database

IDLE_POLL_MAX = 5.0
"""Seconds an idle notifier or delivery worker waits at most: commits in this process wake them at once,
the poll only catches other processes' work (and never outwaits a known flush or retry)."""


class AlertingHost(Protocol):
    @property
    def alerting(self) -> AlertingRuntime:
        """The alerting config now (swapped whole on reload: read it once per pass)."""

    @property
    def db(self) -> Database: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def worker_id(self) -> str: ...
