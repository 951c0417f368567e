"""The `storyloom` command: server roles, local admin commands, and API client commands."""

from __future__ import annotations

from storyloom.cli import alerting, local, operate, server
from storyloom.cli.base import app

for module in (server, local, operate, alerting):
    module.register(app)

__all__ = ["app"]
