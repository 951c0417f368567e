"""What the alerting loops need from the process that runs them (the Runtime provides it).

A protocol rather than the Runtime itself keeps alerting below the process wiring: the loops read the
current alerting config, the database and the clock, and nothing else.
"""

from __future__ import annotations

from typing import Protocol

from storyloom.alerting.setup import AlertingRuntime
from storyloom.clock import Clock
from storyloom.store.db import Database


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
