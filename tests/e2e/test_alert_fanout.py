"""The heart of it, end to end: a real `storyloom run` with the scroll refiner failing → a real receiver
process gets `planner:phase-failed`, signed, with the plan / backlog / task ids, agent, persona and
severity → resume → the receiver gets the resolved notification for the same alert."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import jsonschema
import pytest

from tests.support.receiver_process import ReceiverProcess
from tests.support.server import ServerProcess, free_port, seed_author, wait_for

pytestmark = pytest.mark.slow
SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "docs" / "schemas" / "webhook-v1.json").read_text()
)


def test_phase_failure_reaches_the_ops_webhook_and_its_resolution_follows_the_resume(tmp_path: Path) -> None:
    secret = "whsec_" + base64.b64encode(os.urandom(24)).decode()
    receiver = ReceiverProcess(free_port(), tmp_path / "received.jsonl", secret=secret).start()
    config = {
        "environment": "pre-alpha",
        "llm": {"faults": [{"phase": "scroll_refiner", "mode": "fail", "times": 3}]},
        "pipeline": {"chapters": 1, "scenes_per_chapter": 1, "retry_backoff": "10ms"},
        "alerting": {
            "receivers": [
                {
                    "name": "ops-webhook",
                    "url": receiver.url,
                    "secret_env": "OPS_WEBHOOK_SECRET",
                    "routing_key": "fiction-ops",
                    "retry": {"schedule": ["0s", "1s"], "max_age": "1m"},
                }
            ],
            "route": {
                "receiver": "ops-webhook",
                "group_by": ["alert_id", "plan_id"],
                "group_wait": "0s",
                "group_interval": "1s",
                "repeat_interval": "4h",
            },
        },
    }
    server = ServerProcess(tmp_path / "data", config=config, env={"OPS_WEBHOOK_SECRET": secret}).start()
    try:
        persona_id, agent_id = seed_author(server)
        plan_id = server.post(
            "/api/fiction/plans",
            {
                "name": "Fanout",
                "premise": "Bells that ring backwards.",
                "persona_id": persona_id,
                "agent_id": agent_id,
            },
        ).json()["plan_id"]

        def phase_failed(status: str) -> list[tuple[dict, dict]]:
            return [
                (body, alert)
                for body, alert in receiver.alerts()
                if alert["alert_id"] == "planner:phase-failed" and alert["status"] == status
            ]

        body, alert = wait_for(lambda: phase_failed("firing"), timeout=60, message="phase-failed firing")[0]
        jsonschema.validate(body, SCHEMA)
        assert all(r["signature_valid"] for r in receiver.received())
        assert body["receiver"] == "ops-webhook" and body["routing_key"] == "fiction-ops"
        assert body["environment"] == "pre-alpha" and body["status"] == "firing"
        assert body["group_labels"] == {"alert_id": "planner:phase-failed", "plan_id": plan_id}
        labels = alert["labels"]
        assert alert["severity"] == "error" and labels["severity"] == "error"
        assert labels["plan_id"] == plan_id and labels["backlog_id"] == "scroll-1"
        assert labels["phase"] == "scroll_refiner" and labels["agent_id"] == agent_id
        assert labels["persona_id"] == persona_id and labels["task_id"].startswith("task_")
        assert alert["runbook_url"].endswith("/runbooks/planner:phase-failed")
        assert alert["console_url"].endswith(f"/alerts/{alert['fingerprint']}")

        resumed = server.post(
            f"/api/fiction/plans/{plan_id}/backlog/scroll-1/resume",
            {"agent_id": agent_id, "provider": "offline", "model": "offline-test"},
        )
        assert resumed.status_code == 202, resumed.text

        body, resolved = wait_for(
            lambda: phase_failed("resolved"), timeout=60, message="phase-failed resolved"
        )[0]
        jsonschema.validate(body, SCHEMA)
        assert resolved["fingerprint"] == alert["fingerprint"]
        assert resolved["ends_at"] is not None
        webhook_ids = [r["headers"]["webhook-id"] for r in receiver.received()]
        assert len(webhook_ids) == len(set(webhook_ids))  # one id per notification
        wait_for(
            lambda: server.get(f"/api/fiction/plans/{plan_id}")["status"] == "complete",
            timeout=60,
            message="plan complete",
        )
    finally:
        server.stop()
        receiver.stop()
