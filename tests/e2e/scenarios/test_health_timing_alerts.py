"""Time-based and server-wide health alerts, end to end, on a fresh server: no executions yet, a stale
item, a queue waiting past its objective, and phase latency burning its budget.

The module's server runs one phase at a time, and each plan's vision takes 3 s (a `slow` fault on its
first attempt); thresholds are a second. Two plans started together then give, in order: plans but no
execution (`planner:no-executions`), a vision in progress without an update (`backlog:stale`), the other
plan's vision ready and waiting (`backlog:queue-age`), and slow executions (`planner:latency-slo`). Every
cause goes away by itself as the plans finish: executions exist, nothing is in progress, the queue
drains, and fast executions bring the burn rates back under their factors.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.scenario import ABSENT, MODEL, PRESENT, Notified, Scenario

pytestmark = pytest.mark.slow

SCENARIO_CONFIG = {
    "llm": {"faults": [{"phase": "vision", "mode": "slow", "delay": "3s", "times": 1}]},
    "pipeline": {"concurrency": 1},
    "health": {
        "stale_in_progress": "1s",
        "slo": {"phase_latency": {"threshold": "1s"}, "queue_age": {"threshold": "1s"}},
    },
}
NO_PLAN = {"plan_id": ABSENT, "backlog_id": ABSENT}


@pytest.fixture(scope="module")
def plans(scenario: Scenario) -> Iterator[list[str]]:
    started = [scenario.create_plan(f"Timing {n}") for n in (1, 2)]
    yield started
    for plan_id in started:
        scenario.wait_plan(plan_id)


def resolved_after_the_plans(scenario: Scenario, plans: list[str], firing: Notified) -> None:
    for plan_id in plans:
        scenario.wait_plan(plan_id)
    scenario.wait_resolved(firing)


def test_no_executions_fires_while_plans_wait_for_a_first_execution_and_resolves_after_it(
    scenario: Scenario, plans: list[str]
) -> None:
    firing = scenario.wait_firing("planner:no-executions", NO_PLAN)
    assert "no planner execution" in firing.alert["description"]
    resolved_after_the_plans(scenario, plans, firing)


def test_stale_fires_for_an_item_in_progress_without_updates_and_resolves_when_it_completes(
    scenario: Scenario, plans: list[str]
) -> None:
    persona_id, agent_id = scenario.author
    firing = scenario.wait_firing(
        "backlog:stale",
        {
            "backlog_id": "vision-plan",
            "task_id": PRESENT,
            "phase": "vision",
            "agent_id": agent_id,
            "persona_id": persona_id,
            "provider": "offline",
            "model": MODEL,
        },
    )
    assert firing.labels["plan_id"] in plans
    resolved_after_the_plans(scenario, plans, firing)


def test_queue_age_fires_while_a_ready_item_waits_past_the_objective_and_resolves_when_the_queue_drains(
    scenario: Scenario, plans: list[str]
) -> None:
    firing = scenario.wait_firing("backlog:queue-age", NO_PLAN)
    assert "oldest ready item" in firing.alert["description"]
    resolved_after_the_plans(scenario, plans, firing)


def test_latency_slo_fires_while_phases_run_slow_and_resolves_when_fast_ones_bring_the_burn_down(
    scenario: Scenario, plans: list[str]
) -> None:
    firing = scenario.wait_firing("planner:latency-slo", NO_PLAN)
    assert "burn rate" in firing.alert["description"]
    resolved_after_the_plans(scenario, plans, firing)
