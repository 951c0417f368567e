"""`delivery:failing`, end to end: a second receiver answers 500, then 410 Gone (it is disabled), and the
alert about it reaches the other receiver; the runbook's Fix, which replays its dead delivery (that
re-enables it) once it answers 200 again, resolves the alert.

Every alert goes to both receivers (`flaky` through a `continue: true` child route). The cause of the
first notification is an alert posted to the Alertmanager-compatible ingest, so no plan is needed.
"""

from __future__ import annotations

import pytest

from tests.support.scenario import ABSENT, OPS, Scenario
from tests.support.server import wait_for

pytestmark = pytest.mark.slow

FLAKY = "flaky"
EXTRA_RECEIVERS = {FLAKY: [500, 410]}  # then 200 for every later request
SCENARIO_CONFIG = {
    "alerting": {
        "route": {
            "routes": [
                {"matchers": ['alert_id=~".+"'], "receiver": FLAKY, "continue": True},
                {"receiver": OPS},
            ]
        }
    }
}


def test_delivery_failing_reaches_the_other_receiver_and_resolves_after_a_replay(scenario: Scenario) -> None:
    posted = scenario.server.post(
        "/api/v2/alerts",
        [
            {
                "labels": {"alertname": "ScenarioProbe", "severity": "warning"},
                "annotations": {"summary": "probe"},
            }
        ],
    )
    assert posted.status_code == 200, posted.text
    flaky = scenario.process_for(FLAKY)

    def answered(*statuses: int) -> bool:
        return [r["status"] for r in flaky.received()][: len(statuses)] == list(statuses)

    wait_for(lambda: answered(500, 410), timeout=30, message="the flaky receiver to answer 500 then 410")
    assert all(r["signature_valid"] for r in flaky.received())

    firing = scenario.wait_firing("delivery:failing", {"receiver": FLAKY, "plan_id": ABSENT}, receiver=OPS)
    assert "410" in firing.alert["description"]
    # the failing receiver is disabled and is not told about itself
    assert len(flaky.received()) == 2
    assert not scenario.notifications(FLAKY, where=lambda a: a["alert_id"] == "delivery:failing")

    dead = [
        d
        for d in scenario.server.get("/api/deliveries", receiver=FLAKY)
        if d["status"] in ("dead", "failed", "pending")
    ]
    assert dead, "no undelivered delivery to the flaky receiver"

    scenario.follow_runbook(firing, DELIVERY_ID=dead[-1]["id"])
    wait_for(
        lambda: any(r["status"] == 200 for r in flaky.received()), timeout=30, message="a 200 from flaky"
    )
