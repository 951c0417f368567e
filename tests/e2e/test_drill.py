"""`storyloom drill` against a real server and loopback receivers: the drill alert is delivered (signed)
to each routed receiver, never to the pager, the CLI prints each receiver's outcome and latency, the alert
is resolved and its resolved notice reaches the receivers with `send_resolved`; the server log names who
ran it."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.receivers import ReceiverServer, pagerduty_events, slack_webhook, standard_webhook
from tests.support.server import ServerProcess, wait_for

pytestmark = pytest.mark.slow

SECRET = "whsec_" + base64.b64encode(b"drill-e2e-test-secret-0123456789").decode()
SECRET_ENV = "DRILL_E2E_SECRET"


@pytest.fixture
def hooks() -> Iterator[dict[str, ReceiverServer]]:
    with (
        ReceiverServer(standard_webhook(SECRET)) as ops,
        ReceiverServer(slack_webhook) as chat,
        ReceiverServer(pagerduty_events) as pager,
    ):
        yield {"ops": ops, "chat": chat, "pager": pager}


@pytest.fixture
def server(tmp_path: Path, hooks: dict[str, ReceiverServer]) -> Iterator[ServerProcess]:
    config = {
        "alerting": {
            "receivers": [
                {"name": "ops", "url": hooks["ops"].url_for("/hooks/ops"), "secret_env": SECRET_ENV},
                {
                    "name": "chat",
                    "type": "slack",
                    "url": hooks["chat"].url_for("/slack"),
                    "send_resolved": False,
                },
                {
                    "name": "pager",
                    "type": "pagerduty",
                    "url": hooks["pager"].url_for("/v2/enqueue"),
                    "routing_key": "0123456789abcdef0123456789abcdef",
                },
            ],
            "route": {
                "receiver": "ops",
                "group_by": ["alert_id"],
                "group_wait": "0s",
                "group_interval": "1s",
                "routes": [
                    {
                        "matchers": ['drill="true"'],
                        "receiver": "ops",
                        "routes": [{"receiver": "chat", "continue": True}, {"receiver": "ops"}],
                    },
                    {"receiver": "pager"},
                ],
            },
        }
    }
    process = ServerProcess(tmp_path / "data", config=config, env={SECRET_ENV: SECRET}).start()
    try:
        yield process
    finally:
        process.stop()


def rows(output: str) -> dict[str, list[str]]:
    """The piped lines (receiver, outcome, latency_ms, status_code, attempts, error) by receiver."""
    return {line.split("\t")[0]: line.split("\t") for line in output.splitlines()}


def test_storyloom_drill_reports_each_receiver_and_resolves_the_drill(
    server: ServerProcess, hooks: dict[str, ReceiverServer]
) -> None:
    operator = server.create_token("operator", "drill-op")

    result = server.cli("drill", token=operator)

    assert result.returncode == 0, result.stderr
    printed = rows(result.stdout)
    assert set(printed) == {"chat", "ops"}
    # ops verifies the Standard Webhooks signature (401 otherwise) and answers 204; Slack answers 200
    for name, code in (("chat", "200"), ("ops", "204")):
        _, outcome, latency_ms, status_code, attempts, _ = printed[name]
        assert (outcome, status_code, attempts) == ("delivered", code, "1")
        assert int(latency_ms) >= 0
    assert hooks["pager"].requests == []

    [firing] = hooks["ops"].wait_for(1)
    [alert] = firing.json["alerts"]
    assert alert["drill"] is True and alert["labels"]["drill"] == "true"
    resolved = wait_for(
        lambda: [r for r in hooks["ops"].requests if r.json["status"] == "resolved"],
        timeout=30,
        message="the drill's resolved notice at ops",
    )
    assert resolved[0].json["alerts"][0]["fingerprint"] == alert["fingerprint"]
    assert len(hooks["chat"].requests) == 1  # chat has send_resolved: false
    wait_for(lambda: '"action": "drill"' in server.logs() or "action=drill" in server.logs(), timeout=10)
    assert "drill-op" in server.logs() and operator not in server.logs()


def test_storyloom_drill_with_a_receiver_sends_there_only(
    server: ServerProcess, hooks: dict[str, ReceiverServer]
) -> None:
    operator = server.create_token("operator", "drill-op")

    result = server.cli(
        "drill", "--receiver", "chat", "--output", "json", "planner:phase-failed", token=operator
    )

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert [(r["receiver"], r["outcome"]) for r in report["receivers"]] == [("chat", "delivered")]
    assert report["alert_id"] == "planner:phase-failed" and report["labels"]["drill_receiver"] == "chat"
    assert hooks["ops"].requests == [] and hooks["pager"].requests == []
    assert "Drill" in json.dumps(hooks["chat"].requests[0].json)
