"""The built-in demo receiver: its secret, and the routing that adds its inbox beside the configured receivers."""

from __future__ import annotations

import base64
import os
from pathlib import Path

from storyloom.config import Config, ReceiverConfig, RouteConfig, data_dir
from storyloom.domain.durations import parse_duration
from storyloom.domain.faults import FaultSpec

DEMO_RECEIVER = "demo-inbox"
DEMO_SECRET_ENV = "STORYLOOM_DEMO_RECEIVER_SECRET"


def demo_secret() -> str:
    """The demo receiver's Standard Webhooks secret: from the environment, else generated once per data dir."""
    if os.environ.get(DEMO_SECRET_ENV):
        return os.environ[DEMO_SECRET_ENV]
    path = data_dir() / "demo-receiver.secret"
    if path.exists():
        secret = path.read_text().strip()
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
        _write_private(path, secret)
    os.environ[DEMO_SECRET_ENV] = secret
    return secret


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def with_demo_receiver(config: Config, *, server_url: str, inject_fault: bool = False) -> Config:
    """The demo receiver of the server at `server_url` beside the configured ones; `--demo` also injects a fault."""
    demo_secret()
    config = with_demo_routing(config, server_url=server_url)
    faults = config.llm.faults
    if inject_fault and not faults:
        faults = [FaultSpec(phase="scroll_refiner", mode="fail", times=3)]
    return config.model_copy(update={"llm": config.llm.model_copy(update={"faults": faults})})


def served_routing(config: Config) -> Config:
    """The routing a server runs for this config file (the demo inbox added when `demo_receiver: true`).

    Creates no secret: `storyloom routes test --config FILE` uses it to answer as the server would.
    """
    return with_demo_routing(config, server_url=config.public_url) if config.demo_receiver else config


def with_demo_routing(config: Config, *, server_url: str) -> Config:
    """Add the demo inbox beside the configured routing: it gets every notification, and so do they.

    With no route, everything goes to the inbox. A route that already sends to the inbox is kept. Else the
    configured root becomes the first child (with `continue`) of a new root, and the inbox the second: the
    configured tree answers exactly as before, and the inbox is added after its receivers.
    """
    receiver = ReceiverConfig(
        name=DEMO_RECEIVER,
        type="webhook",
        url=f"{server_url}/api/demo/receiver",
        secret_env=DEMO_SECRET_ENV,
        routing_key="demo",
    )
    alerting = config.alerting
    receivers = [r for r in alerting.receivers if r.name != DEMO_RECEIVER] + [receiver]
    if alerting.route is None:
        route = RouteConfig(
            receiver=DEMO_RECEIVER,
            group_by=["alert_id", "plan_id"],
            group_wait=parse_duration("0s"),
            group_interval=parse_duration("10s"),
            repeat_interval=parse_duration("4h"),
        )
    elif _routes_to(alerting.route, DEMO_RECEIVER):
        route = alerting.route
    else:
        configured = alerting.route.model_copy(update={"continue_": True})
        route = alerting.route.model_copy(
            update={"routes": [configured, RouteConfig(receiver=DEMO_RECEIVER)]}
        )
    return config.model_copy(
        update={
            "demo_receiver": True,
            "alerting": alerting.model_copy(update={"receivers": receivers, "route": route}),
        }
    )


def _routes_to(route: RouteConfig, receiver: str) -> bool:
    return route.receiver == receiver or any(_routes_to(child, receiver) for child in route.routes)
