"""A real Prometheus alerts a real `storyloom run` (Alertmanager API v2, bearer token): the rule's alert
reaches a loopback receiver with its summary and labels, and once Prometheus is stopped its last `endsAt`
passes without a re-send and the resolved notice follows, as Alertmanager would send it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.prometheus import PrometheusProcess, prometheus_binary
from tests.support.receivers import ReceiverServer
from tests.support.server import ADMIN_TOKEN, ServerProcess, wait_for

pytestmark = pytest.mark.slow

RULES = {
    "groups": [
        {
            "name": "interop",
            "interval": "1s",
            "rules": [
                {
                    "alert": "AlwaysFiring",
                    "expr": "vector(1)",
                    "labels": {"severity": "critical", "team": "fiction-ops"},
                    "annotations": {
                        "summary": "The always-firing interop rule",
                        "description": "vector(1) is always 1",
                    },
                }
            ],
        }
    ]
}


def alerts_with(receiver: ReceiverServer, status: str) -> list[dict[str, Any]]:
    return [
        alert
        for request in receiver.requests
        if isinstance(request.json, dict)
        for alert in request.json.get("alerts", [])
        if alert["alert_id"] == "AlwaysFiring" and alert["status"] == status
    ]


def test_prometheus_alert_fires_and_resolves_once_prometheus_is_gone(tmp_path: Path) -> None:
    prometheus_binary()
    with ReceiverServer() as receiver:
        config = {
            "alerting": {
                "receivers": [{"name": "ops", "url": receiver.url_for("/hooks/ops"), "send_resolved": True}],
                "route": {
                    "receiver": "ops",
                    "group_by": ["alertname"],
                    "group_wait": "0s",
                    "group_interval": "1s",
                    "repeat_interval": "4h",
                },
            },
        }
        server = ServerProcess(tmp_path / "storyloom", config=config).start()
        prometheus = PrometheusProcess(
            tmp_path / "prometheus",
            {
                "global": {"evaluation_interval": "1s"},
                "alerting": {
                    "alertmanagers": [
                        {
                            "api_version": "v2",
                            "authorization": {"type": "Bearer", "credentials": ADMIN_TOKEN},
                            "static_configs": [{"targets": [f"127.0.0.1:{server.port}"]}],
                        }
                    ]
                },
            },
            rules=RULES,
            # endsAt = last send + 4 * max(resend delay, evaluation interval): seconds away
            args=("--rules.alert.resend-delay=1s",),
        )
        try:
            prometheus.start()
            [firing] = wait_for(
                lambda: alerts_with(receiver, "firing"), timeout=30, message="the firing notification"
            )[:1]
            assert firing["title"] == "The always-firing interop rule"
            assert firing["description"] == "vector(1) is always 1"
            assert firing["severity"] == "critical"
            labels = firing["labels"]
            assert labels["alertname"] == "AlwaysFiring" and labels["team"] == "fiction-ops"
            assert labels["source"] == "ingest" and labels["alert_id"] == "AlwaysFiring"
            detail = server.get(f"/api/alerts/{firing['fingerprint']}")
            assert detail["status"] == "firing" and detail["expires_at"] is not None

            prometheus.stop()  # no more re-sends: the last endsAt passes
            [resolved] = wait_for(
                lambda: alerts_with(receiver, "resolved"), timeout=30, message="the resolved notification"
            )[:1]
            assert resolved["fingerprint"] == firing["fingerprint"] and resolved["ends_at"] is not None
            history = server.get(f"/api/alerts/{firing['fingerprint']}")["history"]
            assert [h["status"] for h in history] == ["firing", "resolved"]
            assert history[-1]["reason"] == "endsAt passed without a re-send"
        finally:
            prometheus.stop()
            server.stop()
