"""Persona obligation alerts, end to end: open, aging and voice drift.

Every plan's vision mints character personas whose continuity hooks become open obligations. Each test
lets its plan complete first (a later phase re-emitting a hook would reopen a settled obligation), then
works the alert by its runbook, whose Fix settles the obligation as the plan's author agent (obligation
alerts carry no `agent_id` label): that removes the cause.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.scenario import Notified, Scenario

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


def follow_runbook(scenario: Scenario, firing: Notified) -> None:
    scenario.follow_runbook(firing, AGENT_ID=scenario.author[1])


def test_obligation_open_fires_for_an_open_obligation_and_resolves_when_it_is_resolved(
    scenario: Scenario,
) -> None:
    scenario.configure()
    _, obligation = completed_plan_obligation(scenario, "Obligation open")

    firing = scenario.wait_firing("obligation:open", obligation_labels(obligation))
    assert obligation["slug"] in firing.alert["description"]
    assert obligation["persona_id"] != scenario.author[0]  # a character persona, not the author

    follow_runbook(scenario, firing)  # its Fix resolves the obligation


def test_obligation_aging_fires_when_an_obligation_stays_open_and_resolves_when_it_is_dismissed(
    scenario: Scenario,
) -> None:
    scenario.configure({"health": {"obligation_aging": "2s"}})
    _, obligation = completed_plan_obligation(scenario, "Obligation aging")

    firing = scenario.wait_firing("obligation:aging", obligation_labels(obligation))

    follow_runbook(scenario, firing)  # its Fix dismisses the obligation


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

    follow_runbook(scenario, firing)  # its Fix resolves the obligation and clears the flag
