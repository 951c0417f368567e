"""Where webhooks may go, as a value: the `alerting.egress` settings (the checks live in `alerting.egress`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EgressPolicy:
    """`alerting.egress` of the config. Link-local, metadata, multicast and 0.0.0.0 are always refused."""

    allow_loopback: bool = True
    allow_private: bool = True


DEFAULT_EGRESS = EgressPolicy()
"""The one default: the config model, the checks and the HTTP client all start from it."""
