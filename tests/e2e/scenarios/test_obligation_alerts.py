"""Persona obligation alerts, end to end: open, aging and voice drift.

Every plan's vision mints character personas whose continuity hooks become open obligations. Each test
lets its plan complete first (a later phase re-emitting a hook would reopen a settled obligation), then
settles one obligation through the API as the plan's author agent, which removes the cause.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.scenario import Scenario

pytestmark = pytest.mark.slow


def completed_plan_obligation(scenario: Scenario, name: str) -> tuple[str, dict[str, Any]]:
    plan_id = scenario.create_plan(name)
    scenario.wait_plan(plan_id)
    open_ones = scenario.obligations(plan_id)
    assert open_ones, "the plan minted no obligation"
    return plan_id, open_ones[0]


def obligation_labels(obligation: dict[str, Any]) -> dict[str, Any]:
    return {
        "plan_id": obligation["plan_id"],
        "obligation_id": obligation["obligation_id"],
        "persona_id": obligation["persona_id"],
        "backlog_id": obligation["source_backlog_id"],
        "phase": obligation["source_phase"],
    }


def settle(scenario: Scenario, obligation: dict[str, Any], action: str = "resolve") -> None:
    response = scenario.server.post(
        f"/api/fiction/plans/{obligation['plan_id']}/persona-obligations/{obligation['obligation_id']}/resolve",
        {"action": action, "notes": "Paid off in the last chapter.", "agent_id": scenario.author[1]},
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == ("resolved" if action == "resolve" else "dismissed")


def test_obligation_open_fires_for_an_open_obligation_and_resolves_when_it_is_resolved(
    scenario: Scenario,
) -> None:
    scenario.configure()
    _, obligation = completed_plan_obligation(scenario, "Obligation open")

    firing = scenario.wait_firing("obligation:open", obligation_labels(obligation))
    assert obligation["slug"] in firing.alert["description"]
    assert obligation["persona_id"] != scenario.author[0]  # a character persona, not the author

    settle(scenario, obligation)
    scenario.wait_resolved(firing)


def test_obligation_aging_fires_when_an_obligation_stays_open_and_resolves_when_it_is_dismissed(
    scenario: Scenario,
) -> None:
    scenario.configure({"health": {"obligation_aging": "2s"}})
    _, obligation = completed_plan_obligation(scenario, "Obligation aging")

    firing = scenario.wait_firing("obligation:aging", obligation_labels(obligation))

    settle(scenario, obligation, action="dismiss")
    scenario.wait_resolved(firing)


def test_obligation_drift_fires_when_an_open_obligation_is_flagged_and_resolves_when_it_is_resolved(
    scenario: Scenario,
) -> None:
    scenario.configure()
    plan_id, obligation = completed_plan_obligation(scenario, "Obligation drift")

    flagged = scenario.server.post(
        f"/api/fiction/plans/{plan_id}/persona-obligations/{obligation['obligation_id']}/voice-drift",
        {"voice_drift": True, "agent_id": scenario.author[1], "notes": "She sounds like her rival now."},
    )
    assert flagged.status_code == 200, flagged.text
    firing = scenario.wait_firing("obligation:drift", obligation_labels(obligation))
    assert "voice drift" in firing.alert["description"]

    settle(scenario, obligation)
    scenario.wait_resolved(firing)
